"""Where results go: the output location and what to do with an existing one, checked once."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import StitchsafeError

__all__ = ["OutputSettings"]


@dataclass(frozen=True)
class OutputSettings:
    """Output group and the policy for an existing output.

    Attributes
    ----------
    output
        Zarr v3 group to write into; ``None``: the default location beside the input.
    overwrite
        Replace existing outputs written by stitchsafe.
    resume
        Continue an interrupted run into the same output (only unfinished tiles run).

    Examples
    --------
    >>> OutputSettings(output="out.zarr", resume=True).resume
    True
    >>> OutputSettings(overwrite=True, resume=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --resume continues an interrupted run and --overwrite ...
    """

    output: str | os.PathLike[str] | None = None
    overwrite: bool = False
    resume: bool = False

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise StitchsafeError(
                "--resume continues an interrupted run and --overwrite starts again; pass one."
            )
        if self.output is not None:
            object.__setattr__(self, "output", os.fspath(self.output))
