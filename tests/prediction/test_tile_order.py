"""Tiles in blocks of columns (a plane of tiles wider than the input chunk cache): predict
writes the same output as in C order, labels-only runs too; the block is kept with the
done mask, so a resumed tile runs in the batch it had in the full run, whatever the cache
budget is when it resumes, and is bit-identical."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import zarr
from nets import make_net

import stitchsafe
from stitchsafe.geometry import blocked_order, make_plan, unet_geometry
from stitchsafe.io import CACHE_ENV, DoneMask, done_mask_path, input_tile_block, open_volume
from stitchsafe.models import save_checkpoint, unet_metadata

SMALL_CACHE = "0.02"  # MiB: blocks of a few of the 34 tile columns of this input
OPTIONS = dict(tile_shape=(18, 9), device="cpu", progress=False, pyramid=False, threshold=0.5)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("tile-order")
    net, cfg = make_net("2d-d2-f3", out_channels=3)
    meta = unet_metadata(cfg, channel_roles=["embedding", "embedding", "foreground"])
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    data = (np.random.default_rng(0).random((40, 300)) * 1000).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(8, 8))
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


def _block(setup: dict[str, Path], cache: str | None) -> tuple[int, ...] | None:
    plan = stitchsafe.plan(setup["model"], setup["input"], tile_shape=(18, 9)).plan
    with pytest.MonkeyPatch.context() as mp:
        if cache is None:
            mp.delenv(CACHE_ENV, raising=False)
        else:
            mp.setenv(CACHE_ENV, cache)
        with open_volume(setup["input"], spatial_dims=2) as volume:
            return input_tile_block(plan, volume)


def _run(setup: dict[str, Path], name: str, cache: str | None, **kw: object) -> Path:
    return _predict(setup, name, cache, **kw).output_path


def _predict(setup: dict[str, Path], name: str, cache: str | None, **kw: object) -> Any:
    out = setup["tmp"] / f"{name}.zarr"
    with pytest.MonkeyPatch.context() as mp:
        if cache is None:
            mp.delenv(CACHE_ENV, raising=False)
        else:
            mp.setenv(CACHE_ENV, cache)
        result = stitchsafe.predict(setup["model"], setup["input"], output=out, **{**OPTIONS, **kw})
    return SimpleNamespace(output_path=out, tiles=result.tiles)


def test_blocked_order_writes_what_c_order_writes(setup: dict[str, Path]) -> None:
    assert _block(setup, None) is None  # the whole input fits the default cache
    assert _block(setup, SMALL_CACHE) is not None  # not C order: the test means something
    c_order, in_blocks = _run(setup, "c", None), _run(setup, "blocks", SMALL_CACHE)
    for array in ("0", "labels/instances/0"):
        a, b = (zarr.open_array(out / array, mode="r")[...] for out in (c_order, in_blocks))
        assert np.array_equal(a, b), array
    mask = zarr.open_array(done_mask_path(in_blocks, ""), mode="r")
    assert mask.attrs["order_block"] == list(_block(setup, SMALL_CACHE) or ())
    # Labels-only runs (no embeddings) take the same order and write the same labels.
    only = _run(setup, "only", SMALL_CACHE, embeddings=False)
    labels = zarr.open_array(c_order / "labels/instances/0", mode="r")[...]
    assert np.array_equal(zarr.open_array(only / "0", mode="r")[...], labels)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_a_resumed_tile_runs_in_its_batch_of_the_blocked_order(
    setup: dict[str, Path], batch_size: int
) -> None:
    out = _run(setup, f"resume-{batch_size}", SMALL_CACHE, labels=False, batch_size=batch_size)
    full = zarr.open_array(out / "0", mode="r")[...]
    done = zarr.open_array(done_mask_path(out, ""), mode="r+")
    order = blocked_order(done.shape, _block(setup, SMALL_CACHE))
    done[np.unravel_index(order[7], done.shape)] = 0  # mid-batch for batches of 3
    image = zarr.open_group(out, mode="r+")
    image.attrs["stitchsafe"] = {**image.attrs["stitchsafe"], "complete": False}
    # Resumed with the default cache, which alone would run C order: the stored block holds.
    options = {**OPTIONS, "labels": False, "batch_size": batch_size}
    result = _predict(setup, f"resume-{batch_size}", None, resume=True, **options)
    assert result.tiles == batch_size  # the tile's whole batch
    assert np.array_equal(zarr.open_array(out / "0", mode="r")[...], full)


def test_remaining_cuts_batches_along_the_stored_order(tmp_path: Path) -> None:
    """The tiles left are whole batches of the order the mask records, not of C order."""
    plan = make_plan((8, 40), unet_geometry([(2, 2)]), tile_shape=(4, 4))  # 2 x 10 tiles
    order = blocked_order(plan.grid_shape, (3,))
    assert order[:6].tolist() == [0, 1, 2, 10, 11, 12]
    for block, batch in (((3,), [10, 11, 12]), (None, [9, 10, 11])):
        made = DoneMask.create(str(tmp_path / "o.zarr"), "", plan.grid_shape, block)
        made.array[...] = 1
        made.array[np.unravel_index(11, plan.grid_shape)] = 0
        done = DoneMask.open(str(tmp_path / "o.zarr"), "", plan.grid_shape)
        assert done.block == block
        assert done.remaining(plan, 3).indices.tolist() == batch
        assert done.remaining(plan, 1).indices.tolist() == [11]
        tiles = done.tiles(plan)
        assert (tiles is None) == (block is None)
        if tiles is not None:
            assert tiles.indices.tolist() == order.tolist()
    with pytest.raises(ValueError, match="does not fit"):
        DoneMask.create(str(tmp_path / "p.zarr"), "", plan.grid_shape, (3, 3))
