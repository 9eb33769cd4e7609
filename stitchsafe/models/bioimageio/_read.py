"""Reading a package's description, offline.

The description is read and validated with ``bioimageio.spec`` (an optional dependency:
``pip install "stitchsafe[bioimageio]"``) without I/O checks, so nothing is downloaded.
Descriptions in older format versions (0.4) are converted to 0.5 by ``bioimageio.spec``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import StitchsafeError
from ._errors import error_line
from ._spec_library import quiet_spec, spec_library

__all__ = ["read_description"]


def read_description(yaml_path: str | os.PathLike[str], *, where: str) -> Any:
    """Read and validate a package description offline; return the 0.5 ``ModelDescr``.

    No I/O checks run (``perform_io_checks=False``): referenced files are neither
    downloaded nor hashed here (stitchsafe checks the files it loads itself), and
    ``bioimageio.spec`` logs and progress bars are off.

    Raises
    ------
    StitchsafeError
        Not installed, not a valid description, or not a model.
    """
    spec = spec_library("reading bioimage.io model packages")
    with (
        spec.ValidationContext(perform_io_checks=False, log_warnings=False, progressbar=False),
        quiet_spec(),
    ):
        try:
            descr = spec.load_description(
                Path(yaml_path), perform_io_checks=False, format_version="latest", progressbar=False
            )
        except Exception as e:  # unreadable YAML and the like
            raise StitchsafeError(
                f"{where} is not a valid bioimage.io package: {error_line(e)}"
            ) from None
    if isinstance(descr, spec.InvalidDescr):
        reason = "; ".join(line.strip("- ").strip() for line in descr.get_reason().splitlines())
        raise StitchsafeError(
            f"{where} is not a valid bioimage.io model description: {reason[:800]}. Fix the "
            f"package's {Path(yaml_path).name} (bioimageio.spec validates it)."
        )
    if getattr(descr, "type", None) != "model":
        raise StitchsafeError(
            f"{where} is a bioimage.io {getattr(descr, 'type', 'resource')!r}, not a model."
        )
    return descr
