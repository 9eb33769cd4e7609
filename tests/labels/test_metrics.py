"""Segmentation metrics on cases whose answer is known by hand, and against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest

from stitchsafe.labels import adapted_rand_error, average_precision, match

GT = np.array(
    [
        [1, 1, 1, 0, 2, 2],
        [1, 1, 1, 0, 2, 2],
        [0, 0, 0, 0, 0, 0],
        [3, 3, 0, 0, 0, 4],
    ]
)


def test_identical_up_to_relabelling_is_perfect() -> None:
    pred = np.where(GT > 0, 10 - GT, 0)
    m = match(GT, pred)
    assert (m.tp, m.fp, m.fn, m.ap, m.mean_matched_iou) == (4, 0, 0, 1.0, 1.0)
    assert adapted_rand_error(GT, pred) == 0.0


@pytest.mark.parametrize(
    "change, tp, fp, fn",
    [
        ("merge-1-2", 2, 1, 2),  # one prediction covers objects 1 and 2: neither matched
        ("split-1", 3, 2, 1),  # object 1 split 3 + 3: IoU 0.5 is not a match
        ("miss-4", 3, 0, 1),
        ("extra", 4, 1, 0),
    ],
    ids=["merge", "split", "miss", "extra"],
)
def test_matching_counts(change: str, tp: int, fp: int, fn: int) -> None:
    pred = GT.copy()
    if change == "merge-1-2":
        pred[:2, :] = np.where(pred[:2, :] > 0, 7, 0)
        pred[:2, 3] = 7
    elif change == "split-1":
        pred[0, :3] = 8
    elif change == "miss-4":
        pred[pred == 4] = 0
    else:
        pred[2, 2] = 9
    m = match(GT, pred, threshold=0.5)
    assert (m.tp, m.fp, m.fn) == (tp, fp, fn)
    assert average_precision(GT, pred) == tp / (tp + fp + fn)


def test_empty_images() -> None:
    empty = np.zeros((3, 3), int)
    assert average_precision(empty, empty) == 1.0
    assert average_precision(empty, GT[:3, :3]) == 0.0
    assert adapted_rand_error(empty, GT[:3, :3]) == 0.0  # no ground-truth voxel to judge


def test_threshold_must_make_matches_unique() -> None:
    with pytest.raises(ValueError, match=r"\[0.5, 1\)"):
        match(GT, GT, threshold=0.3)


def test_adapted_rand_error_equals_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        gt = rng.integers(0, 7, (20, 24))
        pred = rng.integers(0, 5, (20, 24))
        expected = metrics.adapted_rand_error(gt, pred)[0]
        assert adapted_rand_error(gt, pred) == pytest.approx(expected, rel=1e-12)
    merged = np.where(GT > 0, 1, 0)
    assert adapted_rand_error(GT, merged) == pytest.approx(
        metrics.adapted_rand_error(GT, merged)[0]
    )
