"""The demo's ``labels.png``: a matched object has one colour in both panels; misses and
false positives are marked in colours of their own; a scale bar of a round length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stitchsafe.labels import match
from stitchsafe.reports import (
    matched_colours,
    matched_objects,
    save_matched_labels,
    scale_bar_length,
)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth 1 (found as 7), 2 (missed), 3 (found as 8); prediction 9 matches none."""
    truth = np.zeros((60, 80), np.uint32)
    truth[5:20, 5:25], truth[30:50, 10:30], truth[10:30, 50:70] = 1, 2, 3
    predicted = np.zeros_like(truth)
    predicted[6:20, 5:25], predicted[11:30, 50:70] = 7, 8
    predicted[40:55, 45:60] = 9
    image = np.random.default_rng(0).random(truth.shape) + (truth > 0)
    return image, truth, predicted


def test_matching_agrees_with_the_metrics() -> None:
    _, truth, predicted = _scene()
    matches = matched_objects(truth, predicted)
    assert matches == {7: 1, 8: 3}
    m = match(truth, predicted)
    assert (m.tp, m.fp, m.fn) == (len(matches), 1, 1)


def test_a_matched_object_has_one_colour_in_both_panels() -> None:
    _, truth, predicted = _scene()
    t, p = matched_colours(truth, predicted, matched_objects(truth, predicted))
    for gt, pred in ((1, 7), (3, 8)):
        colour = t[truth == gt][0]
        assert (t[truth == gt] == colour).all() and (p[predicted == pred] == colour).all()
        assert colour[3] > 0
    assert not (t[truth == 1][0] == t[truth == 3][0]).all()  # two objects, two colours
    # Misses and false positives are not filled: they are outlined in their own colours.
    assert (t[truth == 2][:, 3] == 0).all() and (p[predicted == 9][:, 3] == 0).all()


def test_labels_png_marks_misses_and_false_positives(tmp_path: Path) -> None:
    image, truth, predicted = _scene()
    path = tmp_path / "labels.png"
    save_matched_labels(
        path,
        image,
        truth,
        predicted,
        matches=matched_objects(truth, predicted),
        pixel=(0.5, "micrometer"),
        title="t",
    )
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)

    def near(colour: str) -> int:
        target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(rgb - target).sum(-1) < 60).sum())

    assert near("#ff2020") > 50 and near("#ff40ff") > 50  # miss and false positive drawn
    assert scale_bar_length(80 * 0.5) == 5.0  # the bar: 5 µm of a 40 µm wide slice
