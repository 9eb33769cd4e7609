"""How output images are stored: bounded inner chunks inside one shard per tile write box.

A tile's write box can be large (on a big GPU the default tile is sized to half the free
device memory: a 256^3 box of 16 float32 channels is 1 GiB), so it is not a good chunk:
blosc refuses chunks over 2 GiB, and a viewer that shows one slice of one channel would
fetch the whole tile. It is a good *shard* (zarr v3's sharding codec, one stored object
holding many chunks and an index): each tile writes exactly one shard, so no two tasks
share a stored object, the number of files is the number of tiles, not of chunks, and
the resume bookkeeping (one done flag per tile, the shard keys cross-checked against
it) is the same as with one chunk per tile.

Inside the shard, :class:`ChunkPolicy` chooses the inner chunks, pure arithmetic:

- **one channel per inner chunk** (when the tile is sharded). Viewers show channels as
  separate layers (napari opens only the foreground channel by default), so a view of one
  channel then reads only that channel's bytes; the blockwise labelling reads whole
  shards (every channel) either way, and compression is per channel just as well.
- **spatially near-cubic, bounded in voxels**: about 64^3 voxels in 3-D and 256^2 in 2-D
  (``TARGET_VOXELS``), the sizes web and desktop viewers (neuroglancer, napari) fetch
  comfortably; 1 MiB of float32.
- **bounded in bytes**: never over :data:`MAX_CHUNK_BYTES` (4 MiB), for any dtype and any
  tile shape; far below the codecs' limits.
- **every inner chunk dimension divides the shard's**, as zarr requires. Tiles are
  multiples of the model's period (powers of two for U-Nets), so halving works; an axis
  whose length has no divisor near half (a prime) is cut only when the byte bound needs it.

A tile that fits one bounded chunk (all channels) is stored as one chunk, unsharded, as
small tiles always were.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_CHUNK_BYTES", "TARGET_VOXELS", "ChunkPolicy", "StorageChunks"]

# Spatial voxels per inner chunk, by number of spatial axes: 64^3, 256^2, 65536.
TARGET_VOXELS = {1: 1 << 16, 2: 1 << 16, 3: 1 << 18}
# Bytes per inner chunk, at most (any dtype, any divisibility of the tile shape).
MAX_CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class StorageChunks:
    """How one array is stored: its chunk shape and its shard shape (channels first).

    Attributes
    ----------
    chunks
        The array's chunk shape (the inner chunks when sharded).
    shards
        The shard shape (one tile's write box, every channel), ``None`` when unsharded.
    chunk_bytes
        Uncompressed bytes of one (full) chunk.
    """

    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    chunk_bytes: int

    @property
    def written(self) -> tuple[int, ...]:
        """The shape of the stored objects each task writes: the shard, else the chunk."""
        return self.shards if self.shards is not None else self.chunks

    @property
    def chunks_per_shard(self) -> int:
        """Inner chunks in one shard (1 when unsharded)."""
        return math.prod(w // c for w, c in zip(self.written, self.chunks))


@dataclass(frozen=True)
class ChunkPolicy:
    """The bounds of inner chunks, and whether tiles are stored as shards of them.

    Attributes
    ----------
    target_voxels
        Spatial voxels per inner chunk to aim for; ``None``: :data:`TARGET_VOXELS` for the
        number of spatial axes. Exceeded only when no divisor of the tile shape fits.
    max_bytes
        Bytes per inner chunk, never exceeded.
    sharded
        Store each tile as one shard of inner chunks (``True``), or the inner chunks as
        separate objects (``False``: many more files; for comparisons).

    Examples
    --------
    A GPU-sized tile: inner chunks of one channel, 64^3 voxels (1 MiB), one shard per tile.

    >>> s = ChunkPolicy().storage((256, 256, 256), channels=16, dtype="float32")
    >>> s.chunks, s.shards, s.chunk_bytes, s.chunks_per_shard
    ((1, 64, 64, 64), (16, 256, 256, 256), 1048576, 1024)

    A small tile stays one chunk, unsharded; a label image has no channel axis.

    >>> ChunkPolicy().storage((18, 9), channels=3, dtype="float32").shards is None
    True
    >>> ChunkPolicy().storage((1024, 1024), channels=None, dtype="uint32").chunks
    (256, 256)
    """

    target_voxels: int | None = None
    max_bytes: int = MAX_CHUNK_BYTES
    sharded: bool = True

    def __post_init__(self) -> None:
        if self.target_voxels is not None and self.target_voxels < 1:
            raise ValueError(f"target_voxels must be positive, got {self.target_voxels}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {self.max_bytes}")

    def storage(
        self, write_box: Sequence[int], *, channels: int | None, dtype: str | np.dtype
    ) -> StorageChunks:
        """The chunks (and shards) of an array whose tiles write ``write_box``.

        Parameters
        ----------
        write_box
            A tile's spatial write box (the plan's ``chunks``), ``(Z, Y, X)`` or ``(Y, X)``.
        channels
            Channels of the leading ``c`` axis, ``None`` for an array without one.
        dtype
            The array's data type.
        """
        box = tuple(int(w) for w in write_box)
        itemsize = np.dtype(dtype).itemsize
        target = self.target_voxels or TARGET_VOXELS.get(len(box), TARGET_VOXELS[3])
        lead = () if channels is None else (int(channels),)
        whole = (*lead, *box)
        if math.prod(box) <= target and math.prod(whole) * itemsize <= self.max_bytes:
            return StorageChunks(whole, None, math.prod(whole) * itemsize)
        spatial = inner_shape(box, target, max(1, self.max_bytes // itemsize))
        chunks = (*((1,) if channels is not None else ()), *spatial)
        shards = whole if self.sharded and chunks != whole else None
        return StorageChunks(chunks, shards, math.prod(chunks) * itemsize)


def inner_shape(shard: Sequence[int], target: int, max_items: int) -> tuple[int, ...]:
    """The largest near-cubic divisor shape of ``shard`` within ``target`` voxels.

    Cuts the longest axis (of equally long ones, the slowest: thinner slabs for viewers
    of planes) to its largest divisor at most half as long, one axis at a time, while the
    shape holds over ``target`` voxels; an axis without such a divisor within 8x of its
    length (a prime length) is cut only while the shape holds over ``max_items``.

    >>> inner_shape((256, 256, 256), 64**3, 10**9), inner_shape((16, 512, 512), 64**3, 10**9)
    ((64, 64, 64), (16, 128, 128))
    >>> inner_shape((144, 144, 144), 64**3, 10**9), inner_shape((48, 96, 96), 64**3, 10**9)
    ((36, 72, 72), (48, 48, 96))
    >>> inner_shape((1009, 1009), 256**2, 10**9), inner_shape((1009, 1009), 256**2, 5000)
    ((1009, 1009), (1, 1009))
    """
    inner = [int(s) for s in shard]
    while math.prod(inner) > target or math.prod(inner) > max_items:
        cuts = [(inner[a], a, _cut(shard[a], inner[a])) for a in range(len(inner))]
        good = [c for c in cuts if c[2] * 8 >= c[0] > 1]
        if not good and math.prod(inner) > max_items:
            good = [c for c in cuts if c[0] > 1]
        if not good:
            break
        _, axis, size = max(good, key=lambda c: (c[0], -c[1]))  # ties: the slowest axis
        inner[axis] = size
    return tuple(inner)


def _cut(length: int, current: int) -> int:
    """The largest divisor of ``length`` at most half of ``current`` (at least 1)."""
    limit = current // 2
    best = 1
    for d in range(1, math.isqrt(length) + 1):
        if length % d == 0:
            for q in (d, length // d):
                if best < q <= limit:
                    best = q
    return best
