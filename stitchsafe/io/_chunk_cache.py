"""A bounded cache of decompressed input chunks, so that each chunk is decoded about once.

A tile reads its box with the halo, and neighbouring tiles' boxes overlap each other and
share the input's storage chunks: read box by box, a ``64 x 256 x 256`` chunk is decoded
once for every tile whose box touches it (about 10 times with the bundled 3-D model).
:func:`read_chunked` assembles a box from whole chunks kept in a :class:`ChunkCache`
instead: least recently used chunks are dropped first, within a byte budget, and a chunk
that several read threads want at once is decoded by one of them while the others wait.

The budget is per opened input and process (each dask or SLURM worker process has its
own): at most :data:`CACHE_CEILING` bytes, never more than the input's decoded size, and
``STITCHSAFE_CHUNK_CACHE_MB`` replaces the ceiling (``0`` turns the cache off). A read
whose chunks take more than half of a budget smaller than the input (a whole-volume read)
bypasses the cache. Results never depend on it: a cached read equals the stored data.

A chunk comes back for the tiles of the next row (``y``) and of the next plane (``z``): it
is decoded once while the budget holds the chunks under one plane of tiles (for
``64 x 256 x 256`` uint16 chunks and the bundled 3-D model about ``192 x Y x X x 2`` bytes).
Tiles run in C order of the plan's grid while that fits in half the budget, and in blocks
of columns beyond it (:func:`stitchsafe.io.input_tile_order`), each block's planes one
after the other, so that the chunks under one plane of a block fit; only chunks on the
seams between blocks are then decoded twice.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StitchsafeError

# The package's public names; the cache itself (ChunkCache, cached_read, ...) is used by
# the volumes of this package only.
__all__ = ["CACHE_CEILING", "CACHE_ENV", "CacheStats"]

CACHE_CEILING = 1 << 30
"""Default ceiling of one input's chunk cache in one process (1 GiB): with the default
plan it holds the chunks under a plane of tiles of a 2000 x 2000 uint16 image chunked
``64 x 256 x 256``, and a 24 GB machine running eight worker processes keeps two thirds of
its memory for the rest."""

CACHE_ENV = "STITCHSAFE_CHUNK_CACHE_MB"
"""Environment variable: the ceiling in MiB instead of :data:`CACHE_CEILING` (0: no cache)."""

Key = tuple[int, ...]


@dataclass(frozen=True)
class CacheStats:
    """What a :class:`ChunkCache` has done: chunks decoded (and their voxels), hits, bytes."""

    decoded: int
    decoded_voxels: int
    hits: int
    nbytes: int
    peak_nbytes: int


class ChunkCache:
    """Decoded chunks by grid index, least recently used dropped first; thread-safe.

    Examples
    --------
    >>> cache = ChunkCache(capacity=16)
    >>> a = cache.get((0,), lambda: np.zeros(2))  # 16 bytes: kept
    >>> b = cache.get((0,), lambda: np.ones(2))  # a hit: not decoded again
    >>> c = cache.get((1,), lambda: np.ones(2))  # drops (0,)
    >>> (b == a).all(), cache.stats().decoded, cache.stats().hits, cache.stats().nbytes
    (np.True_, 2, 1, 16)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._loading: dict[Key, threading.Event] = {}
        self._nbytes = self._peak = self._decoded = self._voxels = self._hits = 0

    def get(self, key: Key, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The chunk ``key`` (read-only), decoded with ``load()`` unless cached.

        A chunk that another thread is decoding is waited for, not decoded twice.
        """
        while True:
            with self._lock:
                found = self._entries.get(key)
                if found is not None:
                    self._entries.move_to_end(key)
                    self._hits += 1
                    return found
                event = self._loading.get(key)
                if event is None:
                    event = self._loading[key] = threading.Event()
                    break
            event.wait()
        try:
            value = np.asarray(load())
            value.flags.writeable = False
            with self._lock:  # kept before the waiting threads look again
                self._keep(key, value)
        finally:
            with self._lock:
                del self._loading[key]
                event.set()
        return value

    def _keep(self, key: Key, value: np.ndarray) -> None:
        """Hold ``value`` (under the lock), dropping the least recently used beyond budget."""
        self._decoded += 1
        self._voxels += value.size
        if value.nbytes > self.capacity:
            return
        self._entries[key] = value
        self._nbytes += value.nbytes
        while self._nbytes > self.capacity:
            _, dropped = self._entries.popitem(last=False)
            self._nbytes -= dropped.nbytes
        self._peak = max(self._peak, self._nbytes)

    def stats(self) -> CacheStats:
        """Counts so far (decoded chunks and voxels, hits, bytes held now and at most)."""
        with self._lock:
            return CacheStats(self._decoded, self._voxels, self._hits, self._nbytes, self._peak)

    def clear(self) -> None:
        """Drop every chunk (the counts stay)."""
        with self._lock:
            self._entries.clear()
            self._nbytes = 0


def cache_ceiling() -> int:
    """The ceiling in bytes: :data:`CACHE_ENV` in MiB if set, else :data:`CACHE_CEILING`."""
    text = os.environ.get(CACHE_ENV, "").strip()
    if not text:
        return CACHE_CEILING
    try:
        mib = float(text)
    except ValueError:
        mib = -1.0
    if not (mib >= 0 and math.isfinite(mib)):
        raise StitchsafeError(
            f"{CACHE_ENV}={text!r} is not a size in MiB; set it to a number such as 512 "
            "(0 turns the input chunk cache off), or unset it for the default of "
            f"{CACHE_CEILING >> 20} MiB."
        )
    return int(mib * (1 << 20))


def chunk_shape_of(array: Any) -> tuple[int, ...] | None:
    """The shape ``array`` decodes in: zarr's chunks (inner chunks when sharded), HDF5's.

    ``None`` when reads decode nothing larger than they need (a numpy array or memory map,
    a contiguous HDF5 dataset) or when the chunking is not a regular grid.

    >>> import zarr
    >>> a = zarr.create_array({}, shape=(8, 8), chunks=(2, 4), shards=(4, 8), dtype="u1")
    >>> chunk_shape_of(a), chunk_shape_of(np.zeros(3))
    ((2, 4), None)
    """
    if isinstance(array, np.ndarray):
        return None
    try:
        chunks = array.chunks
    except Exception:  # noqa: BLE001 - an irregular zarr chunk grid raises; not cached
        return None
    if not chunks or len(chunks) != len(array.shape):
        return None
    if not all(isinstance(c, (int, np.integer)) and c > 0 for c in chunks):
        return None
    return tuple(int(c) for c in chunks)


def cache_capacity(array: Any, itemsize: int) -> int:
    """The cache budget for ``array``: the ceiling, at most the array's decoded size."""
    return min(cache_ceiling(), math.prod(int(n) for n in array.shape) * itemsize)


def _ranges(index: Sequence[Any], shape: Sequence[int]) -> list[tuple[int, int]] | None:
    """``(begin, end)`` per stored axis of an index of ints and unit-step slices, else None."""
    out = []
    for i, n in zip(index, shape, strict=True):
        if isinstance(i, (int, np.integer)):
            out.append((int(i), int(i) + 1))
        elif isinstance(i, slice) and i.step in (None, 1):
            lo, hi, _ = i.indices(int(n))
            out.append((lo, hi))
        else:
            return None
    return out


def read_chunked(
    array: Any, chunks: tuple[int, ...], index: tuple[Any, ...], cache: ChunkCache
) -> np.ndarray | None:
    """``array[index]`` put together from whole chunks held in ``cache``.

    ``index`` holds an int or a unit-step slice per axis of ``array`` (chunked in
    ``chunks``). ``None`` for any other index, or a read too large for the cache (more
    than half of its budget in chunks, unless it holds the whole array: a whole-volume
    read would only push out the chunks that tiles share); the caller then reads
    ``array[index]`` itself.
    """
    shape = tuple(int(n) for n in array.shape)
    ranges = _ranges(index, shape)
    if ranges is None or any(hi <= lo for lo, hi in ranges):
        return None
    grid = [range(lo // c, (hi - 1) // c + 1) for (lo, hi), c in zip(ranges, chunks)]
    itemsize = np.dtype(array.dtype).itemsize
    # The bytes of the (array-clipped) chunks under the index, as the cache holds them.
    touched = itemsize * math.prod(
        min(g[-1] * c + c, n) - g[0] * c for g, c, n in zip(grid, chunks, shape)
    )
    holds_all = cache.capacity >= math.prod(shape) * itemsize
    if touched > (cache.capacity if holds_all else cache.capacity // 2):
        return None
    out = np.empty(tuple(hi - lo for lo, hi in ranges), dtype=array.dtype)
    for key in itertools.product(*grid):
        cell = tuple(
            slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(key, chunks, shape, strict=True)
        )
        chunk = cache.get(key, lambda cell=cell: array[cell])
        src, dst = [], []
        for (lo, hi), s in zip(ranges, cell, strict=True):
            b, e = max(lo, s.start), min(hi, s.stop)
            src.append(slice(b - s.start, e - s.start))
            dst.append(slice(b - lo, e - lo))
        out[tuple(dst)] = chunk[tuple(src)]
    return out[tuple(0 if isinstance(i, (int, np.integer)) else slice(None) for i in index)]


# Each opened input's cache and chunk shape (None: read without a cache), by the object
# that holds the input's handle; dropped with it (or by forget_chunks).
_CACHES: weakref.WeakKeyDictionary[Any, tuple[ChunkCache, tuple[int, ...]] | None] = (
    weakref.WeakKeyDictionary()
)
_CACHES_LOCK = threading.Lock()


def _cache_for(owner: Any, array: Any) -> tuple[ChunkCache, tuple[int, ...]] | None:
    """``owner``'s cache and ``array``'s chunk shape, made on first use; None: no cache."""
    with _CACHES_LOCK:
        if owner in _CACHES:
            return _CACHES[owner]
        chunks = chunk_shape_of(array)
        made = None
        if chunks is not None:
            capacity = cache_capacity(array, np.dtype(array.dtype).itemsize)
            if capacity > 0:
                made = (ChunkCache(capacity), chunks)
        _CACHES[owner] = made
        return made


def cached_read(owner: Any, array: Any, index: tuple[Any, ...]) -> Any:
    """``array[index]``, through ``owner``'s chunk cache when the array is chunked.

    ``owner`` is the object that holds the opened ``array`` (one cache per opened input,
    per process); reads too large for the cache, and other indexes, go to ``array``.
    """
    found = _cache_for(owner, array)
    if found is not None:
        out = read_chunked(array, found[1], index, found[0])
        if out is not None:
            return out
    return array[index]


def cache_stats(owner: Any) -> CacheStats | None:
    """What ``owner``'s chunk cache has done (``None``: it has none, or none yet)."""
    with _CACHES_LOCK:
        found = _CACHES.get(owner)
    return None if found is None else found[0].stats()


def forget_chunks(owner: Any) -> None:
    """Drop ``owner``'s cache (its input was closed); the next read makes a new one."""
    with _CACHES_LOCK:
        _CACHES.pop(owner, None)
