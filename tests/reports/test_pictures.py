"""The PNG pictures: files are written, decodable, and show what they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stitchsafe.reports import relative_log_deviation, save_deviation_maps, save_label_overlay


def test_deviation_maps_png(tmp_path: Path) -> None:
    whole = np.random.default_rng(0).normal(size=(2, 20, 30))
    exact = relative_log_deviation(whole + 1e-8, whole)
    naive = relative_log_deviation(whole + 0.1, whole)
    assert exact.max() < -7 and naive.min() > -2
    path = tmp_path / "dev.png"
    save_deviation_maps(
        path, [("exact", exact), ("naive", naive)], tile_edges=[([10], [15]), None], title="t"
    )
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100


def test_label_overlay_png(tmp_path: Path) -> None:
    image = np.random.default_rng(1).random((40, 60))
    labels = np.zeros((40, 60), np.uint32)
    labels[5:15, 5:20] = 7
    labels[20:35, 30:50] = 9
    path = tmp_path / "labels.png"
    save_label_overlay(path, image, labels, title="labels")
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=float)
    assert rgb.std(axis=-1).max() > 10  # coloured overlay present, not only grey
