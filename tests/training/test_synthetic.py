"""Synthetic data: cells with instance ground truth, and the paper's same-looking layouts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from stitchsafe.errors import StitchsafeError
from stitchsafe.training import grid_spacing, same_looking_objects, synthetic_cells


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different instances that share a face."""
    pairs = set()
    for a in range(labels.ndim):
        lo = labels.take(range(labels.shape[a] - 1), axis=a)
        hi = labels.take(range(1, labels.shape[a]), axis=a)
        both = (lo > 0) & (hi > 0) & (lo != hi)
        pairs |= {tuple(sorted(p)) for p in zip(lo[both].tolist(), hi[both].tolist())}
    return pairs


@pytest.mark.parametrize("shape", [(128, 128), (24, 64, 64)], ids=["2d", "3d"])
def test_cells_are_deterministic_varied_touching_and_noisy(shape: tuple[int, ...]) -> None:
    img, lab = synthetic_cells(shape, seed=5)
    again = synthetic_cells(shape, seed=5)
    other = synthetic_cells(shape, seed=6)
    assert np.array_equal(img, again[0]) and np.array_equal(lab, again[1])
    assert not np.array_equal(lab, other[1])
    assert img.shape == lab.shape == shape and img.dtype == np.uint16 and lab.dtype == np.uint32
    n = int(lab.max())
    assert n >= 10 and np.array_equal(np.unique(lab), np.arange(n + 1))  # ids without gaps
    sizes = np.bincount(lab.ravel())[1:]
    assert sizes.std() / sizes.mean() > 0.3  # varied sizes
    assert len(touching_pairs(lab)) >= 3  # some cells touch
    means = ndimage.mean(img, lab, range(1, n + 1))
    assert np.std(means) / np.mean(means) > 0.1  # varied brightness
    inside, outside = img[lab > 0].astype(float), img[lab == 0].astype(float)
    assert inside.mean() > 2 * outside.mean()
    assert outside.std() > 3  # noisy, uneven background
    # Each instance is one connected piece (a star-convex shape split only by neighbours).
    for i in range(1, n + 1):
        assert ndimage.label(lab == i)[1] == 1


def test_spacing_flattens_cells_along_coarse_axes() -> None:
    _, lab = synthetic_cells((32, 64, 64), spacing=(2.0, 1.0, 1.0), seed=0)
    boxes = ndimage.find_objects(lab)
    z = np.mean([b[0].stop - b[0].start for b in boxes])
    y = np.mean([b[1].stop - b[1].start for b in boxes])
    assert z < 0.75 * y


def test_cells_refuse_bad_arguments() -> None:
    with pytest.raises(StitchsafeError, match="radius"):
        synthetic_cells((32, 32), radius=(5.0, 2.0))
    with pytest.raises(StitchsafeError, match="shape"):
        synthetic_cells((32,))


@pytest.mark.parametrize("period", [(4, 4), (2, 4, 4)], ids=["2d", "3d"])
def test_same_looking_layouts(period: tuple[int, ...]) -> None:
    shape = tuple(8 * p + 6 for p in period)
    radius = 1.5 if len(period) == 3 else 3.0
    n = 3 if len(period) == 3 else 2
    for minus, congruent in ((0, True), (1, False)):
        spacing = grid_spacing(period, n, minus=minus)
        img, lab = same_looking_objects(shape, spacing=spacing, radius=radius)
        ids = range(1, int(lab.max()) + 1)
        assert len(ids) >= 4
        centres = np.array(ndimage.center_of_mass(lab > 0, lab, ids))
        steps = np.diff(np.unique(centres[:, -1]))
        assert np.allclose(steps, spacing[-1])
        # All objects are the same stamped template: identical pixels.
        first = img[ndimage.find_objects(lab)[0]]
        assert all(np.array_equal(img[b], first) for b in ndimage.find_objects(lab))
        residues = {tuple(np.round(c).astype(int) % np.array(period)) for c in centres}
        assert (len(residues) == 1) == congruent


def test_same_looking_objects_must_not_touch() -> None:
    with pytest.raises(StitchsafeError, match="twice the radius"):
        same_looking_objects((32, 32), spacing=4, radius=2.0)
    with pytest.raises(StitchsafeError, match="at least 1"):
        grid_spacing((4, 4), 0)
