"""``bioimageio.spec``, the optional library that reads and validates packages.

:func:`spec_library` imports it on first use, with a clear error naming the extra to install;
:func:`quiet_spec` keeps its loguru messages and Python warnings off a CLI run's stderr.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from ...errors import StitchsafeError

__all__: list[str] = []

_INSTALL = 'pip install "stitchsafe[bioimageio]"'


def spec_library(purpose: str) -> Any:
    """``bioimageio.spec``, imported on first use; ``purpose`` says what needs it.

    Raises
    ------
    StitchsafeError
        ``bioimageio.spec`` is not installed.
    """
    try:
        import bioimageio.spec as spec  # noqa: PLC0415 - an optional extra, used on first use
    except ImportError:
        raise StitchsafeError(
            f"{purpose} needs the optional bioimageio.spec package; install it with: {_INSTALL}"
        ) from None
    return spec


@contextlib.contextmanager
def quiet_spec() -> Iterator[None]:
    """No loguru messages and no warnings from ``bioimageio.spec`` inside the block.

    It logs validation warnings with loguru and warns from its 0.4 -> 0.5 converter
    ("Conversion of channel size ... may be wrong"); a CLI run shows neither.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"bioimageio\.")
        try:
            from loguru import logger  # noqa: PLC0415 - comes with the optional extra
        except ImportError:
            yield
            return
        logger.disable("bioimageio")
        try:
            yield
        finally:
            logger.enable("bioimageio")
