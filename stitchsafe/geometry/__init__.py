"""Pure tiling arithmetic: shapes, boxes, model geometry and tile plans (no torch, zarr or dask).

``ModelGeometry`` says how a network maps input sizes to output sizes; ``make_plan`` puts
tiles on the period lattice of the whole-volume pass, so that stitched output equals one
forward pass over the whole volume. The modules inside are private; import from here.
"""

from __future__ import annotations

from ._box import Box
from ._model_geometry import (
    ModelGeometry,
    normalize_pooling_factors,
    unet_geometry,
    unet_output_size,
)
from ._order import blocked_order, cache_block
from ._plan import (
    Plan,
    Tile,
    batch_reads,
    check_tile_shape,
    clamp_tile_shape,
    make_plan,
)
from ._settings import PoolingLike, TilingSettings
from ._shape import Shape, parse_ints
from ._tile_shape import default_tile_shape

__all__ = [
    "Box",
    "ModelGeometry",
    "Plan",
    "PoolingLike",
    "Shape",
    "Tile",
    "TilingSettings",
    "batch_reads",
    "blocked_order",
    "cache_block",
    "check_tile_shape",
    "clamp_tile_shape",
    "default_tile_shape",
    "make_plan",
    "normalize_pooling_factors",
    "parse_ints",
    "unet_geometry",
    "unet_output_size",
]
