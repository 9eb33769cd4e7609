"""``--batch-size N|auto``: the batch fills the device budget, and never changes the output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from nets import make_net
from cli_helpers import assert_bad_input, run_cli

import stitchsafe
from stitchsafe.engine import auto_batch_size
from stitchsafe.errors import StitchsafeError
from stitchsafe.models import save_checkpoint, unet_metadata


@given(
    st.integers(1, 2**34),
    st.lists(st.integers(1, 400), min_size=1, max_size=3),
    st.integers(1, 10_000),
)
def test_auto_batch_fits_the_budget(budget: int, read: list[int], tiles: int) -> None:
    n = auto_batch_size(budget, read, tiles)
    voxels = int(np.prod(read))
    assert 1 <= n <= min(32, tiles)
    assert n == 1 or n * voxels <= budget  # more than one tile only when they all fit
    if n < min(32, tiles):
        assert (n + 1) * voxels > budget  # and as many as fit


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("batch")
    net, cfg = make_net("2d-d1-f2")
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 16))
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


def _args(s: dict[str, Path], out: str, batch: str) -> list[str]:
    return [
        "predict", "--model", str(s["model"]), "--input", str(s["input"]),
        "--output", str(s["tmp"] / out), "--tile-shape", "8,10", "--device", "cpu",
        "--no-progress", "--no-labels", "--json", "--batch-size", batch,
    ]  # fmt: skip


def test_auto_on_the_cpu_is_one_and_numbers_are_used(setup: dict[str, Path]) -> None:
    auto = run_cli(*_args(setup, "auto.zarr", "auto"))
    assert auto.returncode == 0, auto.stderr
    assert json.loads(auto.stdout)["batch_size"] == 1
    three = run_cli(*_args(setup, "three.zarr", "3"))
    assert three.returncode == 0, three.stderr
    assert json.loads(three.stdout)["batch_size"] == 3
    a = np.asarray(zarr.open_array(setup["tmp"] / "auto.zarr/0"))
    b = np.asarray(zarr.open_array(setup["tmp"] / "three.zarr/0"))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(a).max())


@pytest.mark.parametrize("bad", ["0", "-2", "many", "1.5"])
def test_bad_batch_sizes_exit_2(setup: dict[str, Path], bad: str) -> None:
    assert_bad_input(run_cli(*_args(setup, f"bad{bad}.zarr", bad)), "--batch-size")
    assert not (setup["tmp"] / f"bad{bad}.zarr").exists()


def test_api_refuses_a_bad_batch_size(setup: dict[str, Path]) -> None:
    with pytest.raises(StitchsafeError, match="batch-size"):
        stitchsafe.predict(setup["model"], setup["input"], batch_size=0, progress=False)


@pytest.mark.gpu  # auto batching measures CUDA memory
def test_auto_batches_small_tiles_on_cuda(setup: dict[str, Path]) -> None:
    r = stitchsafe.predict(
        setup["model"],
        setup["input"],
        output=setup["tmp"] / "cuda.zarr",
        tile_shape=(8, 10),
        device="cuda",
        batch_size="auto",
        labels=False,
        progress=False,
    )
    assert r.batch_size > 1
