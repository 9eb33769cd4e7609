"""Edge tiles run on trimmed inputs and still equal one whole-volume pass.

A tile clipped at the volume's far edge reads only what its write needs
(``stitchsafe.geometry.batch_reads``): the forward passes are watched through a hook on
the model, and the stitched output is compared with the oracle, on both CPU pipelines
and with batches that mix edge and full tiles (which then read full boxes).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import zarr
from nets import make_net, write_model
from test_oracle import TOL, oracle, relative_error, write_zarr

from stitchsafe.engine import run_plan
from stitchsafe.geometry import make_plan
from stitchsafe.io import open_volume, prepare_output
from stitchsafe.models import load_model, unet_metadata


@pytest.mark.parametrize(
    "arch, shape, periods, batch, streams",
    [
        ("2d-d2-f3", (61, 44), (2, 1), 1, 2),
        ("2d-d4-f2", (70, 37), (2, 2), 1, 1),
        ("3d-d1-f2", (9, 21, 17), (3, 4, 5), 1, 2),
        ("3d-d1-f2", (9, 21, 17), (3, 4, 5), 2, 1),
    ],
)
def test_edge_tiles_compute_less_and_stay_exact(
    tmp_path: Path, arch: str, shape: tuple, periods: tuple, batch: int, streams: int
) -> None:
    net, cfg = make_net(arch)
    g = cfg.geometry()
    model_path = write_model(net, cfg, tmp_path / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    data = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    volume = open_volume(write_zarr(tmp_path / "in.zarr", data), spatial_dims=g.dims)
    plan = make_plan(shape, g, tile_shape=tuple(k * p for k, p in zip(periods, g.period)))
    spec = prepare_output(
        str(tmp_path / "out.zarr"),
        shape=shape,
        channels=cfg.out_channels,
        chunks=plan.chunks,
        axes=("z", "y", "x")[-g.dims :],
    )
    model = load_model(model_path)
    seen: list[tuple[int, ...]] = []
    model.module.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    run_plan(volume, model, plan, spec, batch_size=batch, cpu_streams=streams, progress=False)
    out = np.asarray(zarr.open_array(f"{spec.group}/{spec.array}", mode="r"))
    assert relative_error(out, oracle(model_path, data)) <= TOL
    assert sum(s[0] for s in seen) == len(plan)
    spatial = [s[2:] for s in seen]
    assert all(all(a <= r for a, r in zip(s, plan.read_shape)) for s in spatial)
    smaller = [s for s in spatial if s != plan.read_shape]
    if batch == 1:  # every edge tile alone: exactly its least read
        want = sorted(t.least_read.shape for t in plan if t.least_read is not None)
        assert sorted(smaller) == want and want
        work = sum(math.prod(s) for s in spatial)
        assert work < len(plan) * math.prod(plan.read_shape)


def test_a_batch_with_a_full_tile_reads_full_boxes(tmp_path: Path) -> None:
    net, cfg = make_net("2d-d2-f3")
    g = cfg.geometry()
    model_path = write_model(net, cfg, tmp_path / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    shape = (61, 44)
    data = np.random.default_rng(6).normal(size=shape).astype(np.float32)
    volume = open_volume(write_zarr(tmp_path / "in.zarr", data), spatial_dims=2)
    plan = make_plan(shape, g, tile_shape=(18, 9))
    spec = prepare_output(
        str(tmp_path / "out.zarr"),
        shape=shape,
        channels=cfg.out_channels,
        chunks=plan.chunks,
        axes=("y", "x"),
    )
    model = load_model(model_path)
    seen: list[tuple[int, ...]] = []
    model.module.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    run_plan(volume, model, plan, spec, batch_size=len(plan), cpu_streams=1, progress=False)
    assert seen == [(len(plan), 1, *plan.read_shape)]
    out = np.asarray(zarr.open_array(f"{spec.group}/{spec.array}", mode="r"))
    assert relative_error(out, oracle(model_path, data)) <= TOL
