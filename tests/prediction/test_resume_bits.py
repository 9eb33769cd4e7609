"""A resumed tile is computed exactly as in the uninterrupted run: bit for bit.

Float results of a convolution depend on how it runs: the torch threads it gets and the
batch it is in (oneDNN picks its algorithm by both; about 1e-7 apart here). A resume
computes fewer tiles than the full run, so it must not let that change either: the CPU
streams (and their threads) are sized by the plan, not by the tiles left, and resumed
tiles run in the batches of the full run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from nets import make_net

import stitchsafe
from stitchsafe.io import done_mask_path
from stitchsafe.models import save_checkpoint, unet_metadata


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("resume-bits")
    net, cfg = make_net("2d-d2-f3")
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 16))
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


@pytest.mark.parametrize("batch_size", [1, 3])
def test_resumed_tiles_are_bit_identical(setup: dict[str, Path], batch_size: int) -> None:
    tmp = setup["tmp"]
    out = tmp / f"out-{batch_size}.zarr"
    options = dict(
        tile_shape=(18, 9), device="cpu", progress=False, labels=False, pyramid=False,
        batch_size=batch_size,
    )  # fmt: skip
    stitchsafe.predict(setup["model"], setup["input"], output=out, **options)
    full = zarr.open_array(out / "0", mode="r")[...]
    done = zarr.open_array(done_mask_path(out, ""), mode="r+")
    done[1, 2] = 0  # one tile, in the middle of a batch when batch_size > 1
    image = zarr.open_group(out, mode="r+")
    image.attrs["stitchsafe"] = {**image.attrs["stitchsafe"], "complete": False}
    result = stitchsafe.predict(setup["model"], setup["input"], output=out, resume=True, **options)
    assert 1 <= result.tiles <= batch_size
    resumed = zarr.open_array(out / "0", mode="r")[...]
    assert np.array_equal(resumed, full)
