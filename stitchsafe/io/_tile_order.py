"""The order a run's tiles go in, so that the input's chunk cache decodes each chunk about
once: the grid's C order, or blocks of columns when one plane of tiles reads more chunks
than half the cache holds (:func:`stitchsafe.geometry.cache_block`).

The order depends on the input's storage chunks and this process's cache budget, never on
what a tile computes: every order gives the same output. A run records its block with its
done mask (:class:`stitchsafe.io.DoneMask`), and a resumed run takes the recorded one, so
that a resumed tile runs in the batch it had, whatever the cache budget is then.
:class:`TileSubset` holds the tiles of a run, or those it has left, by flat index in that
order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from ..geometry import Plan, Shape, Tile, cache_block
from ._chunk_cache import cache_capacity, chunk_shape_of
from ._volume import Volume

__all__ = ["TileSubset", "input_tile_block"]


def _layout(volume: Volume) -> tuple[tuple[int, ...], int, int, int] | None:
    """The chunk per spatial axis, the bytes a chunk holds per voxel of it (all stored
    channels, timepoints), the cache budget and the input's decoded size; ``None`` when
    reads go without a cache."""
    array = volume.stored_array()
    chunks = chunk_shape_of(array)
    if chunks is None:
        return None
    itemsize = np.dtype(array.dtype).itemsize
    budget = cache_capacity(array, itemsize)
    if budget <= 0:
        return None
    spatial = [0] * volume.ndim
    voxel_bytes = itemsize
    for role, c in zip(volume.stored_roles(), chunks):
        if role not in ("c", "drop"):
            spatial[int(role)] = c
        else:  # a channel axis, or one indexed away: decoded along with the chunk
            voxel_bytes *= c
    total = math.prod(int(n) for n in array.shape) * itemsize
    return tuple(spatial), voxel_bytes, budget, total


def input_tile_block(plan: Plan, volume: Volume) -> Shape | None:
    """The block of tiles (:func:`stitchsafe.geometry.blocked_order`) to run ``plan`` in
    over ``volume``, or ``None`` for C order: C order unless the chunks under one plane of
    tiles need more than half the chunk cache (the other half keeps the chunks the next
    plane shares while it loads its own). Without a cache, or with the whole input in it,
    the order does not matter: C order."""
    layout = _layout(volume)
    if layout is None:
        return None
    chunk, voxel_bytes, budget, total = layout
    if budget >= total:  # the whole input stays decoded
        return None
    return cache_block(plan, chunk, voxel_bytes, budget // 2)


class TileSubset(Sequence[Tile]):
    """Some of a plan's tiles, by flat index: 8 bytes per tile, Tiles made on demand.

    >>> from stitchsafe.geometry import make_plan, unet_geometry
    >>> plan = make_plan((8, 8), unet_geometry([(2, 2)]), tile_shape=(2, 2))
    >>> subset = TileSubset(plan, np.array([1, 5]))
    >>> len(subset), [t.index for t in subset], subset[-1].index
    (2, [(0, 1), (1, 1)], (1, 1))
    """

    def __init__(self, plan: Plan, indices: np.ndarray) -> None:
        self.plan = plan
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    @overload
    def __getitem__(self, i: int) -> Tile: ...

    @overload
    def __getitem__(self, i: slice) -> TileSubset: ...

    def __getitem__(self, i: int | slice) -> Tile | TileSubset:
        if isinstance(i, slice):
            return TileSubset(self.plan, self.indices[i])
        return self.plan.tile(int(self.indices[i]))

    def __iter__(self) -> Iterator[Tile]:
        for i in self.indices:
            yield self.plan.tile(int(i))
