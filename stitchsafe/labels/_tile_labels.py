"""Instance labels from tiles held in memory: what a labels-only run keeps of each tile.

The labelling of :mod:`stitchsafe.labels` reads embeddings in only three ways: which
voxels are linked (foreground, or seeds), whether two face-neighbours are linked, and —
when objects grow into the foreground — which labelled face-neighbour has the closest
embedding. A labels-only run (``predict --no-embeddings``) computes each tile with a small
margin of extra output on the period lattice (so it is still exact), and from that keeps
per voxel only:

- the block-local fragment ids (:func:`~stitchsafe.labels.label_block`), and
- one ``uint32`` *code*: bit 0 foreground, bit ``1 + a`` "linked to the next voxel along
  axis ``a``", and from bit 4, four bits per rank, the face-neighbours in the order in which
  growth would prefer them (closest embedding first; ties in the order that
  :func:`~stitchsafe.labels.grow_labels` breaks them; ``15`` = never).

The fragments are then merged across block faces and grown exactly as
:func:`stitchsafe.labels.label_blocks` does from the embeddings, so the labels are
identical to labelling the embeddings of a full run — without ever writing them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..geometry import Box, Plan, Tile
from ._blocks import inner_slices
from ._instances import label_block
from ._params import LabelParams
from ._voxels import face_slices, foreground_mask, link_mask, seed_mask, squared_distance

__all__ = [
    "FOREGROUND_BIT",
    "NEVER",
    "RANK_BITS",
    "RANK_SHIFT",
    "ExtendedTiles",
    "grow_by_codes",
    "labelling_margin",
    "lattice_margin",
    "tile_codes",
    "tile_fragments",
]

FOREGROUND_BIT = 1
RANK_SHIFT = 4
RANK_BITS = 4
NEVER = (1 << RANK_BITS) - 1


def labelling_margin(params: LabelParams) -> int:
    """Voxels of output needed around a block to label it and link it to its neighbours.

    One for the links to the next voxel and the growth order (both read the face-neighbour's
    embedding); two with seeds, because whether the neighbour is a seed depends on *its*
    neighbours.

    >>> labelling_margin(LabelParams(1.0)), labelling_margin(LabelParams(1.0, seed_threshold=0.5))
    (1, 2)
    """
    return 2 if params.seeded else 1


def lattice_margin(plan: Plan, voxels: int) -> tuple[int, ...]:
    """Per axis, the smallest margin of at least ``voxels`` that keeps tiles on the lattice.

    A multiple of the period (so the extra output is exact) and of the valid-input step (so
    the larger tile is still a valid input).

    >>> from stitchsafe.geometry import make_plan, unet_geometry
    >>> lattice_margin(make_plan((40, 64, 64), unet_geometry([(1, 2, 2), (2, 2, 2)]),
    ...                          tile_shape=(8, 32, 32)), 2)
    (2, 4, 4)
    """
    g = plan.geometry
    out = []
    for p, s in zip(g.period, g.step):
        unit = math.lcm(int(p), int(s))
        out.append(unit * -(-voxels // unit))
    return tuple(out)


class ExtendedTiles(Sequence[Tile]):
    """The tiles of ``plan`` (or a subset), each computing ``margin`` more output per side.

    ``read`` grows by the margin; ``write`` stays the tile's block (its index and done flag
    are the plan's); ``crop`` is where the block's window — the block grown by the margin,
    clipped to the volume — lies in the tile's raw output, whose origin is
    ``write.begin - margin``.
    """

    def __init__(self, plan: Plan, margin: Sequence[int], tiles: Sequence[Tile] | None = None):
        self.plan = plan
        self.margin = tuple(int(m) for m in margin)
        self.tiles: Sequence[Tile] = plan if tiles is None else tiles  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.tiles)

    def _base(self, i: int) -> Tile:
        if isinstance(self.tiles, Plan):
            return self.tiles.tile(i if i >= 0 else i + len(self))
        return self.tiles[i]

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self.extend(self._base(j)) for j in range(*i.indices(len(self)))]
        return self.extend(self._base(i))

    def __iter__(self) -> Iterator[Tile]:
        for t in self.tiles:
            yield self.extend(t)

    @property
    def read_shape(self) -> tuple[int, ...]:
        return tuple(r + 2 * m for r, m in zip(self.plan.read_shape, self.margin))

    def window(self, tile: Tile) -> Box:
        """The block ``tile.write`` grown by the margin and clipped to the volume."""
        return Box(
            tuple(max(0, b - m) for b, m in zip(tile.write.begin, self.margin)),
            tuple(
                min(v, e + m)
                for e, m, v in zip(tile.write.end, self.margin, self.plan.volume_shape)
            ),
        )

    def extend(self, tile: Tile) -> Tile:
        m = self.margin
        window = self.window(tile)
        origin = tuple(b - k for b, k in zip(tile.write.begin, m))
        return Tile(
            tile.index,
            tile.read.grow(m, m),
            tile.write,
            window.shift(tuple(-o for o in origin)),
        )


def tile_fragments(
    data: np.ndarray, window: Box, block: Box, params: LabelParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block-local fragments and voxel codes of ``block`` from the embeddings of ``window``.

    Parameters
    ----------
    data
        ``(C, *window.shape)`` model output over ``window`` (the block grown by
        :func:`labelling_margin` voxels, clipped to the volume).
    window, block
        Boxes in volume coordinates; ``block`` lies inside ``window``.
    params
        The labelling parameters.

    Returns
    -------
    fragments, codes, sizes
        Local ids as :func:`~stitchsafe.labels.label_block` numbers them, the ``uint32``
        codes (:func:`tile_codes`), and the fragments' sizes.
    """
    inner = inner_slices(block, window)
    mask = seed_mask(data, params) if params.seeded else foreground_mask(data, params)
    frags = label_block(data[(slice(None), *inner)], params=params, mask=mask[inner])
    return frags.labels, tile_codes(data, mask, inner, params), frags.sizes


def tile_codes(
    data: np.ndarray, mask: np.ndarray, inner: tuple[slice, ...], params: LabelParams
) -> np.ndarray:
    """The ``uint32`` voxel codes of the block at ``inner`` inside ``data``'s window.

    ``mask`` is the window's linked voxels (seeds, or foreground). A voxel's link bit along
    an axis is set when it and the next voxel are both in ``mask`` and their embeddings are
    closer than the threshold — :func:`~stitchsafe.labels.link_mask`, as label_block and
    the blockwise faces decide it. The growth ranks sort the face-neighbours by the squared
    distance of :func:`~stitchsafe.labels.grow_labels` (next voxel before previous one,
    axis by axis, for ties); neighbours outside the volume, or at a distance that is not
    below infinity, are never taken.

    >>> p = LabelParams(1.0, seed_threshold=1.0, grow=2, channel_roles=("embedding",))
    >>> d = np.array([[0.0, 0.1, 3.0, 3.9, 4.0]])
    >>> c = tile_codes(d, seed_mask(d, p), (slice(0, 5),), p)
    >>> [int(v) & 3 for v in c]  # foreground, linked to the next voxel
    [1, 1, 1, 3, 1]
    >>> [((int(v) >> 4) & 15, (int(v) >> 8) & 15) for v in c]  # preferred neighbours
    [(0, 15), (1, 0), (0, 1), (0, 1), (1, 15)]
    """
    nd = mask.ndim
    emb = data[list(params.embedding_channels(data.shape[0]))]
    fg = foreground_mask(data, params)
    block_shape = tuple(s.stop - s.start for s in inner)
    codes = np.zeros(block_shape, np.uint32)
    codes |= fg[inner].astype(np.uint32) * np.uint32(FOREGROUND_BIT)
    grow = params.grow > 0
    dist = np.full((2 * nd, *block_shape), np.inf) if grow else None
    for axis in range(nd):
        lo, hi = face_slices(axis, nd)
        lo_emb, hi_emb = emb[(slice(None), *lo)], emb[(slice(None), *hi)]
        linked = np.zeros(mask.shape, bool)
        linked[lo] = link_mask(lo_emb, hi_emb, mask[lo] & mask[hi], threshold=params.threshold)
        codes |= linked[inner].astype(np.uint32) << np.uint32(1 + axis)
        if dist is not None:
            d = squared_distance(lo_emb, hi_emb)
            # Candidate 2a: the next voxel (the voxel sits at "lo" of the pair);
            # candidate 2a + 1: the previous voxel (it sits at "hi").
            nxt = np.full(mask.shape, np.inf)
            nxt[lo] = d
            prv = np.full(mask.shape, np.inf)
            prv[hi] = d
            dist[2 * axis] = nxt[inner]
            dist[2 * axis + 1] = prv[inner]
    if dist is not None:
        order = np.argsort(dist, axis=0, kind="stable")
        taken = np.take_along_axis(dist, order, axis=0) < np.inf
        ranks = np.where(taken, order, NEVER).astype(np.uint32)
        for r in range(2 * nd):
            codes |= ranks[r] << np.uint32(RANK_SHIFT + RANK_BITS * r)
    return codes


def _neighbour(labels: np.ndarray, k: int) -> np.ndarray:
    """``labels`` at each voxel's candidate ``k`` (0 outside the array)."""
    axis, previous = divmod(k, 2)
    out = np.zeros_like(labels)
    lo, hi = face_slices(axis, labels.ndim)
    if previous:
        out[hi] = labels[lo]
    else:
        out[lo] = labels[hi]
    return out


def grow_by_codes(labels: np.ndarray, codes: np.ndarray, steps: int) -> np.ndarray:
    """:func:`~stitchsafe.labels.grow_labels` from voxel codes instead of embeddings.

    Each step gives every unlabelled foreground voxel the label of its first labelled
    face-neighbour in rank order: the closest embedding, ties broken as grow_labels breaks
    them — the same choice. Exact ``steps`` voxels inside the array's cut edges.

    >>> p = LabelParams(1.0, seed_threshold=1.0, grow=2, channel_roles=("embedding",))
    >>> d = np.array([[0.0, 0.1, 3.0, 3.9, 4.0]])
    >>> c = tile_codes(d, seed_mask(d, p), (slice(0, 5),), p)
    >>> grow_by_codes(np.array([1, 0, 0, 0, 2], np.uint32), c, 2).tolist()
    [1, 1, 2, 2, 2]
    """
    out = np.array(labels, copy=True)
    nd = out.ndim
    fg = (codes & np.uint32(FOREGROUND_BIT)) > 0
    ranks = [
        np.minimum((codes >> np.uint32(RANK_SHIFT + RANK_BITS * r)) & np.uint32(NEVER), 2 * nd)
        for r in range(2 * nd)
    ]
    for _ in range(steps):
        free = fg & (out == 0)
        if not free.any():
            break
        # Candidate labels, plus a last row of zeros that "never" points to.
        candidates = np.stack([*(_neighbour(out, k) for k in range(2 * nd)), np.zeros_like(out)])
        new = np.zeros_like(out)
        open_ = free
        for rank in ranks:
            got = np.take_along_axis(candidates, rank[None].astype(np.intp), axis=0)[0]
            take = open_ & (got > 0)
            new[take] = got[take]
            open_ = open_ & ~take
        if not new.any():
            break
        out = np.where(new > 0, new, out)
    return out
