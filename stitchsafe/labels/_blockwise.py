"""Blockwise instance labels, identical to :func:`stitchsafe.labels.label_array`.

Three passes of tasks on a pool of threads, or on a dask cluster (one task per block; a
block is one output chunk, so no two tasks ever write the same chunk):

1. **components** — read a block's embeddings (with a one-voxel halo when seeds are used:
   whether a voxel is a seed depends on its neighbours), find its connected components
   (:func:`~stitchsafe.labels.label_block`), write the block-local ids, return each
   fragment's size and global first voxel, and how many of the block's embedding values
   are NaN or infinite (for the warnings: :class:`~stitchsafe.labels.ResultStats`).
2. **faces** — for each face a block shares with its next neighbour along each axis, read
   the one-voxel slabs on both sides (local ids, and the embeddings only where both sides
   are foreground) and return the fragment pairs linked across the face.
3. **relabel** — after union-find over those pairs, the size filter and the global
   numbering (:func:`~stitchsafe.labels.merge_fragments`), map each block's local ids
   to final ids and write the block again. With growth (``params.grow > 0``) the block is
   read with a halo of ``grow`` voxels, the neighbours' local ids in the halo are mapped
   with *their* tables, and the seeds grow (:func:`~stitchsafe.labels.grow_labels`)
   before the block's own part is written: exact, because growth moves one voxel a step.

Passes 2 and 3 are :func:`~stitchsafe.labels.merge_and_relabel`, shared with labels-only
runs; this module holds pass 1 and what passes 2 and 3 read from the embeddings
(:class:`EmbeddingBlocks`).

Memory: one block's embeddings (and its faces' slabs, or its halo) per worker thread, plus
tables with one entry per fragment (an object cut by ``k`` blocks counts ``k`` times);
never the whole volume. Without growth the local ids are parked in the output array itself
between passes 1 and 3; with growth they go to a ``scratch`` array of the same layout,
because pass 3 reads neighbours' local ids while other tasks write their final labels.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import StitchsafeError
from ..geometry import Box
from ..io import storage_shape
from ._blocks import BlockGrid, BlockRunner, block_runner, inner_slices
from ._instances import Fragments, label_block
from ._merge import FaceLinks, merge_and_count
from ._params import LabelParams, max_label
from ._voxels import grow_labels, link_mask, seed_mask
from ._warnings import ResultStats

__all__ = ["EmbeddingBlocks", "LabelStats", "label_blocks", "nonfinite_values"]


@dataclass(frozen=True)
class LabelStats:
    """What a blockwise labelling did; ``content``: what its labels hold (``None``: not
    counted, e.g. labels an earlier run completed)."""

    objects: int
    fragments: int
    blocks: int
    seconds: float
    content: ResultStats | None = None

    def done_record(self, seconds: float | None = None) -> dict[str, Any]:
        """What the complete label image's ``stitchsafe`` attributes add: ``complete``,
        the objects, the time (``seconds``: this labelling's own by default) and, when
        counted, what the labels hold (``content``, for ``info``'s warnings)."""
        took = self.seconds if seconds is None else seconds
        done = {"complete": True, "objects": self.objects, "seconds": round(took, 3)}
        return done if self.content is None else {**done, "content": self.content.to_dict()}


@dataclass(frozen=True)
class EmbeddingBlocks:
    """An embeddings array ``(C, *spatial)`` read block by block: the components of a
    block, the links across its faces, the growth of a window's labels."""

    embeddings: Any
    params: LabelParams
    grid: BlockGrid

    def read(self, box: Box) -> np.ndarray:
        """All channels of the embeddings inside ``box``."""
        return np.asarray(self.embeddings[(slice(None), *box.to_slices())])

    def fragments(self, i: int) -> tuple[Fragments, int]:
        """The connected components of block ``i`` (seeds decided with a one-voxel halo),
        and the count of its embedding values that are NaN or infinite."""
        box = self.grid.boxes[i]
        if not self.params.seeded:
            data = self.read(box)
            return label_block(data, params=self.params), nonfinite_values(data)
        window = self.grid.window(i, 1)
        data = self.read(window)
        inner = (slice(None), *inner_slices(box, window))
        seeds = seed_mask(data, self.params)[inner[1:]]
        block = data[inner]
        return label_block(block, params=self.params, mask=seeds), nonfinite_values(block)

    def face_links(self, i: int) -> FaceLinks:
        """Which pairs across block ``i``'s faces are linked, from the embeddings."""
        channels = list(self.params.embedding_channels(int(self.embeddings.shape[0])))
        own_emb: list[np.ndarray] = []  # the block's embedding channels, read once

        def linked(axis: int, hi_box: Box, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            both = (lo > 0) & (hi > 0)
            if not both.any():
                return both
            if not own_emb:
                # All channels: a chunk holds them all, so selecting costs no extra read.
                own_emb.append(self.read(self.grid.boxes[i])[channels])
            lo_emb = np.take(own_emb[0], -1, axis=axis + 1)
            hi_emb = self.read(hi_box)[channels].squeeze(axis + 1)
            return link_mask(lo_emb, hi_emb, both, threshold=self.params.threshold)

        return linked

    def grow(self, labels: np.ndarray, window: Box) -> np.ndarray:
        """``labels`` of ``window`` grown into the foreground of its embeddings."""
        return grow_labels(labels, self.read(window), self.params)


def label_blocks(
    embeddings: Any,
    out: Any,
    *,
    params: LabelParams,
    scratch: Any | None = None,
    block_shape: Sequence[int] | None = None,
    max_id: int | None = None,
    runner: BlockRunner | None = None,
    **run: Any,
) -> LabelStats:
    """Label ``embeddings`` block by block into ``out``; equal to ``label_array``.

    Parameters
    ----------
    embeddings
        ``(C, *spatial)`` array-like read by slicing (a zarr array, or numpy).
    out
        ``(*spatial)`` unsigned-integer array-like written by slicing. A zarr array's
        shards (chunks, when unsharded) must equal ``block_shape`` so that no two tasks
        share a stored object.
    params
        Threshold, minimum size, foreground cut, channel roles and seeding.
    scratch
        With growth: an array-like like ``out`` (shape, chunks, dtype) for the block-local
        ids; default for a numpy ``out``: a numpy array. Its content is garbage afterwards.
    block_shape
        Spatial block shape; default: ``out``'s shards (or chunks).
    max_id
        A lower id limit than ``out``'s dtype allows (for tests of the overflow check).
    runner, **run
        Where the blocks run: a :class:`~stitchsafe.labels.BlockRunner` (default:
        threads here), its fields ``num_workers``, ``progress`` and ``executor`` (a dask
        cluster whose workers see the arrays) replaced by the keywords of the same names.

    Returns
    -------
    LabelStats
    """
    start = time.perf_counter()
    runner = block_runner(runner, run, "label_blocks")
    grid = _block_grid(embeddings, out, params, block_shape)
    dtype = np.dtype(out.dtype)
    local_limit, limit = max_label(dtype), max_label(dtype, max_id)
    local = _local_ids(out, scratch, params)
    source = EmbeddingBlocks(embeddings, params, grid)
    components = functools.partial(_write_components, source, local, dtype, local_limit)
    found = runner(components, len(grid), "labels: components")
    tables = [(sizes, first) for sizes, first, _ in found]
    fragments, content = merge_and_count(
        local, out, tables, grid=grid, params=params, limit=limit, runner=runner, source=source
    )
    return LabelStats(
        objects=content.objects,
        fragments=fragments,
        blocks=len(grid),
        seconds=time.perf_counter() - start,
        content=replace(content, nonfinite=sum(n for *_, n in found)),
    )


def nonfinite_values(data: np.ndarray) -> int:
    """How many values of ``data`` are NaN or infinite.

    >>> nonfinite_values(np.array([1.0, np.nan, -np.inf])), nonfinite_values(np.arange(3))
    (2, 0)
    """
    if data.dtype.kind not in "fc":
        return 0
    return int(data.size - np.count_nonzero(np.isfinite(data)))


def _block_grid(
    embeddings: Any, out: Any, params: LabelParams, block_shape: Sequence[int] | None
) -> BlockGrid:
    """The blocks of ``out`` (its shards or chunks, or ``block_shape``), once shapes agree."""
    shape = tuple(int(s) for s in embeddings.shape[1:])
    if tuple(out.shape) != shape:
        raise ValueError(f"output shape {tuple(out.shape)} differs from the volume's {shape}")
    params.check_channels(int(embeddings.shape[0]))
    chunks = storage_shape(out)
    block = tuple(int(b) for b in (block_shape or chunks or shape))
    if chunks is not None and tuple(chunks) != block:
        raise ValueError(f"block shape {block} differs from the output chunks {tuple(chunks)}")
    return BlockGrid(shape, block)


def _local_ids(out: Any, scratch: Any | None, params: LabelParams) -> Any:
    """Where the block-local ids wait for pass 3: ``out`` itself unless the seeds grow."""
    if params.grow == 0:
        return out
    if scratch is not None:
        return scratch
    if isinstance(out, np.ndarray):
        return np.zeros_like(out)
    raise ValueError("growing labels blockwise needs a scratch array like the output")


def _write_components(
    source: EmbeddingBlocks, local: Any, dtype: np.dtype, limit: int, i: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pass 1 for block ``i``: write its local ids; return its fragments' sizes and
    global first voxels, and its count of NaN or infinite embedding values."""
    box = source.grid.boxes[i]
    frags, nonfinite = source.fragments(i)
    if frags.count > limit:
        raise StitchsafeError(
            f"block {box} holds {frags.count} separate pieces, more than {dtype} ids "
            f"({limit}); pass --label-dtype uint64 or use smaller tiles."
        )
    local[box.to_slices()] = frags.labels.astype(dtype, copy=False)
    return frags.sizes, source.grid.global_index(i, frags.first), nonfinite
