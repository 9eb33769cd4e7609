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
    pyramid
        Write the resolution levels ``1``, ``2``... of every output image after it is
        complete (:func:`stitchsafe.io.write_pyramid`; finished by ``resume`` when
        interrupted). On by default: a large result without levels cannot be browsed in
        napari or neuroglancer, and the levels cost about 1/7 of level 0's writes in 3-D
        (1/3 in 2-D).

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
    pyramid: bool = True

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise StitchsafeError(
                "--resume continues an interrupted run and --overwrite starts again; pass one."
            )
        if self.output is not None:
            object.__setattr__(self, "output", os.fspath(self.output))
