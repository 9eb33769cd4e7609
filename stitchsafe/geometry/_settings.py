"""How to tile: the user's tile shape and geometry hints, checked once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import StitchsafeError
from ._model_geometry import ModelGeometry, normalize_pooling_factors
from ._plan import check_tile_shape
from ._shape import Shape

__all__ = ["TilingSettings"]

PoolingLike = Sequence[Sequence[int]] | Sequence[int] | int


@dataclass(frozen=True)
class TilingSettings:
    """Tile shape and geometry hints (for models without metadata), before a model is known.

    Attributes
    ----------
    tile_shape
        Output voxels kept per tile: one int for every axis, one per axis, or ``None`` for
        the largest tile that fits the device's memory budget.
    pooling_factors, depth
        Geometry hints for models without metadata (``--pooling-factor``, ``--depth``).

    Examples
    --------
    >>> TilingSettings(tile_shape=8).tile_shape_for(2)
    (8, 8)
    >>> TilingSettings(pooling_factors=2, depth=2).pooling(3)
    ((2, 2, 2), (2, 2, 2))
    >>> TilingSettings(depth=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --depth needs --pooling-factor (e.g. --pooling-factor 2).
    """

    tile_shape: Sequence[int] | int | None = None
    pooling_factors: PoolingLike | None = None
    depth: int | None = None

    def __post_init__(self) -> None:
        if self.pooling_factors is None and self.depth is not None:
            raise StitchsafeError("--depth needs --pooling-factor (e.g. --pooling-factor 2).")
        if self.tile_shape is not None and not isinstance(self.tile_shape, int):
            object.__setattr__(self, "tile_shape", tuple(self.tile_shape))

    def pooling(self, dims: int) -> tuple[Shape, ...] | None:
        """The pooling hints as one tuple per level and axis, ``None`` without hints."""
        if self.pooling_factors is None:
            return None
        return normalize_pooling_factors(self.pooling_factors, dims=dims, depth=self.depth)

    def tile_shape_for(self, dims: int) -> tuple[Any, ...] | None:
        """The tile shape spelled out per axis, ``None`` when the budget decides."""
        if self.tile_shape is None:
            return None
        if isinstance(self.tile_shape, int):
            return (self.tile_shape,) * dims
        return tuple(self.tile_shape)

    def checked_tile_shape(self, geometry: ModelGeometry) -> Shape | None:
        """The tile shape checked against ``geometry`` (a multiple of its period)."""
        given = self.tile_shape_for(geometry.dims)
        return None if given is None else check_tile_shape(given, geometry)
