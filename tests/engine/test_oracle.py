"""Oracle tests: stitched ``predict`` output == one whole-volume forward pass.

Tolerance (DESIGN.md section 4): max abs error <= 1e-4 x max |output| on CPU float32.
Negative controls show the comparison can fail: tiles off the period lattice, or
stitching the uncropped remainder ``r``, measurably differ from the oracle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from nets import make_net, saved_model, write_model

import stitchsafe
from stitchsafe.engine import run_plan, whole_volume_forward
from stitchsafe.geometry import make_plan
from stitchsafe.io import open_volume, prepare_output
from stitchsafe.models import (
    load_model,
    save_torchscript,
    unet_metadata,
)
from stitchsafe.engine import compute_normalization

TOL = 1e-4


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def write_zarr(path: Path, data: np.ndarray, *, zarr_format: int = 3) -> Path:
    arr = zarr.create_array(
        path,
        shape=data.shape,
        chunks=tuple(min(s, 32) for s in data.shape),
        dtype=data.dtype,
        zarr_format=zarr_format,
    )
    arr[...] = data
    return path


def stitched(result: stitchsafe.PredictResult) -> np.ndarray:
    return np.asarray(zarr.open_array(f"{result.output}/{result.embeddings}", mode="r"))


def oracle(
    model_path: Path, data: np.ndarray, *, pad_mode: str = "reflect", transform=None
) -> np.ndarray:  # type: ignore[no-untyped-def]
    model = load_model(model_path)
    from stitchsafe.models import resolve_geometry

    geometry, _ = resolve_geometry(model)
    x = data if data.ndim == geometry.dims + 1 else data[None]
    return whole_volume_forward(x, model, geometry, pad_mode=pad_mode, transform=transform)


# (architecture, volume shape, tile shape in periods) -- odd shapes: not multiples of
# anything, smaller than one tile, and many tiles.
CASES = [
    ("2d-d1-f2", (37, 51), (4, 6)),
    ("2d-d1-f2", (5, 3), (4, 4)),
    ("2d-d2-f3", (61, 44), (2, 1)),
    ("2d-d4-f2", (45, 70), (1, 2)),
    ("2d-d3-nearest", (53, 29), (2, 1)),
    ("3d-d1-f2", (9, 21, 17), (3, 4, 5)),
    ("3d-aniso-122-d2", (11, 29, 34), (3, 2, 3)),
    ("3d-d2-nearest", (13, 15, 23), (2, 1, 3)),
    ("3d-d2-nearest", (3, 2, 5), (1, 1, 1)),
]


@pytest.mark.parametrize(
    "arch, shape, periods", CASES, ids=[f"{a}-{'x'.join(map(str, s))}" for a, s, _ in CASES]
)
def test_predict_equals_whole_volume(
    tmp_path: Path, arch: str, shape: tuple, periods: tuple
) -> None:
    net, cfg = make_net(arch)
    g = cfg.geometry()
    model = write_model(net, cfg, tmp_path / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    data = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    inp = write_zarr(tmp_path / "in.zarr", data)
    tile = tuple(k * p for k, p in zip(periods, g.period))
    result = stitchsafe.predict(
        model, inp, tile_shape=tile, normalize="none", device="cpu", batch_size=2, progress=False
    )
    assert result.tiles == len(make_plan(shape, g, tile_shape=tile))
    out = stitched(result)
    ref = oracle(model, data)
    assert out.shape == (cfg.out_channels, *shape)
    assert relative_error(out, ref) <= TOL


FORMAT_CASES = [
    ("2d-d2-f3", "torchscript"),
    ("3d-aniso-122-d2", "torchscript"),
    ("2d-d2-f3-c3", "export"),  # 3 channels in, 5 out; the export shared with test_model
    ("2d-d2-f3", "stitchsafe"),
]


@pytest.mark.parametrize("arch, fmt", FORMAT_CASES, ids=[f"{a}-{f}" for a, f in FORMAT_CASES])
def test_model_formats_equal_whole_volume(tmp_path: Path, arch: str, fmt: str) -> None:
    _, cfg = make_net(arch)
    g = cfg.geometry()
    model = saved_model(arch, fmt)
    shape = tuple(p * 3 + 1 for p in g.period)
    if cfg.in_channels > 1:
        shape = (cfg.in_channels, *shape)
    data = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    inp = write_zarr(tmp_path / "in.zarr", data, zarr_format=2)
    result = stitchsafe.predict(
        model,
        inp,
        output=tmp_path / "out.zarr",
        tile_shape=g.period,
        normalize="none",
        device="cpu",
        batch_size=3,
        progress=False,
    )
    assert relative_error(stitched(result), oracle(model, data)) <= TOL


@pytest.mark.parametrize("channel_axis", [False, True], ids=["no-channel", "channel"])
@pytest.mark.parametrize("container", ["tiff", "zarr-group"])
def test_inputs_and_channels(tmp_path: Path, channel_axis: bool, container: str) -> None:
    arch = "2d-d2-f3"
    net, cfg = make_net(arch, in_channels=2 if channel_axis else 1)
    g = cfg.geometry()
    model = write_model(net, cfg, tmp_path / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    shape = (2, 50, 41) if channel_axis else (50, 41)
    data = (np.random.default_rng(3).random(shape) * 4000).astype(np.uint16)
    if container == "tiff":
        inp = tmp_path / "in.tif"
        tifffile.imwrite(inp, data, tile=(16, 16) if not channel_axis else None)
        key = None
    else:
        inp = tmp_path / "group.zarr"
        zarr.open_group(inp, mode="w")
        write_zarr(inp / "raw", data)
        key = "raw"
    result = stitchsafe.predict(
        model,
        inp,
        input_key=key,
        tile_shape=g.period,
        normalize="percentile",
        device="cpu",
        progress=False,
    )
    volume = open_volume(inp, key=key, spatial_dims=2)
    norm = compute_normalization(volume, method="percentile")
    volume.close()
    ref = oracle(model, data.astype(np.float32), transform=norm)
    assert relative_error(stitched(result), ref) <= TOL


@pytest.mark.parametrize("pad_mode", ["reflect", "constant", "edge"])
def test_pad_modes(tmp_path: Path, pad_mode: str) -> None:
    net, cfg = make_net("2d-d2-f3")
    g = cfg.geometry()
    model = write_model(net, cfg, tmp_path / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    data = np.random.default_rng(4).normal(size=(23, 31)).astype(np.float32)
    inp = write_zarr(tmp_path / "in.zarr", data)
    result = stitchsafe.predict(
        model,
        inp,
        tile_shape=g.period,
        pad_mode=pad_mode,
        normalize="none",
        device="cpu",
        progress=False,
    )
    assert relative_error(stitched(result), oracle(model, data, pad_mode=pad_mode)) <= TOL


def _run_naive(tmp_path: Path, arch: str, shape: tuple, tile: tuple) -> float:
    net, cfg = make_net(arch)
    g = cfg.geometry()
    model_path = write_model(net, cfg, tmp_path / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    data = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    inp = write_zarr(tmp_path / "in.zarr", data)
    volume = open_volume(inp, spatial_dims=g.dims)
    plan = make_plan(shape, g, tile_shape=tile, exact=False)
    spec = prepare_output(
        str(tmp_path / "out.zarr"),
        shape=shape,
        channels=cfg.out_channels,
        chunks=plan.chunks,
        axes=("y", "x")[-g.dims :],
    )
    model = load_model(model_path)
    run_plan(volume, model, plan, spec, progress=False)
    out = np.asarray(zarr.open_array(f"{spec.group}/{spec.array}", mode="r"))
    return relative_error(out, oracle(model_path, data))


def test_negative_control_uncropped_remainder(tmp_path: Path) -> None:
    # Depth-4 2-D U-Net: raw outputs are 16 n + 4. Stitching the whole raw output
    # (remainder included) moves every later tile off the lattice.
    _, cfg = make_net("2d-d4-f2")
    g = cfg.geometry()
    assert g.remainder == (4, 4)
    raw = g.min_output
    assert _run_naive(tmp_path, "2d-d4-f2", (70, 70), raw) > 100 * TOL


def test_negative_control_off_lattice(tmp_path: Path) -> None:
    _, cfg = make_net("2d-d2-f3")
    g = cfg.geometry()
    tile = tuple(2 * p - 1 for p in g.period)
    assert _run_naive(tmp_path, "2d-d2-f3", (60, 60), tile) > 100 * TOL


@pytest.mark.parametrize(
    "hints, source",
    [({}, "probe"), ({"pooling_factors": [(1, 2, 2), (2, 2, 2)]}, "flags")],
    ids=["probe", "flags"],
)
def test_models_without_metadata(tmp_path: Path, hints: dict, source: str) -> None:
    # No metadata: the geometry is measured (or taken from flags and cross-checked), and the
    # stitched result is still exact.
    net, cfg = make_net("3d-aniso-122-d2")
    g = cfg.geometry()
    model = tmp_path / "bare.ts"
    save_torchscript(net, model)
    data = np.random.default_rng(6).normal(size=(7, 19, 26)).astype(np.float32)
    inp = write_zarr(tmp_path / "in.zarr", data)
    p = stitchsafe.plan(model, inp, tile_shape=g.period, device="cpu", **hints)
    assert p.geometry_source == source
    assert p.plan.geometry == g
    result = stitchsafe.predict(
        model,
        inp,
        tile_shape=tuple(2 * x for x in g.period),
        normalize="none",
        device="cpu",
        progress=False,
        **hints,
    )
    assert relative_error(stitched(result), oracle(model, data)) <= TOL


@pytest.mark.parametrize(
    "shape, tile",
    [((45, 71), (16, 24)), ((13, 37, 29), (8, 16, 12))],
    ids=["bundled-2d", "bundled-3d"],
)
def test_bundled_models_equal_whole_volume(tmp_path: Path, shape: tuple, tile: tuple) -> None:
    # No --model: predict picks the bundled model for the input's dimensionality.
    from stitchsafe.models import bundled_model
    from stitchsafe.engine import Normalization
    from stitchsafe.training import synthetic_cells

    image, _ = synthetic_cells(shape, seed=11)
    inp = write_zarr(tmp_path / "in.zarr", image)
    result = stitchsafe.predict(None, inp, tile_shape=tile, device="cpu", progress=False)
    assert result.plan.model_path == str(bundled_model(len(shape)))
    assert any("bundled" in n for n in result.plan.notes)
    assert result.tiles > 1
    norm = Normalization.from_dict(result.normalization)
    ref = oracle(bundled_model(len(shape)), image, transform=norm)
    assert relative_error(stitched(result), ref) <= TOL


def pipeline_setup(
    tmp_path: Path, arch: str, shape: tuple, periods: tuple, seed: int
) -> tuple[Path, np.ndarray, Any, Any, Any]:
    """A saved net, random data of ``shape`` in zarr (opened), a plan of tiles ``periods``
    periods wide and an output for it: what ``run_plan`` needs."""
    net, cfg = make_net(arch)
    g = cfg.geometry()
    model_path = write_model(net, cfg, tmp_path / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    volume = open_volume(write_zarr(tmp_path / "in.zarr", data), spatial_dims=g.dims)
    plan = make_plan(shape, g, tile_shape=tuple(k * p for k, p in zip(periods, g.period)))
    spec = prepare_output(
        str(tmp_path / "out.zarr"),
        shape=shape,
        channels=cfg.out_channels,
        chunks=plan.chunks,
        axes=("z", "y", "x")[-g.dims :],
    )
    return model_path, data, volume, plan, spec


@pytest.mark.parametrize("streams", [1, 2, 3])
@pytest.mark.parametrize(
    "arch, shape, periods", [("2d-d2-f3", (61, 44), (2, 1)), ("3d-d1-f2", (9, 21, 17), (3, 4, 5))]
)
def test_cpu_pipelines_equal_whole_volume(
    tmp_path: Path, arch: str, shape: tuple, periods: tuple, streams: int
) -> None:
    """The single-stream pipeline and the multi-stream CPU one (engine.run_plan)."""
    model_path, data, volume, plan, spec = pipeline_setup(tmp_path, arch, shape, periods, 3)
    done: list[tuple[int, ...]] = []
    stats = run_plan(
        volume,
        load_model(model_path),
        plan,
        spec,
        batch_size=2,
        cpu_streams=streams,
        on_done=lambda tiles: done.extend(t.index for t in tiles),
        progress=False,
    )
    out = np.asarray(zarr.open_array(f"{spec.group}/{spec.array}", mode="r"))
    assert relative_error(out, oracle(model_path, data)) <= TOL
    assert stats.tiles == len(plan) and sorted(done) == sorted(t.index for t in plan)
