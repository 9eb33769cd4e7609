"""The order tiles run in: the grid's C order, or the same in blocks of columns.

Tiles share the input's storage chunks with their neighbours, and a bounded cache of
decoded chunks (:mod:`stitchsafe.io`) decodes each chunk about once while it holds the
chunks under one plane of tiles (the grid's first axis with more than one tile held
fixed): the next plane's tiles find them there. A plane wider than the cache loses that:
its chunks come back after the cache has dropped them. :func:`blocked_order` then runs the
grid in blocks over the axes after that one (every plane of one block, then the next
block), so that only the chunks under one plane of a block need to stay;
:func:`cache_block` picks the largest such block whose chunks fit a byte budget.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from ._plan import Plan
from ._shape import Shape

__all__ = ["blocked_order", "cache_block"]


def _outer(grid: Sequence[int]) -> int:
    """The axis whose planes the cache must bridge: the first with more than one tile."""
    return next((a for a, g in enumerate(grid) if g > 1), 0)


def blocked_order(grid_shape: Sequence[int], block: Sequence[int] | None) -> np.ndarray:
    """Flat (C-order) tile indices, in blocks of ``block`` tiles over the axes after the
    outer one (the first axis with more than one tile): each block runs every plane, in C
    order inside, before the next block (blocks in C order too). ``block`` has one side per
    axis after the outer one; ``None``, or a block as large as the grid, gives the C order.

    >>> blocked_order((2, 4), (4,)).tolist()  # one block: C order
    [0, 1, 2, 3, 4, 5, 6, 7]
    >>> blocked_order((2, 4), (2,)).tolist()  # columns 0-1 of both rows, then 2-3
    [0, 1, 4, 5, 2, 3, 6, 7]
    >>> blocked_order((1, 2, 4), (2,)).tolist()  # a single plane: its rows are the planes
    [0, 1, 4, 5, 2, 3, 6, 7]
    """
    grid = tuple(int(g) for g in grid_shape)
    if block is None:
        return np.arange(math.prod(grid), dtype=np.int64)
    outer = _outer(grid)
    if len(block) != len(grid) - outer - 1 or any(int(b) < 1 for b in block):
        raise ValueError(f"block {tuple(block)} does not fit the tile grid {grid}")
    flat = np.arange(math.prod(grid), dtype=np.int64).reshape(grid)
    lead = (slice(None),) * (outer + 1)
    starts = [range(0, g, int(b)) for g, b in zip(grid[outer + 1 :], block)]
    parts = [
        flat[(*lead, *(slice(s, s + int(b)) for s, b in zip(corner, block)))].ravel()
        for corner in itertools.product(*starts)
    ]
    return np.concatenate(parts)


def cache_block(plan: Plan, chunk: Sequence[int], voxel_bytes: int, fits: int) -> Shape | None:
    """The block for :func:`blocked_order`: ``None`` (C order) when the input's storage
    chunks under one plane of tiles fit in ``fits`` bytes, else the largest block of equal
    sides (in tiles, cut at the grid) whose plane's chunks fit; one tile per axis when none
    does.

    ``chunk`` is the storage chunk per spatial axis and ``voxel_bytes`` what a chunk holds
    per voxel of that shape (every channel stored with it).

    >>> from ._model_geometry import unet_geometry
    >>> from ._plan import make_plan
    >>> plan = make_plan((64, 4096, 16384), unet_geometry([(1, 2, 2)]), tile_shape=(64, 256, 256))
    >>> plan.grid_shape, cache_block(plan, (64, 256, 256), 2, 1 << 30)  # rows of 40 of 64 tiles
    ((1, 16, 64), (40,))
    >>> cache_block(plan, (64, 256, 256), 2, 1 << 32) is None  # a whole row fits: C order
    True
    """
    read, tile, grid = plan.read_shape, plan.tile_shape, plan.grid_shape
    outer = _outer(grid)

    def plane_bytes(side: int) -> int:
        spans = [*read[: outer + 1]]
        spans += [min(side, g) * t + r - t for g, t, r in zip(grid, tile, read)][outer + 1 :]
        total = voxel_bytes
        for span, c, v in zip(spans, chunk, plan.volume_shape):
            c = min(c, v)
            total *= min(-(-span // c) + 1, -(-v // c)) * c
        return total

    side = max(grid[outer + 1 :], default=1)
    if plane_bytes(side) <= fits:
        return None
    while side > 1 and plane_bytes(side) > fits:
        side -= 1
    return tuple(min(side, g) for g in grid[outer + 1 :])
