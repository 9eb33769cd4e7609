"""Which tiles of a plan have their stored object (shard, or chunk) in a zarr v3 array.

An output's tiles each write one shard (one chunk, when unsharded) of the array its image
names as ``stitchsafe.tile_array``; one listing of the array's directory tells which are
there, and the resume cross-checks the done mask against it (:mod:`._resume`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from ._place import place_keys

__all__: list[str] = []  # tiles_stored: used inside io only


def tiles_stored(array_dir: str, grid_shape: Sequence[int]) -> np.ndarray | None:
    """Which tiles of ``grid_shape`` have their shard (or chunk) in the zarr v3 array at
    ``array_dir``.

    The array's trailing axes must be sharded (or, unsharded, chunked) like the tile grid,
    one stored object per tile, and its leading axes (channels) be one each; ``None`` when
    they are not, or when the array cannot be read (nothing is then known). One listing of
    the array's directory.
    """
    grid = tuple(int(g) for g in grid_shape)
    try:
        arr: Any = zarr.open_array(store=array_dir, mode="r")
        encoding = arr.metadata.chunk_key_encoding  # zarr v3 only
        separator = str(encoding.separator)
        zero = str(arr.metadata.encode_chunk_key((0,) * arr.ndim))
    except Exception:  # noqa: BLE001 - unreadable or zarr v2: nothing to cross-check
        return None
    stored = arr.shards or arr.chunks  # the shard keys, when sharded, are the c/... keys
    chunk_grid = tuple(-(-int(s) // int(c)) for s, c in zip(arr.shape, stored))
    lead = arr.ndim - len(grid)
    if lead < 0 or chunk_grid[lead:] != grid or any(n != 1 for n in chunk_grid[:lead]):
        return None
    prefix = zero[: len(zero) - len(separator.join("0" * arr.ndim))]
    present = np.zeros(grid, dtype=bool)
    for key in place_keys(array_dir):
        index = _chunk_index(key, prefix, separator, arr.ndim)
        if index is None or any(index[:lead]):
            continue
        if all(i < g for i, g in zip(index[lead:], grid)):
            present[index[lead:]] = True
    return present


def _chunk_index(key: str, prefix: str, separator: str, ndim: int) -> tuple[int, ...] | None:
    """The chunk coordinates a store key names (``None`` for metadata and other files).

    >>> _chunk_index("c/0/2/3", "c/", "/", 3), _chunk_index("zarr.json", "c/", "/", 3)
    ((0, 2, 3), None)
    """
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix) :].split(separator)
    if len(parts) != ndim or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)
