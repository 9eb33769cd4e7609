"""A same-padded bioimage.io package, tiled approximately, reproduces its own test tensors.

The package's test output is the network run once over the whole test input, its own
zero padding acting at the image border: what bioimage.io tools and the package's users
compute. ``stitchsafe predict --allow-approximate`` over the same input, in many small
tiles, must stay within the tolerance of it everywhere, the band along the image border
included (where tiles padded with the pad mode once deviated by up to 0.3).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import run_cli
from packages import same_padded_package

pytest.importorskip("bioimageio.spec")

TOLERANCE = 1e-3


def _nuclei_like(shape: tuple[int, int], seed: int = 3) -> np.ndarray:
    """Bright round blobs on a dim noisy background, touching the image border too."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = 0.1 + 0.02 * rng.standard_normal(shape)
    for cy, cx, r in zip(
        rng.uniform(0, shape[0], 12), rng.uniform(0, shape[1], 12), rng.uniform(3, 7, 12)
    ):
        image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return image.astype(np.float32)


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_package_test_tensors_are_reproduced(tmp_path: Path, pad_mode: str) -> None:
    x = _nuclei_like((50, 66))  # a valid size of the package (2 + 2k): no padding at all
    package = same_padded_package(tmp_path / "package", x[None, None])
    expected = np.load(package / "test_output.npy")[0]
    volume = tmp_path / "test_input.zarr"
    zarr.create_array(volume, data=x, chunks=(16, 16))
    out = tmp_path / "out.zarr"
    proc = run_cli(
        "predict", "--model", str(package), "--input", str(volume), "--output", str(out),
        "--allow-approximate", "--tolerance", str(TOLERANCE), "--tile-shape", "8",
        "--pad-mode", pad_mode, "--device", "cpu", "--no-labels", "--no-progress", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["normalization"]["method"] == "none"  # the package has no preprocessing
    assert d["plan"]["border"] == "inside" and d["plan"]["tiles"] == 7 * 9
    halo = d["approximate"]["halo"][0][0]
    stitched = np.asarray(zarr.open_array(out / "0", mode="r"))
    assert stitched.shape == expected.shape
    diff = np.abs(stitched - expected) / np.abs(expected).max()
    band = np.ones(x.shape, bool)
    band[halo:-halo, halo:-halo] = False
    assert float(diff.max()) <= TOLERANCE, float(diff.max())
    assert float(diff[:, band].max()) <= TOLERANCE, float(diff[:, band].max())
