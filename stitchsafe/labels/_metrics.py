"""Instance segmentation metrics: average precision at an IoU threshold, adapted Rand error.

Both compare a ground truth ``gt`` with a prediction ``pred`` (integer label images of the
same shape, 0 = background) through their contingency table (voxel counts per pair of
ids), so they cost one pass over the voxels and memory per overlapping pair of objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Matching", "adapted_rand_error", "average_precision", "match"]


def _overlaps(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gt_id, pred_id, voxels)`` for every pair of ids that share voxels.

    >>> g, p, n = _overlaps(np.array([0, 1, 1, 2]), np.array([5, 5, 0, 0]))
    >>> g.tolist(), p.tolist(), n.tolist()
    ([0, 1, 1, 2], [5, 0, 5, 0], [1, 1, 1, 1])
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    g_ids, g_inv = np.unique(gt.ravel(), return_inverse=True)
    p_ids, p_inv = np.unique(pred.ravel(), return_inverse=True)
    key = g_inv.astype(np.int64) * len(p_ids) + p_inv
    pairs, voxels = np.unique(key, return_counts=True)
    return g_ids[pairs // len(p_ids)], p_ids[pairs % len(p_ids)], voxels.astype(np.int64)


@dataclass(frozen=True)
class Matching:
    """Objects matched at IoU above ``threshold`` (unique for thresholds >= 0.5).

    ``ap`` is ``tp / (tp + fp + fn)``, the "average precision" of the DSB 2018 challenge,
    StarDist and cellpose; 1.0 when both images are empty.
    """

    threshold: float
    tp: int
    fp: int
    fn: int
    mean_matched_iou: float

    @property
    def ap(self) -> float:
        total = self.tp + self.fp + self.fn
        return 1.0 if total == 0 else self.tp / total

    @property
    def precision(self) -> float:
        return 1.0 if self.tp + self.fp == 0 else self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        return 1.0 if self.tp + self.fn == 0 else self.tp / (self.tp + self.fn)


def match(gt: np.ndarray, pred: np.ndarray, *, threshold: float = 0.5) -> Matching:
    """Match objects of ``pred`` to objects of ``gt`` whose IoU is above ``threshold``.

    With ``threshold >= 0.5`` an object can overlap at most one other by more than half
    of their union, so the matching is unique without an assignment problem.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> m = match(gt, np.array([[3, 3, 3, 0, 4]]))  # IoU 2/3 and 1/2
    >>> m.tp, m.fp, m.fn, round(m.ap, 3)
    (1, 1, 1, 0.333)
    """
    if not 0.5 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0.5, 1), got {threshold}")
    g, p, n = _overlaps(gt, pred)
    g_size = dict(zip(*np.unique(np.asarray(gt), return_counts=True)))
    p_size = dict(zip(*np.unique(np.asarray(pred), return_counts=True)))
    n_gt = sum(1 for k in g_size if k != 0)
    n_pred = sum(1 for k in p_size if k != 0)
    fg = (g != 0) & (p != 0)
    g, p, n = g[fg], p[fg], n[fg]
    union = np.array([g_size[a] + p_size[b] for a, b in zip(g, p)], np.int64) - n
    iou = n / np.maximum(union, 1)
    matched = iou > threshold
    tp = int(np.count_nonzero(matched))
    return Matching(
        threshold=threshold,
        tp=tp,
        fp=n_pred - tp,
        fn=n_gt - tp,
        mean_matched_iou=float(iou[matched].mean()) if tp else 0.0,
    )


def average_precision(gt: np.ndarray, pred: np.ndarray, *, threshold: float = 0.5) -> float:
    """``tp / (tp + fp + fn)`` at IoU above ``threshold`` (see :func:`match`).

    >>> average_precision(np.array([1, 1, 2, 2]), np.array([7, 7, 9, 9]))
    1.0
    >>> average_precision(np.array([1, 1, 2, 2]), np.array([7, 7, 7, 7]))  # merged
    0.0
    """
    return match(gt, pred, threshold=threshold).ap


def adapted_rand_error(gt: np.ndarray, pred: np.ndarray) -> float:
    """Adapted Rand error (Arganda-Carreras et al. 2015): 1 - F-score of Rand precision/recall.

    Counted over the voxels where ``gt`` is foreground; a background (0) region of
    ``pred`` there counts as one segment, as in ``skimage.metrics.adapted_rand_error``.
    0 is a perfect segmentation, 1 the worst.

    Examples
    --------
    >>> gt = np.array([1, 1, 2, 2, 0])
    >>> adapted_rand_error(gt, np.array([5, 5, 6, 6, 6]))
    0.0
    >>> adapted_rand_error(gt, np.array([5, 5, 5, 5, 0]))  # the two objects merged
    0.5
    """
    g, p, n = _overlaps(gt, pred)
    keep = g != 0
    g, p, n = g[keep], p[keep], n[keep].astype(np.float64)
    same_both = float(n @ n - n.sum())
    a = np.bincount(np.unique(g, return_inverse=True)[1], weights=n)
    b = np.bincount(np.unique(p, return_inverse=True)[1], weights=n)
    same_gt = float(a @ a - a.sum())
    same_pred = float(b @ b - b.sum())
    denominator = same_gt + same_pred
    if denominator == 0:
        return 0.0  # every voxel alone in both: all pairs agree
    return 1.0 - 2.0 * same_both / denominator
