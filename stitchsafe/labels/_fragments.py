"""The labelling passes of a labels-only run: block-local fragments merged across block
faces and relabelled (and grown), reading links and growth order from the voxel codes
(:func:`label_from_fragments`; the run itself: :func:`stitchsafe.labels.run_labels_only`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry import Box
from ..io import storage_shape
from ._blocks import BlockGrid, BlockRunner, block_runner, face_plane
from ._blockwise import LabelStats
from ._instances import first_voxel_order
from ._merge import FaceLinks, merge_and_count
from ._params import LabelParams, max_label
from ._tile_labels import grow_by_codes

__all__ = ["CodeBlocks", "label_from_fragments"]


@dataclass(frozen=True)
class CodeBlocks:
    """A labels-only run's voxel codes read block by block: the links across a block's
    faces and the growth of a window's labels (:mod:`stitchsafe.labels`)."""

    codes: Any
    grid: BlockGrid
    grow_steps: int

    def face_links(self, i: int) -> FaceLinks:
        """Which pairs across block ``i``'s faces are linked: its link bits."""
        box = self.grid.boxes[i]

        def linked(axis: int, hi_box: Box, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            slab = face_plane(box, axis, box.end[axis] - 1)
            bits = (np.asarray(self.codes[slab.to_slices()]).squeeze(axis) >> (1 + axis)) & 1
            return (bits > 0) & (lo > 0) & (hi > 0)

        return linked

    def grow(self, labels: np.ndarray, window: Box) -> np.ndarray:
        """``labels`` of ``window`` grown in the growth order of its codes."""
        return grow_by_codes(labels, np.asarray(self.codes[window.to_slices()]), self.grow_steps)


def label_from_fragments(
    fragments: Any,
    codes: Any,
    out: Any,
    *,
    params: LabelParams,
    runner: BlockRunner | None = None,
    **run: Any,
) -> LabelStats:
    """Merge block-local ``fragments`` across faces and relabel (and grow) into ``out``.

    The passes of :func:`stitchsafe.labels.label_blocks` after its components pass,
    reading the links and growth order from ``codes`` instead of embeddings. All three
    arrays share the block grid (``out``'s shards, or chunks). ``runner`` and the keywords
    ``num_workers`` and ``progress`` are those of :class:`~stitchsafe.labels.BlockRunner`.
    """
    start = time.perf_counter()
    runner = block_runner(runner, run, "label_from_fragments")
    grid = BlockGrid(tuple(out.shape), storage_shape(out) or tuple(out.shape))
    table = functools.partial(_fragment_table, fragments, grid)
    tables = runner(table, len(grid), "labels: fragments")
    count, content = merge_and_count(
        fragments,
        out,
        tables,
        grid=grid,
        params=params,
        limit=max_label(np.dtype(out.dtype)),
        runner=runner,
        source=CodeBlocks(codes, grid, params.grow),
    )
    return LabelStats(
        objects=content.objects,
        fragments=count,
        blocks=len(grid),
        seconds=time.perf_counter() - start,
        content=content,
    )


def _fragment_table(fragments: Any, grid: BlockGrid, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Block ``i``'s fragment sizes and global first voxels, from its local ids."""
    box = grid.boxes[i]
    flat = np.asarray(fragments[box.to_slices()]).reshape(-1).astype(np.int64)
    count = int(flat.max()) if flat.size else 0
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # label_block numbers fragments by first voxel, so this only finds those voxels.
    flat, first_local = first_voxel_order(flat, count)
    sizes = np.bincount(flat, minlength=count + 1)[1:].astype(np.int64)
    return sizes, grid.global_index(i, first_local)
