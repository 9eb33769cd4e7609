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
blockwise growth with a halo of ``grow`` voxels is exact (:mod:`stitchsafe.blockwise`).
Foreground voxels no seed reaches stay background.

Why this and not a clustering in embedding space: a shift-equivariant network gives
same-looking objects at positions congruent modulo its period identical embeddings
(DESIGN.md section 1), so any *global* clustering merges them. Links join only spatial
neighbours, and every link is decided by two voxels alone, so the components of a volume
are exactly the union of the components of its blocks plus the links across block faces
(:mod:`stitchsafe.blockwise`). The size filter and the id order are decided on the merged
objects, so they stay exact too: blockwise ids equal :func:`label_array`'s ids.

The distance is summed channel by channel in float64 with elementwise operations only, so
it is bit-for-bit the same for a voxel pair whichever block (or whole array) computes it.

Channels
--------
``channel_roles`` (from the model metadata) names each output channel ``"embedding"`` or
``"foreground"``; other roles are ignored. The foreground channel holds logits: a voxel is
foreground when ``logit > log(p / (1 - p))`` for ``foreground_threshold = p``. Without
roles every channel is an embedding; without a foreground channel *every voxel is
foreground*, so the background forms its own component(s) like any other region of
similar embeddings. That is the honest answer for embedding-only models, not a
background model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import StitchsafeError

__all__ = [
    "EMBEDDING",
    "FOREGROUND",
    "Fragments",
    "LabelParams",
    "grow_labels",
    "label_array",
    "label_block",
    "label_defaults",
    "link_mask",
    "merge_fragments",
    "seed_mask",
]

EMBEDDING = "embedding"
FOREGROUND = "foreground"
LABEL_DTYPES = ("uint32", "uint64")

# Fallbacks when neither the flags nor the model metadata say otherwise. The threshold is
# delta_d of the discriminative loss with its common margins (delta_v = 0.5, delta_d = 1.5):
# delta_d is the middle of the interval [2 delta_v, 2 delta_d - 2 delta_v] that separates
# same-object from different-object voxel pairs once the loss is zero.
FALLBACK_THRESHOLD = 1.5
FALLBACK_MIN_SIZE = 0
FALLBACK_FOREGROUND_THRESHOLD = 0.5
FALLBACK_SEED_FOREGROUND_THRESHOLD = 0.9


@dataclass(frozen=True)
class LabelParams:
    """Parameters of the labelling.

    Attributes
    ----------
    threshold
        Neighbours are linked when their embedding distance is ``< threshold`` (> 0).
    min_size
        Objects with fewer voxels become background (>= 0; 0 and 1 keep everything).
    foreground_threshold
        Foreground probability cut ``p`` in (0, 1); foreground is ``logit > log(p/(1-p))``.
    channel_roles
        One role per channel (``"embedding"``, ``"foreground"``, anything else is
        ignored), or ``None``: all channels are embeddings and every voxel is foreground.
    seed_threshold
        ``None``: every foreground voxel is linked. Otherwise only seed voxels are (their
        embedding differs from every foreground face-neighbour's by ``< seed_threshold``)
        and the labels then grow into the rest of the foreground (module docstring).
    seed_foreground_threshold
        Seeds also need a foreground probability above this (in (0, 1)); ignored without
        a foreground channel.
    grow
        Growth steps from the seeds (>= 0; only with ``seed_threshold``).

    Examples
    --------
    >>> p = LabelParams(1.0, channel_roles=("embedding", "embedding", "foreground"))
    >>> p.embedding_channels(3), p.foreground_channel(3), p.foreground_logit
    ((0, 1), 2, 0.0)
    >>> LabelParams(0.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --threshold must be a positive number ..., got 0.0.
    """

    threshold: float
    min_size: int = FALLBACK_MIN_SIZE
    foreground_threshold: float = FALLBACK_FOREGROUND_THRESHOLD
    channel_roles: tuple[str, ...] | None = None
    seed_threshold: float | None = None
    seed_foreground_threshold: float = FALLBACK_SEED_FOREGROUND_THRESHOLD
    grow: int = 0

    def __post_init__(self) -> None:
        t, m, p = self.threshold, self.min_size, self.foreground_threshold
        st, sp, g = self.seed_threshold, self.seed_foreground_threshold, self.grow
        if st is not None and (
            isinstance(st, bool) or not isinstance(st, int | float) or not (0 < st < math.inf)
        ):
            raise StitchsafeError(
                "--seed-threshold must be a positive number (the largest embedding distance "
                f"from a seed voxel to its foreground neighbours), got {st!r}."
            )
        if isinstance(sp, bool) or not isinstance(sp, int | float) or not (0 < sp < 1):
            raise StitchsafeError(
                "--seed-foreground-threshold must be a probability strictly between 0 and 1, "
                f"got {sp!r}."
            )
        if isinstance(g, bool) or not isinstance(g, int | np.integer) or g < 0:
            raise StitchsafeError(
                f"--grow must be a non-negative whole number of steps, got {g!r}."
            )
        if g and st is None:
            raise StitchsafeError(
                "--grow needs --seed-threshold: without seeds every foreground voxel is "
                "labelled already and there is nothing to grow into."
            )
        if st is not None:
            object.__setattr__(self, "seed_threshold", float(st))
        object.__setattr__(self, "seed_foreground_threshold", float(sp))
        object.__setattr__(self, "grow", int(g))
        if isinstance(t, bool) or not isinstance(t, int | float) or not (0 < t < math.inf):
            raise StitchsafeError(
                "--threshold must be a positive number (the embedding distance below which "
                f"neighbouring voxels join one object), got {t!r}."
            )
        if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 0:
            raise StitchsafeError(
                "--min-size must be a non-negative whole number of voxels (0 keeps every "
                f"object), got {m!r}."
            )
        if isinstance(p, bool) or not isinstance(p, int | float) or not (0 < p < 1):
            raise StitchsafeError(
                f"--foreground-threshold must be a probability strictly between 0 and 1, got {p!r}."
            )
        if self.channel_roles is not None:
            roles = tuple(str(r) for r in self.channel_roles)
            if roles.count(FOREGROUND) > 1:
                raise StitchsafeError(
                    f"the channel roles {list(roles)} name more than one foreground channel; "
                    "stitchsafe needs at most one."
                )
            object.__setattr__(self, "channel_roles", roles)
        object.__setattr__(self, "threshold", float(t))
        object.__setattr__(self, "min_size", int(m))
        object.__setattr__(self, "foreground_threshold", float(p))

    @property
    def foreground_logit(self) -> float:
        """The logit cut ``log(p / (1 - p))``."""
        p = self.foreground_threshold
        return math.log(p / (1.0 - p))

    @property
    def seeded(self) -> bool:
        """Whether only seed voxels are linked (``seed_threshold`` is set)."""
        return self.seed_threshold is not None

    @property
    def halo(self) -> int:
        """Voxels beyond a block that its seeds (1) and its growth (``grow``) look at."""
        return max(1 if self.seeded else 0, self.grow)

    def check_channels(self, channels: int) -> None:
        """Raise StitchsafeError unless the roles fit ``channels`` channels."""
        if self.channel_roles is not None and len(self.channel_roles) != channels:
            raise StitchsafeError(
                f"the channel roles {list(self.channel_roles)} name {len(self.channel_roles)} "
                f"channel(s) but the embeddings have {channels}; the model metadata's "
                "'channel_roles' must list one role per output channel."
            )

    def embedding_channels(self, channels: int) -> tuple[int, ...]:
        """Indices of the embedding channels among ``channels``."""
        self.check_channels(channels)
        if self.channel_roles is None:
            return tuple(range(channels))
        return tuple(i for i, r in enumerate(self.channel_roles) if r == EMBEDDING)

    def foreground_channel(self, channels: int) -> int | None:
        """Index of the foreground channel, or None (every voxel is foreground)."""
        self.check_channels(channels)
        if self.channel_roles is None or FOREGROUND not in self.channel_roles:
            return None
        return self.channel_roles.index(FOREGROUND)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with the labels)."""
        return {
            "threshold": self.threshold,
            "min_size": self.min_size,
            "foreground_threshold": self.foreground_threshold,
            "channel_roles": None if self.channel_roles is None else list(self.channel_roles),
            "seed_threshold": self.seed_threshold,
            "seed_foreground_threshold": self.seed_foreground_threshold,
            "grow": self.grow,
        }


def label_defaults(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Default labelling parameters declared by model metadata, else the fallbacks.

    In order: ``metadata["labels"]`` (``threshold``, ``min_size``,
    ``foreground_threshold``, and for the seeded variant ``seed_threshold``,
    ``seed_foreground_threshold``, ``grow``), then the discriminative-loss margin
    ``metadata["loss"]["delta_d"]`` as threshold, then :data:`FALLBACK_THRESHOLD` (1.5),
    ``min_size`` 0 and ``foreground_threshold`` 0.5. ``source`` says where the threshold
    came from.

    >>> label_defaults({"loss": {"delta_v": 0.5, "delta_d": 2.0}})["threshold"]
    2.0
    >>> label_defaults(None)
    {'threshold': 1.5, 'min_size': 0, 'foreground_threshold': 0.5, 'source': 'fallback'}
    """
    meta = metadata or {}
    labels: dict[str, Any] = meta["labels"] if isinstance(meta.get("labels"), dict) else {}
    loss: dict[str, Any] = meta["loss"] if isinstance(meta.get("loss"), dict) else {}
    out: dict[str, Any] = {
        "threshold": FALLBACK_THRESHOLD,
        "min_size": FALLBACK_MIN_SIZE,
        "foreground_threshold": FALLBACK_FOREGROUND_THRESHOLD,
        "source": "fallback",
    }
    if "threshold" in labels:
        out.update(threshold=float(labels["threshold"]), source="metadata labels.threshold")
    elif "delta_d" in loss:
        out.update(threshold=float(loss["delta_d"]), source="metadata loss.delta_d")
    if "min_size" in labels:
        out["min_size"] = int(labels["min_size"])
    if "foreground_threshold" in labels:
        out["foreground_threshold"] = float(labels["foreground_threshold"])
    if labels.get("seed_threshold") is not None:
        out["seed_threshold"] = float(labels["seed_threshold"])
        out["grow"] = int(labels.get("grow", 0))
        if "seed_foreground_threshold" in labels:
            out["seed_foreground_threshold"] = float(labels["seed_foreground_threshold"])
    return out


# ------------------------------------------------------------------------------ kernels


def _squared_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance over the leading (channel) axis, in float64.

    Channel by channel with elementwise operations only: no reductions whose summation
    order could depend on the array's shape or memory layout.

    >>> a = np.array([[0.0, 1.0], [0.0, 0.0]]); b = np.array([[3.0, 1.0], [4.0, 0.0]])
    >>> _squared_distance(a, b).tolist()
    [25.0, 0.0]
    """
    out = np.zeros(a.shape[1:], np.float64)
    for c in range(a.shape[0]):
        d = np.subtract(a[c], b[c], dtype=np.float64)
        d *= d
        out += d
    return out


def foreground_mask(data: np.ndarray, params: LabelParams) -> np.ndarray:
    """Boolean foreground of ``data`` ``(C, *spatial)``: logit above the cut, or all True.

    >>> p = LabelParams(1.0, foreground_threshold=0.5, channel_roles=("embedding", "foreground"))
    >>> foreground_mask(np.array([[0.0, 0.0], [-1.0, 2.0]]), p).tolist()
    [False, True]
    """
    channel = params.foreground_channel(data.shape[0])
    if channel is None:
        return np.ones(data.shape[1:], bool)
    return np.greater(data[channel], np.float64(params.foreground_logit))


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
        p = params.seed_foreground_threshold
        seeds &= np.greater(data[channel], np.float64(math.log(p / (1.0 - p))))
    emb = data[list(params.embedding_channels(data.shape[0]))]
    limit = params.seed_threshold * params.seed_threshold
    for axis in range(fg.ndim):
        lo, hi = _lo_hi(axis, fg.ndim)
        far = (
            fg[lo]
            & fg[hi]
            & ~(_squared_distance(emb[(slice(None), *lo)], emb[(slice(None), *hi)]) < limit)
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
        lo, hi = _lo_hi(axis, nd)
        pairs.append((lo, hi, _squared_distance(emb[(slice(None), *lo)], emb[(slice(None), *hi)])))
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
    return both & (_squared_distance(lo, hi) < threshold * threshold)


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
        return int(self.sizes.size)


def _lo_hi(axis: int, ndim: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    lo = tuple(slice(0, -1) if a == axis else slice(None) for a in range(ndim))
    hi = tuple(slice(1, None) if a == axis else slice(None) for a in range(ndim))
    return lo, hi


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
    from scipy import ndimage

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
        lo, hi = _lo_hi(axis, nd)
        between = tuple(slice(1, None, 2) if a == axis else slice(None, None, 2) for a in range(nd))
        lo_emb, hi_emb = emb[(slice(None), *lo)], emb[(slice(None), *hi)]
        fine[between] = link_mask(lo_emb, hi_emb, fg[lo] & fg[hi], threshold=params.threshold)
    out = np.empty(fine.shape, np.int32 if fine.size < 2**31 else np.int64)
    count = int(ndimage.label(fine, structure=ndimage.generate_binary_structure(nd, 1), output=out))
    del fine
    flat, first = _first_voxel_order(np.ascontiguousarray(out[voxels]).reshape(-1), count)
    del out
    sizes = np.bincount(flat, minlength=count + 1)[1:].astype(np.int64)
    return Fragments(flat.astype(label_dtype).reshape(shape), sizes, first)


def _first_voxel_order(flat: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Renumber labels ``1..count`` by first occurrence; return them and those positions.

    ``scipy.ndimage.label`` numbers in raster order, and a component's first fine-grid
    element is a voxel (a link follows its lower voxel), so this is normally a check
    only; it renumbers should scipy ever number differently.

    >>> flat, first = _first_voxel_order(np.array([0, 2, 2, 0, 1, 3]), 3)
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
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(sizes.size)
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
    size = np.zeros(n, np.int64)
    np.add.at(size, root, np.asarray(sizes, np.int64))
    keep = np.flatnonzero((size > 0) & (size >= min_size))
    del size
    start = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(start, root, np.asarray(first, np.int64))
    order = keep[np.argsort(start[keep], kind="stable")]
    del start, keep
    objects = int(order.size)
    if objects > max_id:
        raise StitchsafeError(
            f"the labelling found {objects} objects but the label type holds ids up to "
            f"{max_id}; pass --label-dtype uint64 (or raise --min-size / lower --threshold "
            "if that many objects is a sign of over-segmentation)."
        )
    ids = np.zeros(n, np.int64)
    ids[order] = np.arange(1, objects + 1)
    return ids[root], objects


def max_label(dtype: Any, max_id: int | None = None) -> int:
    """The largest id an unsigned integer ``dtype`` (or a smaller ``max_id``) allows.

    >>> max_label("uint32"), max_label("uint64", 5)
    (4294967295, 5)
    """
    dt = np.dtype(dtype)
    if dt.kind != "u":
        raise StitchsafeError(
            f"labels must be an unsigned integer type ({', '.join(LABEL_DTYPES)}), got {dt}."
        )
    limit = int(np.iinfo(dt).max)
    return limit if max_id is None else min(limit, int(max_id))


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
