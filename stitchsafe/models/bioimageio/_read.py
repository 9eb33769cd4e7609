"""Finding and reading a package's description, offline.

A package is a folder, or a zip of one, holding ``bioimageio.yaml`` (or ``rdf.yaml``) and
the files it names. The description is read and validated with ``bioimageio.spec`` (an
optional dependency: ``pip install "stitchsafe[bioimageio]"``) without I/O checks, so
nothing is downloaded. Descriptions in older format versions (0.4) are converted to 0.5
by ``bioimageio.spec``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ...errors import StitchsafeError
from ._errors import error_line

__all__ = ["YAML_NAMES", "find_yaml", "package_root", "read_description"]

YAML_NAMES = ("bioimageio.yaml", "rdf.yaml")
_INSTALL = 'pip install "stitchsafe[bioimageio]"'


def find_yaml(names: Iterable[str]) -> str | None:
    """The package description among top-level file ``names``, or None.

    Examples
    --------
    >>> find_yaml(["weights.pt", "rdf.yaml", "README.md"])
    'rdf.yaml'
    >>> find_yaml(["unet.bioimageio.yaml"]), find_yaml(["sub/rdf.yaml"])
    ('unet.bioimageio.yaml', None)
    """
    top = sorted(n for n in names if "/" not in n.rstrip("/"))
    for wanted in YAML_NAMES:
        for name in top:
            if name == wanted or name.endswith("." + wanted):
                return name
    return None


@contextlib.contextmanager
def package_root(path: str | os.PathLike[str]) -> Iterator[tuple[Path, str]]:
    """``(folder, description file name)`` of a package folder or zip.

    A zip is unpacked into a temporary directory that is removed on exit (everything
    stitchsafe needs is in memory by then).
    """
    p = Path(path)
    if p.is_dir():
        name = find_yaml(c.name for c in p.iterdir() if c.is_file())
        if name is None:
            raise StitchsafeError(f"{str(p)!r} holds no bioimageio.yaml or rdf.yaml.")
        yield p, name
        return
    with zipfile.ZipFile(p) as zf:
        name = find_yaml(zf.namelist())
        if name is None:
            raise StitchsafeError(f"{str(p)!r} is a zip without a top-level rdf.yaml.")
        with tempfile.TemporaryDirectory(prefix="stitchsafe-bioimageio-") as tmp:
            zf.extractall(tmp)  # zipfile drops absolute and ".." parts of member names
            yield Path(tmp), name


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
    spec = _spec_module()
    with (
        spec.ValidationContext(perform_io_checks=False, log_warnings=False, progressbar=False),
        _quiet_spec_logs(),
        warnings.catch_warnings(),
    ):
        # e.g. "Conversion of channel size ... may be wrong" from the 0.4 -> 0.5 converter
        warnings.filterwarnings("ignore", module=r"bioimageio\.")
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


def _spec_module() -> Any:
    """``bioimageio.spec``, imported on first use (an optional dependency)."""
    try:
        import bioimageio.spec as spec  # noqa: PLC0415 (an optional extra, read on first use)
    except ImportError:
        raise StitchsafeError(
            "reading bioimage.io model packages needs the optional bioimageio.spec package; "
            f"install it with: {_INSTALL}"
        ) from None
    return spec


@contextlib.contextmanager
def _quiet_spec_logs() -> Iterator[None]:
    """bioimageio.spec logs validation warnings with loguru; a CLI run shows none."""
    try:
        from loguru import logger  # noqa: PLC0415 (comes with the optional bioimageio extra)
    except ImportError:
        yield
        return
    logger.disable("bioimageio")
    try:
        yield
    finally:
        logger.enable("bioimageio")
