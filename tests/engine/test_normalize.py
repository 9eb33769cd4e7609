"""Tests for stitchsafe.engine: global statistics on real volumes on disk."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import Volume, open_volume, read_padded
from stitchsafe.engine import Normalization, compute_normalization, sample_boxes


def _volume(path: Path, data: np.ndarray, spatial_dims: int) -> Volume:
    chunks = tuple(max(1, s // 4) for s in data.shape)
    zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=chunks)[...] = data
    return open_volume(path, spatial_dims=spatial_dims)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Volume, np.ndarray]:
    data = np.random.default_rng(0).gamma(2.0, 100.0, size=(2, 8, 30, 40)).astype(np.uint16)
    return _volume(tmp_path_factory.mktemp("n") / "small.zarr", data, 3), data


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Volume, np.ndarray]:
    rng = np.random.default_rng(1)
    data = (rng.normal(1000.0, 50.0, size=(40, 160, 160)) + np.linspace(0, 200, 160)).astype(
        np.float32
    )
    return _volume(tmp_path_factory.mktemp("n") / "large.zarr", data, 3), data


def test_small_volume_uses_every_voxel(small: tuple[Volume, np.ndarray]) -> None:
    v, data = small
    values = data.astype(np.float64).ravel()
    p = compute_normalization(v, method="percentile", percentiles=(2.0, 98.0))
    lo, hi = np.percentile(values, [2.0, 98.0])
    assert (p.offset, p.scale, p.samples) == (lo, 1.0 / (hi - lo), data.size)
    z = compute_normalization(v, method="zscore")
    assert z.offset == pytest.approx(values.mean()) and z.scale == pytest.approx(1 / values.std())
    assert compute_normalization(v, method="none") == Normalization("none", 0.0, 1.0)


def test_large_volume_is_sampled_deterministically(large: tuple[Volume, np.ndarray]) -> None:
    v, data = large
    runs = [compute_normalization(v, method=m, max_samples=50_000) for m in ["zscore"] * 2]
    reopened = open_volume(v.path, spatial_dims=3)
    runs.append(compute_normalization(reopened, method="zscore", max_samples=50_000))
    assert runs[0] == runs[1] == runs[2]
    assert 0 < runs[0].samples <= 50_000
    # The stratified sample sees the whole intensity gradient: close to full-volume stats.
    assert runs[0].offset == pytest.approx(float(data.mean()), rel=0.01)
    assert 1 / runs[0].scale == pytest.approx(float(data.std()), rel=0.05)
    other = compute_normalization(v, method="zscore", max_samples=50_000, seed=1)
    assert other != runs[0]
    p = compute_normalization(v, method="percentile", max_samples=50_000)
    lo, hi = np.percentile(data, [1.0, 99.8])
    assert p.offset == pytest.approx(lo, rel=0.01)
    assert 1 / p.scale == pytest.approx(hi - lo, rel=0.1)


def test_flat_volume_keeps_scale_one(tmp_path: Path) -> None:
    v = _volume(tmp_path / "flat.zarr", np.full((5, 6), 7, np.uint8), 2)
    for method in ("percentile", "zscore"):
        n = compute_normalization(v, method=method)
        assert (n.offset, n.scale) == (7.0, 1.0)
        assert n(np.array([7, 8])).tolist() == [0.0, 1.0]


def test_non_finite_values_are_ignored(tmp_path: Path) -> None:
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    data[0, 0], data[1, 1] = np.nan, np.inf
    n = compute_normalization(_volume(tmp_path / "nan.zarr", data, 2), method="zscore")
    finite = data[np.isfinite(data)]
    assert n.offset == pytest.approx(finite.mean()) and n.samples == finite.size
    empty = _volume(tmp_path / "allnan.zarr", np.full((3, 3), np.nan, np.float32), 2)
    with pytest.raises(StitchsafeError, match="no finite values"):
        compute_normalization(empty, method="zscore")


def test_tiff_volume(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 4000, size=(6, 50, 60), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "v.tif", data, tile=(16, 16), compression="zlib")
    v = open_volume(tmp_path / "v.tif", spatial_dims=3)
    n = compute_normalization(v, method="zscore", max_samples=5_000)
    assert n.samples <= 5_000
    assert n.offset == pytest.approx(data.mean(), rel=0.05)


def test_bad_options(small: tuple[Volume, np.ndarray]) -> None:
    v, _ = small
    with pytest.raises(StitchsafeError, match="unknown normalisation method 'minmax'"):
        compute_normalization(v, method="minmax")
    with pytest.raises(StitchsafeError, match="0 <= low < high <= 100"):
        compute_normalization(v, method="percentile", percentiles=(99.0, 1.0))
    with pytest.raises(StitchsafeError, match="max_samples"):
        compute_normalization(v, method="zscore", max_samples=0)


def test_normalization_call_and_dict() -> None:
    n = Normalization("zscore", offset=2.0, scale=0.25, samples=10)
    y = n(np.array([[2, 6]], dtype=np.int32))
    assert y.dtype == np.float32 and y.tolist() == [[0.0, 1.0]]
    assert Normalization.from_dict(n.to_dict()) == n
    assert n.to_dict() == {
        "method": "zscore",
        "offset": 2.0,
        "scale": 0.25,
        "percentiles": None,
        "samples": 10,
    }
    assert Normalization("none", 0.0, 1.0)(np.array([3], np.uint8)).dtype == np.float32


def test_tiles_see_one_global_mapping(small: tuple[Volume, np.ndarray]) -> None:
    """Normalising tile by tile with the global stats equals normalising the whole volume."""
    v, data = small
    n = compute_normalization(v, method="percentile")
    whole = np.pad(n(data), [(0, 0), (2, 2), (3, 3), (3, 3)], mode="reflect")
    for begin in [(-2, -3, -3), (3, 10, 20), (4, 25, 35)]:
        box = Box.from_shape((6, 8, 8), begin)
        tile = read_padded(v, box, mode="reflect", transform=n)
        window = tuple(
            slice(b + p, b + p + s) for b, p, s in zip(begin, (2, 3, 3), box.shape, strict=True)
        )
        np.testing.assert_array_equal(tile, whole[(slice(None), *window)])


@given(
    shape=st.lists(st.integers(1, 300), min_size=1, max_size=3).map(tuple),
    channels=st.integers(1, 4),
    max_samples=st.integers(1, 50_000),
    seed=st.integers(0, 3),
)
@settings(max_examples=200, deadline=None)
def test_sample_boxes_properties(
    shape: tuple[int, ...], channels: int, max_samples: int, seed: int
) -> None:
    boxes = sample_boxes(shape, channels=channels, max_samples=max_samples, seed=seed)
    whole = Box.from_shape(shape)
    assert boxes and all(whole.contains(b) and not b.empty for b in boxes)
    total = sum(b.size for b in boxes) * channels
    assert total <= max(max_samples, channels)
    if math.prod(shape) * channels <= max_samples:
        assert boxes == [whole]
    # Boxes never overlap, so no voxel is counted twice.
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a.intersect(b).empty
    assert boxes == sample_boxes(shape, channels=channels, max_samples=max_samples, seed=seed)
