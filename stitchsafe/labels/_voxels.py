"""What the labelling decides voxel by voxel: distances, foreground, seeds, links, growth.

Every decision looks at a voxel and its face-neighbours only (4-connectivity in 2-D, 6 in
3-D), which is why blocks with a halo decide exactly what the whole array decides
(:mod:`stitchsafe.labels`). Distances are summed channel by channel in float64 with
elementwise operations only, so they are bit-for-bit the same for a voxel pair whichever
block (or whole array) computes them.
"""

from __future__ import annotations

import numpy as np

from ._params import LabelParams

__all__ = [
    "face_slices",
    "foreground_mask",
    "grow_labels",
    "link_mask",
    "seed_mask",
    "squared_distance",
]


def face_slices(axis: int, ndim: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """The two views of an array whose elements are face-neighbours along ``axis``.

    ``array[lo][k]`` and ``array[hi][k]`` are neighbours, ``hi`` the next one along ``axis``.

    >>> face_slices(0, 1)
    ((slice(0, -1, None),), (slice(1, None, None),))
    """
    lo = tuple(slice(0, -1) if a == axis else slice(None) for a in range(ndim))
    hi = tuple(slice(1, None) if a == axis else slice(None) for a in range(ndim))
    return lo, hi


def squared_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance over the leading (channel) axis, in float64.

    Channel by channel with elementwise operations only: no reductions whose summation
    order could depend on the array's shape or memory layout.

    >>> a = np.array([[0.0, 1.0], [0.0, 0.0]]); b = np.array([[3.0, 1.0], [4.0, 0.0]])
    >>> squared_distance(a, b).tolist()
    [25.0, 0.0]
    """
    out = np.zeros(a.shape[1:], np.float64)
    # inf - inf is NaN, and NaN is never closer than a threshold: no link. The labelling
    # counts such values and warns once (stitchsafe.labels.result_warnings).
    with np.errstate(invalid="ignore", over="ignore"):
        for c in range(a.shape[0]):
            d = np.subtract(a[c], b[c], dtype=np.float64)
            d *= d
            out += d
    return out


def foreground_mask(data: np.ndarray, params: LabelParams) -> np.ndarray:
    """Boolean foreground of ``data`` ``(C, *spatial)``: above the cut, or all True.

    >>> p = LabelParams(1.0, foreground_threshold=0.5, channel_roles=("embedding", "foreground"))
    >>> foreground_mask(np.array([[0.0, 0.0], [-1.0, 2.0]]), p).tolist()
    [False, True]
    """
    channel = params.foreground_channel(data.shape[0])
    if channel is None:
        return np.ones(data.shape[1:], bool)
    return np.greater(data[channel], np.float64(params.cut(params.foreground_threshold)))


def seed_mask(data: np.ndarray, params: LabelParams) -> np.ndarray:
    """The voxels of ``data`` ``(C, *spatial)`` that are linked: seeds, or all foreground.

    Exact for voxels whose face-neighbours all lie inside ``data`` (or outside the volume):
    blocks read a one-voxel halo.

    >>> p = LabelParams(1.0, seed_threshold=1.0, channel_roles=("embedding",))
    >>> seed_mask(np.array([[0.0, 0.5, 0.9, 5.0, 5.2]]), p).tolist()
    [True, True, False, False, True]
    """
    fg = foreground_mask(data, params)
    if params.seed_threshold is None:
        return fg
    seeds = fg.copy()
    channel = params.foreground_channel(data.shape[0])
    if channel is not None:
        cut = params.cut(params.seed_foreground_threshold)
        seeds &= np.greater(data[channel], np.float64(cut))
    emb = data[list(params.embedding_channels(data.shape[0]))]
    limit = params.seed_threshold * params.seed_threshold
    for axis in range(fg.ndim):
        lo, hi = face_slices(axis, fg.ndim)
        far = (
            fg[lo]
            & fg[hi]
            & ~(squared_distance(emb[(slice(None), *lo)], emb[(slice(None), *hi)]) < limit)
        )
        seeds[lo] &= ~far
        seeds[hi] &= ~far
    return seeds


def grow_labels(labels: np.ndarray, data: np.ndarray, params: LabelParams) -> np.ndarray:
    """Grow ``labels`` into the unlabelled foreground of ``data`` for ``params.grow`` steps.

    Each step gives every unlabelled foreground voxel with a labelled face-neighbour the
    label of the neighbour with the closest embedding (strictly closer wins, so ties go
    to the first in axis order, along each axis the next voxel before the previous one).
    A step looks one voxel away, so the result is exact ``params.grow`` voxels inside the
    array's cut edges.

    >>> p = LabelParams(1.0, seed_threshold=1.0, grow=2, channel_roles=("embedding",))
    >>> lab = np.array([1, 0, 0, 0, 2], np.uint32)
    >>> grow_labels(lab, np.array([[0.0, 0.1, 3.0, 3.9, 4.0]]), p).tolist()
    [1, 1, 2, 2, 2]
    """
    out = np.array(labels, copy=True)
    if params.grow == 0:
        return out
    fg = foreground_mask(data, params)
    emb = data[list(params.embedding_channels(data.shape[0]))]
    nd = out.ndim
    pairs = []
    for axis in range(nd):
        lo, hi = face_slices(axis, nd)
        pairs.append((lo, hi, squared_distance(emb[(slice(None), *lo)], emb[(slice(None), *hi)])))
    for _ in range(params.grow):
        free = fg & (out == 0)
        if not free.any():
            break
        best = np.full(out.shape, np.inf)
        new = np.zeros_like(out)
        for lo, hi, d in pairs:
            for into, src in ((lo, hi), (hi, lo)):
                take = free[into] & (out[src] > 0) & (d < best[into])
                best[into][take] = d[take]
                new[into][take] = out[src][take]
        if not new.any():
            break
        out = np.where(new > 0, new, out)
    return out


def link_mask(lo: np.ndarray, hi: np.ndarray, both: np.ndarray, *, threshold: float) -> np.ndarray:
    """Which voxel pairs are linked: ``both`` foreground and embedding distance < threshold.

    ``lo`` and ``hi`` are the embedding channels ``(E, *pairs)`` of the two voxels of each
    pair; the same function decides links inside a block and across block faces.

    >>> lo = np.array([[0.0, 0.0, 0.0]]); hi = np.array([[0.5, 2.0, 0.1]])
    >>> link_mask(lo, hi, np.array([True, True, False]), threshold=1.0).tolist()
    [True, False, False]
    """
    return both & (squared_distance(lo, hi) < threshold * threshold)
