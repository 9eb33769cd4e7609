"""Downsampling for pyramids, pure numpy: each level's factors, and mean and stride.

Two methods, chosen by what an image holds:

- ``mean`` (embeddings, intensities): a level voxel is the mean of the block of ``f``
  voxels per axis below it, computed in float64 and rounded to the image's dtype (to the
  nearest integer for integer images). At an odd edge the last block is smaller and its
  mean is over the voxels it has. A mean voxel stands for the centre of its block, so the
  level's translation moves by ``(f - 1) / 2`` of the finer voxel size.
- ``stride`` (labels): a level voxel is the first voxel of its block (``array[::f]``).
  It never invents a label, merges two objects or creates a boundary that is not there,
  and it costs a slice; a mode (majority) filter looks smoother but costs a sort per
  block, breaks ties arbitrarily and can still drop small objects. A strided level keeps
  level 0's translation (its voxel is level 0's voxel ``f * i``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["PYRAMID_METHODS", "downsample", "pyramid_factors"]

PYRAMID_METHODS = ("mean", "stride")
# Source elements read and reduced at once (float64 temporaries are at most half of it).
PIECE_ITEMS = 1 << 21
_TOLERANCE = 1e-6


def pyramid_factors(
    shape: Sequence[int], scale: Sequence[float], top: Sequence[int]
) -> list[tuple[int, ...]]:
    """Each pyramid level's downsampling factors over the level before it (level 1 first).

    Every level halves the axes whose voxel size is less than twice the finest one (of the
    axes still longer than one voxel), so the finest voxel size doubles at each level and
    coarser axes wait until the finer ones catch up: z of a 2 x 0.5 x 0.5 volume is first
    halved at level 3 (y and x at 1, then 2). Levels are added until the last one fits in
    ``top`` (level 0's chunk: one read shows all of it).

    Parameters
    ----------
    shape, scale
        Level 0's spatial shape and voxel size.
    top
        The shape the coarsest level must fit in.

    Examples
    --------
    >>> pyramid_factors((40, 1000, 1000), (2.0, 0.5, 0.5), (64, 64, 64))
    [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]
    >>> pyramid_factors((300, 70), (1, 1), (256, 256)), pyramid_factors((8, 8), (1, 1), (8, 8))
    ([(2, 2)], [])
    >>> pyramid_factors((1, 600), (1, 1), (256, 256))
    [(1, 2), (1, 2)]
    """
    size = [int(n) for n in shape]
    voxel = [float(s) for s in scale]
    steps: list[tuple[int, ...]] = []
    while any(n > t for n, t in zip(size, top, strict=True)):
        longer = [a for a, n in enumerate(size) if n > 1]
        finest = min(voxel[a] for a in longer)
        step = tuple(
            2 if a in longer and voxel[a] < 2 * finest * (1 - _TOLERANCE) else 1
            for a in range(len(size))
        )
        steps.append(step)
        size = [-(-n // f) for n, f in zip(size, step)]
        voxel = [s * f for s, f in zip(voxel, step)]
    return steps


def downsample(
    block: np.ndarray, factors: Sequence[int], method: str, dtype: np.dtype
) -> np.ndarray:
    """``block`` downsampled by ``factors`` per axis (ceil: an odd edge keeps its voxel).

    Examples
    --------
    >>> x = np.arange(10, dtype=np.float32).reshape(2, 5)
    >>> downsample(x, (1, 2), "mean", x.dtype)
    array([[0.5, 2.5, 4. ],
           [5.5, 7.5, 9. ]], dtype=float32)
    >>> downsample(x.astype(np.uint32), (2, 2), "stride", np.dtype("uint32"))
    array([[0, 2, 4]], dtype=uint32)
    >>> downsample(np.array([1, 2, 2], np.uint8), (2,), "mean", np.dtype("uint8"))
    array([2, 2], dtype=uint8)
    """
    if method == "stride":
        return np.ascontiguousarray(block[tuple(slice(None, None, int(f)) for f in factors)])
    if method != "mean":
        raise ValueError(f"unknown downsampling method {method!r}; use one of {PYRAMID_METHODS}")
    total: np.ndarray = block
    counts: np.ndarray | float = 1.0
    for axis, f in enumerate(factors):
        if f == 1:
            continue
        n = total.shape[axis]
        starts = np.arange(0, n, int(f))
        total = _block_sums(total, axis, int(f))
        sizes = np.diff(np.append(starts, n)).astype(np.float64)
        counts = counts * sizes.reshape([-1 if a == axis else 1 for a in range(block.ndim)])
    mean = np.asarray(total, dtype=np.float64) / counts
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(dtype)


def _block_sums(a: np.ndarray, axis: int, f: int) -> np.ndarray:
    """Sums (float64) of the runs of ``f`` elements along ``axis``; the last run may be
    shorter. What ``np.add.reduceat`` gives (the run's elements added in turn; float64
    inputs may differ from it in the last bit), about ten times faster on large blocks:
    strided slices are added whole instead of one run at a time.

    >>> _block_sums(np.arange(5, dtype=np.float32), 0, 2)
    array([1., 5., 4.])
    """
    n = a.shape[axis]
    full = n - n % f

    def part(s: slice) -> np.ndarray:
        return a[(slice(None),) * axis + (s,)]

    total = part(slice(0, full, f)).astype(np.float64)
    for i in range(1, f):
        total += part(slice(i, full, f))
    if full < n:
        tail = part(slice(full, n)).sum(axis=axis, keepdims=True, dtype=np.float64)
        total = np.concatenate([total, tail], axis=axis)
    return total


def piece_shape(
    block: Sequence[int],
    chunks: Sequence[int],
    factors: Sequence[int],
    max_items: int = PIECE_ITEMS,
) -> tuple[int, ...]:
    """The shape of the pieces (in target voxels) one target ``block`` is computed in.

    A piece's source is whole source ``chunks`` along every axis (each chunk is read and
    decoded once) and at most ``max_items`` elements unless one such unit is larger;
    pieces grow from the last axis, and along an axis only when the axes after it span the
    block, so that a piece's source is one contiguous run of chunks.

    >>> piece_shape((4, 32, 32), (1, 16, 16), (1, 2, 2), max_items=256)
    (1, 8, 8)
    >>> piece_shape((4, 32, 32), (1, 16, 16), (1, 2, 2), max_items=512)
    (1, 8, 16)
    >>> piece_shape((4, 32, 32), (1, 16, 16), (1, 2, 2), max_items=4096)
    (1, 32, 32)
    >>> piece_shape((4, 32, 32), (1, 16, 16), (1, 2, 2))
    (4, 32, 32)
    """
    unit = [math.lcm(int(c), int(f)) // int(f) for c, f in zip(chunks, factors, strict=True)]
    piece = [min(int(b), u) for b, u in zip(block, unit)]
    for a in reversed(range(len(piece))):
        others = math.prod(p * int(f) for i, (p, f) in enumerate(zip(piece, factors)) if i != a)
        k = max(1, max_items // (others * unit[a] * int(factors[a])))
        piece[a] = min(int(block[a]), unit[a] * k)
        if piece[a] < int(block[a]):
            break
    return tuple(piece)
