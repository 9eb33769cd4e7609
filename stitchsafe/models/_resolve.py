"""Where a model's tiling geometry comes from: metadata, then flags, then probing.

Declared geometry (metadata or the ``--pooling-factor``/``--depth`` flags) is never
trusted blindly: it is cross-checked with a few forward passes
(:func:`stitchsafe.models.cross_check`), and a model that states nothing is probed
(:func:`stitchsafe.models.probe_geometry`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import GeometryMismatchError
from ..geometry import ModelGeometry, normalize_pooling_factors
from ._cross_check import cross_check, probe_with_period
from ._loaded import LoadedModel
from ._metadata import metadata_geometry, pooling_product
from ._probe import probe_geometry

__all__ = ["resolve_geometry"]


def resolve_geometry(
    model: LoadedModel,
    *,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    depth: int | None = None,
) -> tuple[ModelGeometry, str]:
    """The model's geometry and where it came from: ``"metadata"``, ``"flags"`` or ``"probe"``.

    Metadata wins, then the flags (``pooling_factors``/``depth``; a depth alone means factor
    2), then probing. Declared geometry is always cross-checked with a few forward passes.

    Raises
    ------
    GeometryMismatchError
        Declared geometry (metadata or flags) disagrees with the model's behaviour.
    UnstitchableModelError
        The model cannot be tiled exactly (same padding, spatial normalisation...).
    """
    flags_period = _flags_period(model, pooling_factors, depth)
    declared, meta_period = metadata_geometry(model.metadata, channels_in=model.channels_in)
    if meta_period is not None:
        if flags_period is not None and flags_period != meta_period:
            raise GeometryMismatchError(
                f"the model's metadata says period {meta_period} but --pooling-factor/--depth "
                f"say {flags_period}; drop the flags (the metadata is cross-checked against the "
                "model) or fix the metadata."
            )
        who = "metadata says"
        if declared is not None:
            return cross_check(model, declared, who=who), "metadata"
        return probe_with_period(model, meta_period, who=who), "metadata"
    if flags_period is not None:
        who = "--pooling-factor/--depth say"
        return probe_with_period(model, flags_period, who=who), "flags"
    return probe_geometry(model), "probe"


def _flags_period(
    model: LoadedModel,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None,
    depth: int | None,
) -> tuple[int, ...] | None:
    """The period the flags give; None without flags."""
    if pooling_factors is None and depth is None:
        return None
    pf = normalize_pooling_factors(
        pooling_factors if pooling_factors is not None else 2, dims=model.dims, depth=depth
    )
    return pooling_product(pf)
