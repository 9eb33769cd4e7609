"""Instance labels from embeddings: a spatially local, exactly block-decomposable labelling.

The algorithm
-------------
Two face-adjacent voxels (4-connectivity in 2-D, 6 in 3-D) are *linked* when both are
foreground and the Euclidean distance of their embeddings is below ``threshold``. The
instances are the connected components of the links. Objects with fewer than ``min_size``
voxels become background (0), and the rest get consecutive ids ``1..N`` in the C order of
their first voxel.

Seeded variant
--------------
A trained network changes its embedding over a few voxels at an object's border, so one
chain of close neighbours across a blurred border merges two touching objects. With
``seed_threshold`` set, only *seed* voxels are linked: foreground voxels whose foreground
probability exceeds ``seed_foreground_threshold`` and whose embedding differs from every
foreground face-neighbour's by less than ``seed_threshold`` (confident interiors, away from
borders). ``min_size`` applies to the linked seeds, which are numbered as above; then the
seeds grow for ``grow`` steps: in each step every unlabelled foreground voxel next to a
labelled one takes the label of the labelled face-neighbour with the closest embedding
(the first in axis order on ties), all at once. Each step looks one voxel away, so
blockwise growth with a halo of ``grow`` voxels is exact (:mod:`stitchsafe.labels`).
Foreground voxels no seed reaches stay background.

Why this and not a clustering in embedding space: a shift-equivariant network gives
same-looking objects at positions congruent modulo its period identical embeddings
(DESIGN.md section 1), so any *global* clustering merges them. Links join only spatial
neighbours, and every link is decided by two voxels alone, so the components of a volume
are exactly the union of the components of its blocks plus the links across block faces
(:mod:`stitchsafe.labels`). The size filter and the id order are decided on the merged
objects, so they stay exact too: blockwise ids equal :func:`label_array`'s ids.

The distance is summed channel by channel in float64 with elementwise operations only, so
it is bit-for-bit the same for a voxel pair whichever block (or whole array) computes it.
The per-voxel decisions live in :mod:`stitchsafe.labels._voxels`, the parameters and the
channel roles in :mod:`stitchsafe.labels._params`; this module finds the components of a
block and merges and numbers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import StitchsafeError
from ._params import LabelParams, max_label
from ._voxels import face_slices, grow_labels, link_mask, seed_mask

__all__ = ["Fragments", "first_voxel_order", "label_array", "label_block", "merge_fragments"]


@dataclass(frozen=True)
class Fragments:
    """Connected components of one block (or of the whole array).

    Attributes
    ----------
    labels
        ``0`` background, ``1..count`` components numbered in the C order of their first
        voxel (``uint32``, or ``uint64`` for blocks of 2**32 voxels or more).
    sizes
        Voxels per component, ``int64`` of length ``count``.
    first
        Flat C-order index (inside the block) of each component's first voxel.
    """

    labels: np.ndarray
    sizes: np.ndarray
    first: np.ndarray

    @property
    def count(self) -> int:
        """The number of components."""
        return int(self.sizes.size)


def label_block(
    data: np.ndarray, *, params: LabelParams, mask: np.ndarray | None = None
) -> Fragments:
    """Connected components of the links inside ``data`` ``(C, *spatial)``.

    ``mask`` selects the voxels that are linked (default :func:`seed_mask` of ``data``;
    blocks pass the seeds computed with their halo).

    Voxels and links are laid out on a grid twice as fine (voxel ``i`` at ``2 i``, the link
    between ``i`` and ``i + 1`` along an axis at ``2 i + 1``), where the components are
    those of ``scipy.ndimage.label`` with face connectivity: exact, fast, and ``2**d``
    bytes of grid plus ``4 * 2**d`` of ndimage labels per voxel.

    Examples
    --------
    >>> emb = np.array([[[0.0, 0.1, 5.0, 5.0]]])  # one channel, shape (1, 4)
    >>> f = label_block(emb, params=LabelParams(1.0))
    >>> f.labels.tolist(), f.sizes.tolist(), f.first.tolist()
    ([[1, 1, 2, 2]], [2, 2], [0, 2])
    """
    channels = data.shape[0]
    shape = data.shape[1:]
    nd = len(shape)
    emb = data[list(params.embedding_channels(channels))]
    fg = seed_mask(data, params) if mask is None else mask
    label_dtype = np.uint32 if fg.size < 2**32 else np.uint64
    if not fg.any():
        empty = np.zeros(0, np.int64)
        return Fragments(np.zeros(shape, label_dtype), empty, empty)
    fine = np.zeros(tuple(2 * s - 1 for s in shape), bool)
    voxels = (slice(None, None, 2),) * nd
    fine[voxels] = fg
    for axis in range(nd):
        if shape[axis] < 2:
            continue
        lo, hi = face_slices(axis, nd)
        between = tuple(slice(1, None, 2) if a == axis else slice(None, None, 2) for a in range(nd))
        lo_emb, hi_emb = emb[(slice(None), *lo)], emb[(slice(None), *hi)]
        fine[between] = link_mask(lo_emb, hi_emb, fg[lo] & fg[hi], threshold=params.threshold)
    out = np.empty(fine.shape, np.int32 if fine.size < 2**31 else np.int64)
    count = int(ndimage.label(fine, structure=ndimage.generate_binary_structure(nd, 1), output=out))
    del fine
    flat, first = first_voxel_order(np.ascontiguousarray(out[voxels]).reshape(-1), count)
    del out
    sizes = np.bincount(flat, minlength=count + 1)[1:].astype(np.int64)
    return Fragments(flat.astype(label_dtype).reshape(shape), sizes, first)


def first_voxel_order(flat: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Renumber labels ``1..count`` by first occurrence; return them and those positions.

    ``scipy.ndimage.label`` numbers in raster order, and a component's first fine-grid
    element is a voxel (a link follows its lower voxel), so this is normally a check
    only; it renumbers should scipy ever number differently.

    >>> flat, first = first_voxel_order(np.array([0, 2, 2, 0, 1, 3]), 3)
    >>> flat.tolist(), first.tolist()
    ([0, 1, 1, 0, 2, 3], [1, 4, 5])
    """
    running = np.maximum.accumulate(flat)
    if flat[0] > 1 or np.any(flat[1:] > running[:-1] + 1):
        _, first_index = np.unique(flat, return_index=True)
        order = np.argsort(first_index[1:] if flat.min() == 0 else first_index, kind="stable")
        lut = np.zeros(count + 1, flat.dtype)
        lut[order + 1] = np.arange(1, count + 1, dtype=flat.dtype)
        flat = lut[flat]
        running = np.maximum.accumulate(flat)
    return flat, np.flatnonzero(np.diff(running, prepend=0)).astype(np.int64)


def merge_fragments(
    sizes: np.ndarray,
    first: np.ndarray,
    pairs: np.ndarray,
    *,
    min_size: int,
    max_id: int,
) -> tuple[np.ndarray, int]:
    """Merge fragments joined by ``pairs``, drop small objects, number the rest 1..N.

    Parameters
    ----------
    sizes, first
        Per fragment: voxel count and global C-order index of its first voxel.
    pairs
        ``(M, 2)`` fragment indices to merge (union-find over these edges).
    min_size
        Merged objects with fewer voxels get id 0.
    max_id
        The largest id the output can hold; more objects is a StitchsafeError.

    Returns
    -------
    (ids, N)
        ``ids[f]`` is fragment ``f``'s final id (0 for dropped), ``N`` the object count.
        Objects are numbered by the C order of their first voxel.

    Examples
    --------
    >>> ids, n = merge_fragments(np.array([2, 1, 5]), np.array([0, 7, 3]),
    ...                          np.array([[1, 2]]), min_size=3, max_id=10)
    >>> ids.tolist(), n
    ([0, 1, 1], 1)
    """
    root = _roots(int(sizes.size), pairs)
    order = _kept_in_order(root, sizes, first, min_size)
    objects = int(order.size)
    if objects > max_id:
        raise StitchsafeError(
            f"the labelling found {objects} objects but the label type holds ids up to "
            f"{max_id}; pass --label-dtype uint64 (or raise --min-size / lower --threshold "
            "if that many objects is a sign of over-segmentation)."
        )
    ids = np.zeros(root.size, np.int64)
    ids[order] = np.arange(1, objects + 1)
    return ids[root], objects


def _roots(n: int, pairs: np.ndarray) -> np.ndarray:
    """Per fragment, the smallest fragment index of its merged object.

    >>> _roots(4, np.array([[3, 1]])).tolist()
    [0, 1, 2, 1]
    """
    root = np.arange(n, dtype=np.int64)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if pairs.size:
        # Union-find over the fragments that touch a face only; the rest stay singletons.
        nodes, inverse = np.unique(pairs, return_inverse=True)
        inverse = inverse.reshape(-1, 2)
        m = int(nodes.size)
        graph = coo_matrix(
            (np.ones(len(inverse), np.int8), (inverse[:, 0], inverse[:, 1])), shape=(m, m)
        )
        count, comp = connected_components(graph, directed=False)
        representative = np.full(count, n, np.int64)
        np.minimum.at(representative, comp, nodes)
        root[nodes] = representative[comp]
    return root


def _kept_in_order(
    root: np.ndarray, sizes: np.ndarray, first: np.ndarray, min_size: int
) -> np.ndarray:
    """The roots of the objects of ``min_size`` voxels or more, in C order of first voxel.

    >>> _kept_in_order(np.array([0, 1, 1]), np.array([2, 1, 5]), np.array([0, 7, 3]), 3).tolist()
    [1]
    """
    n = int(root.size)
    size = np.zeros(n, np.int64)
    np.add.at(size, root, np.asarray(sizes, np.int64))
    keep = np.flatnonzero((size > 0) & (size >= min_size))
    del size
    start = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(start, root, np.asarray(first, np.int64))
    return keep[np.argsort(start[keep], kind="stable")]


def label_array(
    embeddings: np.ndarray,
    *,
    params: LabelParams,
    dtype: Any = "uint32",
    max_id: int | None = None,
) -> np.ndarray:
    """Label the whole array at once: the reference the blockwise labels must equal.

    Parameters
    ----------
    embeddings
        ``(C, *spatial)`` embeddings (and possibly a foreground channel).
    params
        Threshold, minimum size, foreground cut and channel roles.
    dtype
        Unsigned integer type of the labels.
    max_id
        A lower id limit than the dtype's (for tests of the overflow check).

    Returns
    -------
    numpy.ndarray
        ``(*spatial)`` labels: 0 background, objects 1..N in C order of first voxel.

    Examples
    --------
    >>> emb = np.zeros((1, 3, 4)); emb[0, :, 2:] = 9.0; emb[0, 2, 0] = 4.0
    >>> label_array(emb, params=LabelParams(1.0, min_size=2)).tolist()
    [[1, 1, 2, 2], [1, 1, 2, 2], [0, 1, 2, 2]]
    """
    data = np.asarray(embeddings)
    if data.ndim < 2:
        raise StitchsafeError(
            f"embeddings must be (C, *spatial) with at least one spatial axis, got {data.shape}."
        )
    frags = label_block(data, params=params)
    ids, _ = merge_fragments(
        frags.sizes,
        frags.first,
        np.zeros((0, 2), np.int64),
        min_size=params.min_size,
        max_id=max_label(dtype, max_id),
    )
    lut = np.zeros(frags.count + 1, np.dtype(dtype))
    lut[1:] = ids
    return grow_labels(lut[frags.labels], data, params)
