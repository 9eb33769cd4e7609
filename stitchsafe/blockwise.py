"""Blockwise instance labels, identical to :func:`stitchsafe.instances.label_array`.

Three passes of dask tasks on the threaded scheduler (one task per block; a block is one
output chunk, so no two tasks ever write the same chunk):

1. **components** — read a block's embeddings (with a one-voxel halo when seeds are used:
   whether a voxel is a seed depends on its neighbours), find its connected components
   (:func:`~stitchsafe.instances.label_block`), write the block-local ids, return each
   fragment's size and global first voxel.
2. **faces** — for each face a block shares with its next neighbour along each axis, read
   the one-voxel slabs on both sides (local ids, and the embeddings only where both sides
   are foreground) and return the fragment pairs linked across the face.
3. **relabel** — after union-find over those pairs, the size filter and the global
   numbering (:func:`~stitchsafe.instances.merge_fragments`), map each block's local ids
   to final ids and write the block again. With growth (``params.grow > 0``) the block is
   read with a halo of ``grow`` voxels, the neighbours' local ids in the halo are mapped
   with *their* tables, and the seeds grow (:func:`~stitchsafe.instances.grow_labels`)
   before the block's own part is written: exact, because growth moves one voxel a step.

Memory: one block's embeddings (and its faces' slabs, or its halo) per worker thread, plus
tables with one entry per fragment (an object cut by ``k`` blocks counts ``k`` times);
never the whole volume. Without growth the local ids are parked in the output array itself
between passes 1 and 3; with growth they go to a ``scratch`` array of the same layout,
because pass 3 reads neighbours' local ids while other tasks write their final labels.
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
from .instances import (
    LabelParams,
    grow_labels,
    label_block,
    link_mask,
    max_label,
    merge_fragments,
    seed_mask,
)

__all__ = ["LabelStats", "block_boxes", "label_blocks", "merge_and_relabel"]

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
    fn: Callable[[int], T],
    n: int,
    *,
    desc: str,
    num_workers: int | None,
    progress: bool,
    executor: Any = None,
) -> list[T]:
    """Run ``fn(0..n-1)``: dask tasks on the threaded scheduler, or on a dask cluster.

    On a cluster (``executor`` from :func:`stitchsafe.schedulers.open_executor`), ``fn``
    (a closure over this pass's tables) is shipped to each worker once and tasks carry
    only groups of block indices.
    """
    import dask
    from tqdm.auto import tqdm

    from .engine import _cpu_count

    bar = tqdm(total=n, desc=desc, unit="block", disable=not progress, leave=False)
    lock = threading.Lock()
    try:
        if executor is not None and hasattr(executor, "share"):
            from .schedulers import drive

            results: list[Any] = [None] * n
            size = max(1, min(64, n // max(1, 4 * executor.workers)))
            groups = [range(i, min(i + size, n)) for i in range(0, n, size)]

            def collect(group: range, values: list[T]) -> None:
                for i, value in zip(group, values):
                    results[i] = value
                bar.update(len(group))

            drive(executor, _apply, groups, on_result=collect, shared=executor.share(fn))
            return results

        def task(i: int) -> T:
            result = fn(i)
            with lock:
                bar.update(1)
            return result

        tasks = [dask.delayed(task, pure=False)(i) for i in range(n)]
        workers = num_workers or max(2, _cpu_count())
        return list(dask.compute(*tasks, scheduler="threads", num_workers=workers))
    finally:
        bar.close()


def _apply(fn: Callable[[int], T], group: range) -> list[T]:
    """A cluster task: ``fn`` over a group of block indices."""
    return [fn(i) for i in group]


def _plane(box: Box, axis: int, at: int) -> Box:
    """The one-voxel slab of ``box`` at coordinate ``at`` along ``axis``."""
    begin, end = list(box.begin), list(box.end)
    begin[axis], end[axis] = at, at + 1
    return Box(tuple(begin), tuple(end))


def _grown(box: Box, halo: int, shape: Sequence[int]) -> Box:
    """``box`` grown by ``halo`` voxels on every side, clipped to ``shape``."""
    return Box(
        tuple(max(0, b - halo) for b in box.begin),
        tuple(min(s, e + halo) for e, s in zip(box.end, shape)),
    )


def _inner(box: Box, window: Box) -> tuple[slice, ...]:
    """Where ``box`` lies inside ``window`` (both in volume coordinates)."""
    return tuple(slice(b - w, e - w) for b, e, w in zip(box.begin, box.end, window.begin))


def label_blocks(
    embeddings: Any,
    out: Any,
    *,
    params: LabelParams,
    scratch: Any | None = None,
    block_shape: Sequence[int] | None = None,
    max_id: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    executor: Any = None,
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
        Threshold, minimum size, foreground cut, channel roles and seeding.
    scratch
        With growth: an array-like like ``out`` (shape, chunks, dtype) for the block-local
        ids; default for a numpy ``out``: a numpy array. Its content is garbage afterwards.
    block_shape
        Spatial block shape; default: ``out``'s chunks.
    max_id
        A lower id limit than ``out``'s dtype allows (for tests of the overflow check).
    num_workers
        dask threads (default: the CPU count, at least 2), as for ``engine.run_plan``.
    progress
        Show tqdm bars on stderr.
    executor
        A dask cluster (:func:`stitchsafe.schedulers.open_executor`) to run the blocks on;
        its workers must see ``embeddings``, ``out`` and ``scratch`` (zarr arrays on a
        shared file system). Default: threads in this process.

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
    emb_channels = list(params.embedding_channels(channels))
    if params.grow == 0:
        local = out
    elif scratch is not None:
        local = scratch
    elif isinstance(out, np.ndarray):
        local = np.zeros_like(out)
    else:
        raise ValueError("growing labels blockwise needs a scratch array like the output")

    def read(box: Box) -> np.ndarray:
        return np.asarray(embeddings[(slice(None), *box.to_slices())])

    def components(i: int) -> tuple[np.ndarray, np.ndarray]:
        box = boxes[i]
        if params.seeded:
            window = _grown(box, 1, shape)
            data = read(window)
            inner = (slice(None), *_inner(box, window))
            seeds = seed_mask(data, params)[inner[1:]]
            frags = label_block(data[inner], params=params, mask=seeds)
        else:
            frags = label_block(read(box), params=params)
        if frags.count > local_limit:
            raise StitchsafeError(
                f"block {box} holds {frags.count} separate pieces, more than {dtype} ids "
                f"({local_limit}); pass --label-dtype uint64 or use smaller tiles."
            )
        local[box.to_slices()] = frags.labels.astype(dtype, copy=False)
        coords = np.unravel_index(frags.first, box.shape)
        first = np.ravel_multi_index(tuple(c + b for c, b in zip(coords, box.begin)), shape)
        return frags.sizes, first.astype(np.int64)

    run = functools.partial(_run, num_workers=num_workers, progress=progress, executor=executor)
    tables = run(components, len(boxes), desc="labels: components")

    def face_links(i: int) -> FaceLinks:
        own_emb: list[np.ndarray] = []  # the block's embedding channels, read once

        def linked(axis: int, hi_box: Box, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            both = (lo > 0) & (hi > 0)
            if not both.any():
                return both
            if not own_emb:
                # All channels: a chunk holds them all, so selecting costs no extra read.
                own_emb.append(read(boxes[i])[emb_channels])
            lo_emb = np.take(own_emb[0], -1, axis=axis + 1)
            hi_emb = read(hi_box)[emb_channels].squeeze(axis + 1)
            return link_mask(lo_emb, hi_emb, both, threshold=params.threshold)

        return linked

    def grow(labels: np.ndarray, window: Box) -> np.ndarray:
        return grow_labels(labels, read(window), params)

    objects, fragments = merge_and_relabel(
        local,
        out,
        tables=tables,
        boxes=boxes,
        block=block,
        params=params,
        limit=limit,
        run=run,
        face_links=face_links,
        grow=grow,
    )
    return LabelStats(
        objects=objects,
        fragments=fragments,
        blocks=len(boxes),
        seconds=time.perf_counter() - start,
    )


# Which voxel pairs across one face are linked: (axis, the neighbour's first slab, the
# block's last-slab local ids, the neighbour's first-slab local ids) -> boolean mask.
FaceLinks = Callable[[int, Box, np.ndarray, np.ndarray], np.ndarray]


def merge_and_relabel(
    local: Any,
    out: Any,
    *,
    tables: list[tuple[np.ndarray, np.ndarray]],
    boxes: Sequence[Box],
    block: Sequence[int],
    params: LabelParams,
    limit: int,
    run: Callable[..., list[Any]],
    face_links: Callable[[int], FaceLinks],
    grow: Callable[[np.ndarray, Box], np.ndarray],
) -> tuple[int, int]:
    """Passes 2 and 3: links across block faces, merging, numbering, relabelling (growth).

    ``local`` holds the block-local ids, ``tables`` each block's fragment sizes and global
    first voxels. ``face_links(i)`` says which pairs across block ``i``'s faces are linked
    and ``grow(labels, window)`` grows the labels of a window (``params.grow > 0``): from
    embeddings here, from the voxel codes of :mod:`stitchsafe.labels_only` there.
    Returns the object and fragment counts.
    """
    shape = tuple(int(s) for s in out.shape)
    grid = tuple(math.ceil(s / b) for s, b in zip(shape, block))
    dtype = np.dtype(out.dtype)
    counts = np.array([t[0].size for t in tables], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    sizes = np.concatenate([t[0] for t in tables]) if tables else np.zeros(0, np.int64)
    first = np.concatenate([t[1] for t in tables]) if tables else np.zeros(0, np.int64)

    def faces(i: int) -> np.ndarray:
        box, index = boxes[i], np.unravel_index(i, grid)
        own: np.ndarray | None = None
        links: FaceLinks | None = None
        found = [np.zeros((0, 2), np.int64)]
        for axis in range(len(shape) if counts[i] else 0):
            if index[axis] + 1 >= grid[axis]:
                continue
            j = i + math.prod(grid[axis + 1 :])
            if counts[j] == 0:
                continue
            if own is None:
                own = np.asarray(local[box.to_slices()])
                links = face_links(i)
            assert links is not None
            lo = np.take(own, -1, axis=axis)
            hi_box = _plane(boxes[j], axis, boxes[j].begin[axis])
            hi = np.asarray(local[hi_box.to_slices()]).squeeze(axis)
            linked = links(axis, hi_box, lo, hi)
            if not linked.any():
                continue
            pairs = np.unique(np.stack([lo[linked], hi[linked]], axis=1).astype(np.int64), axis=0)
            pairs[:, 0] += offsets[i] - 1
            pairs[:, 1] += offsets[j] - 1
            found.append(pairs)
        return np.concatenate(found)

    found = run(faces, len(boxes), desc="labels: faces")
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    del found
    ids, objects = merge_fragments(sizes, first, pairs, min_size=params.min_size, max_id=limit)
    del sizes, first, pairs

    def lut(j: int) -> np.ndarray:
        table = np.zeros(int(counts[j]) + 1, dtype)
        table[1:] = ids[offsets[j] : offsets[j + 1]]
        return table

    def relabel(i: int) -> None:
        if counts[i] == 0:
            return  # the block holds background only and was written as zeros
        box = boxes[i]
        out[box.to_slices()] = lut(i)[np.asarray(local[box.to_slices()])]

    def relabel_and_grow(i: int) -> None:
        box = boxes[i]
        window = _grown(box, params.grow, shape)
        labels = np.zeros(window.shape, dtype)
        lo_block = [b // s for b, s in zip(window.begin, block)]
        hi_block = [(e - 1) // s for e, s in zip(window.end, block)]
        for index in itertools.product(*(range(f, t + 1) for f, t in zip(lo_block, hi_block))):
            j = int(np.ravel_multi_index(index, grid))
            if counts[j] == 0:
                continue
            part = Box(
                tuple(max(a, b) for a, b in zip(window.begin, boxes[j].begin)),
                tuple(min(a, b) for a, b in zip(window.end, boxes[j].end)),
            )
            labels[_inner(part, window)] = lut(j)[np.asarray(local[part.to_slices()])]
        if not labels.any():
            return  # no seed within reach: the block stays background
        out[box.to_slices()] = grow(labels, window)[_inner(box, window)]

    run(relabel if params.grow == 0 else relabel_and_grow, len(boxes), desc="labels: relabel")
    return objects, int(offsets[-1])
