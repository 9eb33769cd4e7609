"""Non-finite voxels (NaN, infinity) and float64 values beyond float32 are refused, not run.

Before: NaN/Inf gave 27 % NaN output with exit 0, and float64 values beyond the float32
range an all-NaN output. Now the whole-volume statistics' sample refuses them before any
tile runs (``compute_normalization(..., refuse_non_finite=True)``), and every float tile
read (``read_padded``) refuses them too, naming the box, for values outside the sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import assert_bad_input, run_cli

from stitchsafe.engine import compute_normalization, sample_boxes
from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import Volume, open_volume, read_padded


def _image(dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(7).uniform(0, 1000, size=(48, 48)).astype(dtype)


def _zarr(path: Path, data: np.ndarray) -> Path:
    zarr.create_array(str(path), data=data, chunks=(16, 16))
    return path


BAD = {
    "nan": (np.nan, "float32", ("NaN or infinite", "y 5, x 7", "nan_to_num")),
    "inf": (-np.inf, "float32", ("NaN or infinite", "y 5, x 7")),
    "huge-float64": (1e300, "float64", ("1e+300", "float32 range", "y 5, x 7", "Rescale")),
}


@pytest.mark.parametrize("normalize", ["percentile", "none"])
@pytest.mark.parametrize("case", list(BAD))
def test_predict_refuses_bad_values(tmp_path: Path, case: str, normalize: str) -> None:
    value, dtype, words = BAD[case]
    data = _image(dtype)
    data[5, 7] = value
    path = _zarr(tmp_path / "in.zarr", data)
    out = tmp_path / "out.zarr"
    proc = run_cli(
        "predict", "--input", str(path), "--output", str(out), "--normalize", normalize,
        "--no-progress",
    )  # fmt: skip
    assert_bad_input(proc, "in.zarr", *words)
    assert not out.exists()  # refused by the whole-volume statistics, before any tile ran


@pytest.mark.parametrize("method", ["percentile", "zscore", "none"])
def test_statistics_refuse_non_finite_before_any_tile(tmp_path: Path, method: str) -> None:
    data = _image()
    data[30, 2] = np.nan
    v = open_volume(_zarr(tmp_path / "a.zarr", data), spatial_dims=2)
    with pytest.raises(StitchsafeError, match=r"NaN or infinite .* the first at y 30, x 2"):
        compute_normalization(v, method=method, refuse_non_finite=True)
    # Integer inputs cannot hold NaN: "none" reads nothing for them.
    ints = open_volume(_zarr(tmp_path / "i.zarr", _image().astype(np.uint16)), spatial_dims=2)
    assert compute_normalization(ints, method="none", refuse_non_finite=True).samples == 0


def test_statistics_refuse_float64_beyond_float32_always(tmp_path: Path) -> None:
    data = _image("float64")
    data[0, 0] = -4e38
    v = open_volume(_zarr(tmp_path / "a.zarr", data), spatial_dims=2)
    with pytest.raises(StitchsafeError, match=r"values up to 4e\+38 .* beyond the float32 range"):
        compute_normalization(v, method="zscore")  # also when NaN would only be left out


def test_statistics_refuse_a_mapping_that_overflows(tmp_path: Path) -> None:
    # 99 % zeros and the rest tiny: the percentile range is ~1e-40, so scale ~1e40 maps
    # the few large values far beyond float32.
    data = np.zeros((48, 48), np.float32)
    data[:, 40:] = 1e-40
    data[0, :3] = 1e30
    v = open_volume(_zarr(tmp_path / "a.zarr", data), spatial_dims=2)
    with pytest.raises(StitchsafeError, match="beyond the float32 range .* --normalize"):
        compute_normalization(v, method="percentile", percentiles=(1.0, 99.0))


def _outside_sample(v: Volume, max_samples: int) -> tuple[int, int]:
    """A voxel that the statistics' sample does not read."""
    seen = np.zeros(v.shape, bool)
    for b in sample_boxes(v.shape, max_samples=max_samples):
        seen[b.to_slices()] = True
    y, x = np.argwhere(~seen)[len(np.argwhere(~seen)) // 2]
    return int(y), int(x)


def test_tile_read_refuses_nan_outside_the_sample(tmp_path: Path) -> None:
    data = np.random.default_rng(3).uniform(0, 1, size=(256, 256)).astype(np.float32)
    v = open_volume(_zarr(tmp_path / "a.zarr", data), spatial_dims=2)
    y, x = _outside_sample(v, max_samples=2_000)
    arr = zarr.open_array(str(tmp_path / "a.zarr"), mode="r+")
    arr[y, x] = np.nan
    norm = compute_normalization(v, method="zscore", max_samples=2_000, refuse_non_finite=True)
    box = Box((y - 20, x - 20), (y + 20, x + 20))
    with pytest.raises(StitchsafeError, match=rf"NaN or infinite .* the first at y {y}, x {x}"):
        read_padded(v, box, mode="reflect", transform=norm)
    # Boxes without the bad voxel read as before.
    clean = Box((0, 0), (8, 8)) if y > 40 else Box((248, 248), (256, 256))
    assert np.isfinite(read_padded(v, clean, transform=norm)).all()
