"""The passes after the components: links across block faces, merging, relabelling.

Every block's fragments (block-local ids ``1..count`` in a ``local`` array, with their
sizes and global first voxels) become objects in three steps, in the manner of dask-image's
``ndmeasure.label``: the fragment pairs linked across block faces (:class:`FacePairs`), the
connected components of those pairs with the size filter and the global numbering
(:func:`~stitchsafe.labels.merge_fragments`), and each block's local ids mapped to the
final ids, the seeds grown where ``grow > 0`` (:class:`Relabel`), counting on the way what
the warnings need (:class:`~stitchsafe.labels.ResultStats`). What decides the links
and the growth comes from a :class:`LinkSource`: the embeddings for
:func:`~stitchsafe.labels.label_blocks`, the voxel codes of a labels-only run for
:func:`~stitchsafe.labels.label_from_fragments`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..geometry import Box
from ._blocks import BlockGrid, BlockRunner, face_plane, inner_slices
from ._instances import merge_fragments
from ._params import LabelParams
from ._warnings import ResultStats

__all__ = [
    "FaceLinks",
    "FacePairs",
    "FragmentIndex",
    "LinkSource",
    "Relabel",
    "merge_and_count",
    "merge_and_relabel",
]

# Which voxel pairs across one face are linked: (axis, the neighbour's first slab, the
# block's last-slab local ids, the neighbour's first-slab local ids) -> boolean mask.
FaceLinks = Callable[[int, Box, np.ndarray, np.ndarray], np.ndarray]

# Per block: fragment sizes and the global C-order indices of their first voxels.
Table = tuple[np.ndarray, np.ndarray]

# Per block written with growth: the final ids in it and their voxel counts.
Counts = tuple[np.ndarray, np.ndarray]


class LinkSource(Protocol):
    """What decides links across block faces and growth, read block by block."""

    def face_links(self, i: int) -> FaceLinks:
        """Which pairs across block ``i``'s faces are linked."""
        ...

    def grow(self, labels: np.ndarray, window: Box) -> np.ndarray:
        """``labels`` of ``window`` grown by the labelling's ``grow`` steps."""
        ...


@dataclass(frozen=True)
class FragmentIndex:
    """Where each block's fragments sit among all fragments: block ``i`` holds rows
    ``offsets[i]..offsets[i + 1]`` (``counts[i]`` of them).

    >>> FragmentIndex.of([(np.ones(2), np.zeros(2)), (np.ones(0), np.zeros(0))]).offsets.tolist()
    [0, 2, 2]
    """

    counts: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, tables: Sequence[Table]) -> FragmentIndex:
        """The index of the blocks' ``(sizes, first)`` tables."""
        counts = np.array([t[0].size for t in tables], np.int64)
        return cls(counts, np.concatenate([[0], np.cumsum(counts)]))

    @property
    def total(self) -> int:
        """The number of fragments of all blocks."""
        return int(self.offsets[-1])


@dataclass(frozen=True)
class FacePairs:
    """Pass 2 for block ``i``: the fragment pairs linked across its faces with its next
    neighbour along each axis, as ``(M, 2)`` global fragment indices."""

    local: Any
    grid: BlockGrid
    index: FragmentIndex
    source: LinkSource

    def __call__(self, i: int) -> np.ndarray:
        counts = self.index.counts
        own: np.ndarray | None = None
        links: FaceLinks | None = None
        found = [np.zeros((0, 2), np.int64)]
        for axis in range(len(self.grid.shape) if counts[i] else 0):
            j = self.grid.next_block(i, axis)
            if j is None or counts[j] == 0:
                continue
            if own is None:
                own = np.asarray(self.local[self.grid.boxes[i].to_slices()])
                links = self.source.face_links(i)
            assert links is not None
            pairs = self._linked(axis, j, np.take(own, -1, axis=axis), links)
            if pairs is not None:
                pairs[:, 0] += self.index.offsets[i] - 1
                pairs[:, 1] += self.index.offsets[j] - 1
                found.append(pairs)
        return np.concatenate(found)

    def _linked(self, axis: int, j: int, lo: np.ndarray, links: FaceLinks) -> np.ndarray | None:
        """Local id pairs linked across the face to block ``j``, or None."""
        hi_box = face_plane(self.grid.boxes[j], axis, self.grid.boxes[j].begin[axis])
        hi = np.asarray(self.local[hi_box.to_slices()]).squeeze(axis)
        linked = links(axis, hi_box, lo, hi)
        if not linked.any():
            return None
        return np.unique(np.stack([lo[linked], hi[linked]], axis=1).astype(np.int64), axis=0)


@dataclass(frozen=True)
class Relabel:
    """Pass 3 for block ``i``: its local ids mapped to the final ``ids``, written to ``out``.

    With ``grow > 0`` the block is read with a halo of ``grow`` voxels, the neighbours'
    local ids in the halo mapped with *their* tables, and the seeds grown before the
    block's own part is written: exact, because growth moves one voxel a step. It then
    returns the final ids in the block's own part and their voxel counts (without growth
    the fragments' sizes say as much).
    """

    local: Any
    out: Any
    grid: BlockGrid
    index: FragmentIndex
    ids: np.ndarray
    grow: int
    source: LinkSource

    def __call__(self, i: int) -> Counts | None:
        if self.grow == 0:
            self._relabel(i)
            return None
        return self._relabel_and_grow(i)

    def lut(self, j: int) -> np.ndarray:
        """Block ``j``'s local id -> final id, in the output's dtype."""
        table = np.zeros(int(self.index.counts[j]) + 1, np.dtype(self.out.dtype))
        table[1:] = self.ids[self.index.offsets[j] : self.index.offsets[j + 1]]
        return table

    def _relabel(self, i: int) -> None:
        if self.index.counts[i] == 0:
            return  # the block holds background only and was written as zeros
        box = self.grid.boxes[i]
        self.out[box.to_slices()] = self.lut(i)[np.asarray(self.local[box.to_slices()])]

    def _relabel_and_grow(self, i: int) -> Counts | None:
        box = self.grid.boxes[i]
        window = self.grid.window(i, self.grow)
        labels = np.zeros(window.shape, np.dtype(self.out.dtype))
        for j in self.grid.blocks_in(window):
            if self.index.counts[j] == 0:
                continue
            part = window.intersect(self.grid.boxes[j])
            labels[inner_slices(part, window)] = self.lut(j)[
                np.asarray(self.local[part.to_slices()])
            ]
        if not labels.any():
            return None  # no seed within reach: the block stays background
        grown = self.source.grow(labels, window)[inner_slices(box, window)]
        self.out[box.to_slices()] = grown
        ids, counts = np.unique(grown, return_counts=True)
        return ids[ids > 0], counts[ids > 0]


def merge_and_relabel(
    local: Any,
    out: Any,
    tables: Sequence[Table],
    *,
    grid: BlockGrid,
    params: LabelParams,
    limit: int,
    runner: BlockRunner,
    source: LinkSource,
) -> tuple[int, int]:
    """Passes 2 and 3: links across block faces, merging, numbering, relabelling (growth).

    ``local`` holds the block-local ids, ``tables`` each block's fragment sizes and global
    first voxels; ``limit`` is the largest id ``out`` may hold. Returns the object and
    fragment counts (:func:`merge_and_count` says more).
    """
    fragments, stats = merge_and_count(
        local, out, tables, grid=grid, params=params, limit=limit, runner=runner, source=source
    )
    return stats.objects, fragments


def merge_and_count(
    local: Any,
    out: Any,
    tables: Sequence[Table],
    *,
    grid: BlockGrid,
    params: LabelParams,
    limit: int,
    runner: BlockRunner,
    source: LinkSource,
) -> tuple[int, ResultStats]:
    """:func:`merge_and_relabel`, returning the fragment count and what the labels hold:
    objects, labelled voxels, the largest object (:class:`~stitchsafe.labels.ResultStats`,
    its ``nonfinite`` left 0 for the caller, which read the embeddings)."""
    index = FragmentIndex.of(tables)
    found = runner(FacePairs(local, grid, index, source), len(grid), "labels: faces")
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    del found
    ids, objects = _merge(tables, pairs, min_size=params.min_size, limit=limit)
    del pairs
    relabel = Relabel(local, out, grid, index, ids, params.grow, source)
    counts = runner(relabel, len(grid), "labels: relabel")
    sizes = _object_sizes(tables, ids, objects, counts if params.grow else None)
    roles = params.channel_roles or ()
    stats = ResultStats(
        voxels=int(np.prod(grid.shape, dtype=np.int64)),
        objects=objects,
        labelled=int(sizes.sum()),
        largest=int(sizes.max(initial=0)),
        linked=int(sum(int(t[0].sum()) for t in tables)),
        foreground=params.foreground_channel(len(roles)) is not None,
        seeded=params.seeded,
    )
    return index.total, stats


def _object_sizes(
    tables: Sequence[Table], ids: np.ndarray, objects: int, grown: Sequence[Counts | None] | None
) -> np.ndarray:
    """Voxels per object ``1..objects``: the sums of its fragments' sizes, or (after
    growth) of the blocks' counts.

    >>> _object_sizes([(np.array([2, 1, 5]), None)], np.array([0, 1, 1]), 1, None).tolist()
    [6]
    """
    sizes = np.zeros(objects + 1, np.int64)
    if grown is None:
        if tables:
            np.add.at(sizes, ids, np.concatenate([t[0] for t in tables]).astype(np.int64))
    else:
        for block in grown:
            if block is not None:
                np.add.at(sizes, block[0].astype(np.int64), block[1].astype(np.int64))
    return sizes[1:]


def _merge(
    tables: Sequence[Table], pairs: np.ndarray, *, min_size: int, limit: int
) -> tuple[np.ndarray, int]:
    """:func:`merge_fragments` over the blocks' tables, concatenated."""
    sizes = np.concatenate([t[0] for t in tables]) if tables else np.zeros(0, np.int64)
    first = np.concatenate([t[1] for t in tables]) if tables else np.zeros(0, np.int64)
    return merge_fragments(sizes, first, pairs, min_size=min_size, max_id=limit)
