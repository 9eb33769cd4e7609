"""The input chunk cache: cached reads equal the stored data for every box, each chunk is
decoded once while the cache holds it, the budget holds, and predict is bit-identical."""

from __future__ import annotations

import itertools
import math
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import zarr
from nets import make_net

import stitchsafe
from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box, blocked_order, make_plan, unet_geometry
from stitchsafe.io import CACHE_ENV, TileSubset, input_tile_block, open_volume, read_padded
from stitchsafe.models import save_checkpoint, unet_metadata


def _data(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 60000, size=shape).astype(np.uint16)


def _zarr(path: Path, data: np.ndarray, chunks: tuple[int, ...], **kw: Any) -> str:
    arr = zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=chunks, **kw)
    arr[...] = data
    return str(path)


def _hdf5(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> str:
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=data, chunks=chunks, compression="gzip")
    return f"{path}/raw"


# name: stored shape, chunks, how it is written, spatial dims
INPUTS = {
    "zarr-v3": ((9, 11, 10), (4, 3, 4), {}, 3),
    "zarr-v2": ((9, 11, 10), (4, 3, 4), {"zarr_format": 2}, 3),
    "zarr-sharded": ((9, 11, 10), (2, 3, 2), {"shards": (4, 6, 4)}, 3),
    "zarr-channels": ((2, 11, 13), (1, 4, 5), {}, 2),
    "hdf5": ((9, 11, 10), (4, 3, 4), None, 3),
}


def _open(tmp_path: Path, name: str) -> tuple[Any, np.ndarray, tuple[int, ...]]:
    shape, chunks, kw, dims = INPUTS[name]
    data = _data(shape)
    if kw is None:
        path = _hdf5(tmp_path / "in.h5", data, chunks)
    else:
        path = _zarr(tmp_path / "in.zarr", data, chunks, **kw)
    volume = open_volume(path, spatial_dims=dims)
    return volume, (data if data.ndim > dims else data[np.newaxis]), chunks[-dims:]


def _boxes(shape: tuple[int, ...], count: int) -> list[Box]:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(count):
        lo = [int(rng.integers(0, n)) for n in shape]
        out.append(
            Box(tuple(lo), tuple(int(rng.integers(b + 1, n + 1)) for b, n in zip(lo, shape)))
        )
    return out


@pytest.mark.parametrize("name", list(INPUTS))
def test_cached_reads_equal_the_stored_data(tmp_path: Path, name: str) -> None:
    volume, data, _ = _open(tmp_path, name)
    with volume:
        for box in [*_boxes(volume.shape, 150), Box.from_shape(volume.shape)]:
            got = volume.read(box)
            assert got.dtype == data.dtype
            np.testing.assert_array_equal(got, data[(slice(None), *box.to_slices())])
        stats = volume.chunk_cache_stats()
        assert stats is not None and stats.hits > 0


def test_every_box_of_a_2d_input_equals_the_uncached_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data((7, 9))
    path = _zarr(tmp_path / "in.zarr", data, (3, 4))
    cached = open_volume(path, spatial_dims=2)
    cached.read(Box((0, 0), (1, 1)))  # its cache is made at the first read
    monkeypatch.setenv(CACHE_ENV, "0")
    plain = open_volume(path, spatial_dims=2)
    for y0, x0 in itertools.product(range(7), range(9)):
        for y1, x1 in itertools.product(range(y0 + 1, 8), range(x0 + 1, 10)):
            box = Box((y0, x0), (y1, x1))
            np.testing.assert_array_equal(cached.read(box), plain.read(box))
    assert plain.chunk_cache_stats() is None
    assert cached.chunk_cache_stats().decoded == 3 * 3  # each chunk once


@pytest.mark.parametrize("name", ["zarr-v3", "zarr-sharded", "hdf5"])
def test_each_chunk_is_decoded_once_for_a_plan(tmp_path: Path, name: str) -> None:
    volume, data, chunks = _open(tmp_path, name)
    plan = make_plan(volume.shape, unet_geometry([(2, 2, 2)]), tile_shape=(2, 2, 2))
    with volume:
        for tile in plan:
            read_padded(volume, tile.read, mode="reflect")
        stats = volume.chunk_cache_stats()
    assert stats is not None
    grid = [math.ceil(n / c) for n, c in zip(volume.shape, chunks)]
    assert stats.decoded == math.prod(grid)
    assert stats.decoded_voxels == data.size
    # Read box by box, each tile would have decoded every chunk its box touches.
    touched = 0
    for tile in plan:
        inside = Box(
            tuple(max(0, b) for b in tile.read.begin),
            tuple(min(n, e) for n, e in zip(volume.shape, tile.read.end)),
        )
        touched += math.prod(
            (e - 1) // c - b // c + 1 for b, e, c in zip(inside.begin, inside.end, chunks)
        )
    assert touched > 4 * stats.decoded


@pytest.mark.parametrize("channels", [False, True])
def test_the_run_order_decodes_each_chunk_once_where_c_order_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels: bool
) -> None:
    """A plane of tiles wider than the cache: in the run order (blocks of columns) every
    chunk is decoded once; in C order the next plane finds its chunks dropped."""
    shape = (2, 16, 24, 256) if channels else (16, 24, 256)
    chunks = (2, 4, 8, 8) if channels else (4, 8, 8)
    data = _data(shape)
    path = _zarr(tmp_path / "wide.zarr", data, chunks)
    monkeypatch.setenv(CACHE_ENV, "0.2" if channels else "0.1")  # MiB: half the input
    plan = make_plan(shape[-3:], unet_geometry([(2, 2, 2)]), tile_shape=(4, 8, 8))
    per_chunk = {}
    for order in ("c", "run"):
        volume = open_volume(path, spatial_dims=3)
        block = input_tile_block(plan, volume)
        assert block is not None  # the run order is not C order here
        tiles = plan if order == "c" else TileSubset(plan, blocked_order(plan.grid_shape, block))
        for tile in tiles:  # (cached reads equal the stored data: the tests above)
            read_padded(volume, tile.read, mode="reflect")
        stats = volume.chunk_cache_stats()
        assert stats is not None
        per_chunk[order] = stats.decoded / math.prod(-(-n // c) for n, c in zip(shape, chunks))
        volume.close()
    assert per_chunk["run"] == 1.0 and per_chunk["c"] > 3, per_chunk


def test_the_budget_holds_and_reads_stay_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data((8, 64, 64))  # 64 KB, in 1024 chunks of 64 bytes
    path = _zarr(tmp_path / "in.zarr", data, (2, 4, 4))
    budget = 48 * 1024  # less than the slab the plan's z-neighbours share (all of it)
    monkeypatch.setenv(CACHE_ENV, str(budget / 2**20))
    plan = make_plan((8, 64, 64), unet_geometry([(2, 2, 2)]), tile_shape=(4, 4, 4))
    with open_volume(path, spatial_dims=3) as volume:
        for tile in plan:
            got = read_padded(volume, tile.read, mode="constant")
            inside = Box(
                tuple(max(0, b) for b in tile.read.begin),
                tuple(min(n, e) for n, e in zip(volume.shape, tile.read.end)),
            )
            keep = tuple(
                slice(b - r, e - r) for b, e, r in zip(inside.begin, inside.end, tile.read.begin)
            )
            np.testing.assert_array_equal(got[(0, *keep)], data[inside.to_slices()])
        stats = volume.chunk_cache_stats()
    assert stats is not None
    assert budget // 2 < stats.peak_nbytes <= budget
    assert stats.decoded > 1024  # a budget below the slab decodes chunks again


def test_concurrent_reads_decode_each_chunk_once(tmp_path: Path) -> None:
    data = _data((8, 32, 32))
    path = _zarr(tmp_path / "in.zarr", data, (4, 8, 8), compressors=None)
    volume = open_volume(path, spatial_dims=3)
    box = Box((1, 3, 5), (8, 30, 29))
    barrier = threading.Barrier(8)
    results: list[np.ndarray] = []

    def read() -> None:
        barrier.wait()
        results.append(volume.read(box))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    for r in results:
        np.testing.assert_array_equal(r[0], data[box.to_slices()])
    assert volume.chunk_cache_stats().decoded == 2 * 4 * 4


def test_a_bad_cache_size_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _zarr(tmp_path / "in.zarr", _data((4, 4)), (2, 2))
    monkeypatch.setenv(CACHE_ENV, "lots")
    volume = open_volume(path, spatial_dims=2)
    with pytest.raises(StitchsafeError, match=CACHE_ENV):
        volume.read(Box((0, 0), (2, 2)))


def test_predict_with_the_cache_equals_predict_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, cfg = make_net("3d-d1-f2")
    model = tmp_path / "m.pt"
    save_checkpoint(net, model, metadata=unet_metadata(cfg))
    src = _zarr(tmp_path / "in.zarr", _data((10, 22, 26)), (4, 8, 8))
    options: dict[str, Any] = dict(
        tile_shape=(4, 6, 6), device="cpu", progress=False, labels=False, overwrite=True
    )
    outputs = []
    for setting in ("0", None):
        if setting is None:
            monkeypatch.delenv(CACHE_ENV, raising=False)
        else:
            monkeypatch.setenv(CACHE_ENV, setting)
        out = tmp_path / f"out-{setting}.zarr"
        stitchsafe.predict(model, src, output=out, **options)
        group = zarr.open_group(str(out), mode="r")
        outputs.append({name: a[...].tobytes() for name, a in group.arrays()})
        outputs[-1].update(
            {f"{name}/{n}": a[...].tobytes() for name, g in group.groups() for n, a in g.arrays()}
        )
    assert any(len(v) > 10_000 for v in outputs[0].values())  # the embeddings
    assert outputs[0] == outputs[1]
