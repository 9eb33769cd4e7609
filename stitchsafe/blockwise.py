"""Blockwise instance labels, identical to :func:`stitchsafe.instances.label_array`.

Three passes of dask tasks on the threaded scheduler (one task per block; a block is one
output chunk, so no two tasks ever write the same chunk):

1. **components** — read a block's embeddings, find its connected components
   (:func:`~stitchsafe.instances.label_block`), write the block-local ids into the output
   array, return each fragment's size and global first voxel.
2. **faces** — for each face a block shares with its next neighbour along each axis, read
   the one-voxel slabs on both sides (local ids, and the embeddings only where both sides
   are foreground) and return the fragment pairs linked across the face.
3. **relabel** — after union-find over those pairs, the size filter and the global
   numbering (:func:`~stitchsafe.instances.merge_fragments`), map each block's local ids
   to final ids and write the block again.

Memory: one block's embeddings (and its faces' slabs) per worker thread, plus tables with
one entry per fragment (an object cut by ``k`` blocks counts ``k`` times); never the whole
volume. The local ids are parked in the output array itself between passes 1 and 3, so
nothing else is written to disk.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .errors import StitchsafeError
from .geometry import Box
from .instances import LabelParams, label_block, link_mask, max_label, merge_fragments

__all__ = ["LabelStats", "block_boxes", "label_blocks"]

T = TypeVar("T")


@dataclass(frozen=True)
class LabelStats:
    """What a blockwise labelling did."""

    objects: int
    fragments: int
    blocks: int
    seconds: float


def block_boxes(shape: Sequence[int], block_shape: Sequence[int]) -> list[Box]:
    """The blocks of ``shape``, in C order of the block grid (the last ones may be cut).

    >>> [b.to_slices() for b in block_boxes((3, 4), (2, 4))]
    [(slice(0, 2, None), slice(0, 4, None)), (slice(2, 3, None), slice(0, 4, None))]
    """
    ranges = [range(0, s, b) for s, b in zip(shape, block_shape)]
    return [
        Box(begin, tuple(min(b + w, s) for b, w, s in zip(begin, block_shape, shape)))
        for begin in itertools.product(*ranges)
    ]


def _run(
    fn: Callable[[int], T], n: int, *, desc: str, num_workers: int | None, progress: bool
) -> list[T]:
    """Run ``fn(0..n-1)`` as dask tasks on the threaded scheduler, with a tqdm bar."""
    import dask
    from tqdm.auto import tqdm

    from .engine import _cpu_count

    bar = tqdm(total=n, desc=desc, unit="block", disable=not progress, leave=False)
    lock = threading.Lock()

    def task(i: int) -> T:
        result = fn(i)
        with lock:
            bar.update(1)
        return result

    try:
        tasks = [dask.delayed(task, pure=False)(i) for i in range(n)]
        workers = num_workers or max(2, _cpu_count())
        return list(dask.compute(*tasks, scheduler="threads", num_workers=workers))
    finally:
        bar.close()


def _plane(box: Box, axis: int, at: int) -> Box:
    """The one-voxel slab of ``box`` at coordinate ``at`` along ``axis``."""
    begin, end = list(box.begin), list(box.end)
    begin[axis], end[axis] = at, at + 1
    return Box(tuple(begin), tuple(end))


def label_blocks(
    embeddings: Any,
    out: Any,
    *,
    params: LabelParams,
    block_shape: Sequence[int] | None = None,
    max_id: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> LabelStats:
    """Label ``embeddings`` block by block into ``out``; equal to ``label_array``.

    Parameters
    ----------
    embeddings
        ``(C, *spatial)`` array-like read by slicing (a zarr array, or numpy).
    out
        ``(*spatial)`` unsigned-integer array-like written by slicing. A zarr array's
        chunks must equal ``block_shape`` so that no two tasks share a chunk.
    params
        Threshold, minimum size, foreground cut and channel roles.
    block_shape
        Spatial block shape; default: ``out``'s chunks.
    max_id
        A lower id limit than ``out``'s dtype allows (for tests of the overflow check).
    num_workers
        dask threads (default: the CPU count, at least 2), as for ``engine.run_plan``.
    progress
        Show tqdm bars on stderr.

    Returns
    -------
    LabelStats
    """
    start = time.perf_counter()
    shape = tuple(int(s) for s in embeddings.shape[1:])
    channels = int(embeddings.shape[0])
    if tuple(out.shape) != shape:
        raise ValueError(f"output shape {tuple(out.shape)} differs from the volume's {shape}")
    params.check_channels(channels)
    chunks = getattr(out, "chunks", None)
    block = tuple(int(b) for b in (block_shape or chunks or shape))
    if chunks is not None and tuple(chunks) != block:
        raise ValueError(f"block shape {block} differs from the output chunks {tuple(chunks)}")
    dtype = np.dtype(out.dtype)
    local_limit = max_label(dtype)
    limit = max_label(dtype, max_id)
    boxes = block_boxes(shape, block)
    grid = tuple(math.ceil(s / b) for s, b in zip(shape, block))
    emb_channels = list(params.embedding_channels(channels))

    def components(i: int) -> tuple[np.ndarray, np.ndarray]:
        box = boxes[i]
        frags = label_block(np.asarray(embeddings[(slice(None), *box.to_slices())]), params=params)
        if frags.count > local_limit:
            raise StitchsafeError(
                f"block {box} holds {frags.count} separate pieces, more than {dtype} ids "
                f"({local_limit}); pass --label-dtype uint64 or use smaller tiles."
            )
        out[box.to_slices()] = frags.labels.astype(dtype, copy=False)
        coords = np.unravel_index(frags.first, box.shape)
        first = np.ravel_multi_index(tuple(c + b for c, b in zip(coords, box.begin)), shape)
        return frags.sizes, first.astype(np.int64)

    run = functools.partial(_run, num_workers=num_workers, progress=progress)
    tables = run(components, len(boxes), desc="labels: components")
    counts = np.array([t[0].size for t in tables], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    sizes = np.concatenate([t[0] for t in tables]) if tables else np.zeros(0, np.int64)
    first = np.concatenate([t[1] for t in tables]) if tables else np.zeros(0, np.int64)
    del tables

    def faces(i: int) -> np.ndarray:
        box, index = boxes[i], np.unravel_index(i, grid)
        own: np.ndarray | None = None
        own_emb: np.ndarray | None = None
        found = [np.zeros((0, 2), np.int64)]
        for axis in range(len(shape) if counts[i] else 0):
            if index[axis] + 1 >= grid[axis]:
                continue
            step = math.prod(grid[axis + 1 :])
            j = i + step
            if counts[j] == 0:
                continue
            if own is None:
                own = np.asarray(out[box.to_slices()])
            lo = np.take(own, -1, axis=axis)
            hi_box = _plane(boxes[j], axis, boxes[j].begin[axis])
            hi = np.asarray(out[hi_box.to_slices()]).squeeze(axis)
            both = (lo > 0) & (hi > 0)
            if not both.any():
                continue
            if own_emb is None:
                # All channels: a chunk holds them all, so selecting costs no extra read.
                own_emb = np.asarray(embeddings[(slice(None), *box.to_slices())])[emb_channels]
            lo_emb = np.take(own_emb, -1, axis=axis + 1)
            hi_emb = np.asarray(embeddings[(slice(None), *hi_box.to_slices())])[emb_channels]
            hi_emb = hi_emb.squeeze(axis + 1)
            linked = link_mask(lo_emb, hi_emb, both, threshold=params.threshold)
            pairs = np.stack([lo[linked], hi[linked]], axis=1).astype(np.int64)
            pairs = np.unique(pairs, axis=0)
            pairs[:, 0] += offsets[i] - 1
            pairs[:, 1] += offsets[j] - 1
            found.append(pairs)
        return np.concatenate(found)

    found = run(faces, len(boxes), desc="labels: faces")
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    del found
    ids, objects = merge_fragments(sizes, first, pairs, min_size=params.min_size, max_id=limit)
    del sizes, first, pairs

    def relabel(i: int) -> None:
        if counts[i] == 0:
            return  # the block holds background only and was written as zeros
        box = boxes[i]
        lut = np.zeros(int(counts[i]) + 1, dtype)
        lut[1:] = ids[offsets[i] : offsets[i + 1]]
        out[box.to_slices()] = lut[np.asarray(out[box.to_slices()])]

    run(relabel, len(boxes), desc="labels: relabel")
    return LabelStats(
        objects=objects,
        fragments=int(offsets[-1]),
        blocks=len(boxes),
        seconds=time.perf_counter() - start,
    )
