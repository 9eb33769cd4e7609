"""The pipelined engine: bounded read-ahead, errors from any stage, precision and dtype.

Exactness of the default path is the oracle tests' job (test_oracle.py); here the
pipeline's own behaviour is checked with real zarr arrays on disk.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import pytest
import zarr
from nets import make_net, write_model

import stitchsafe
from stitchsafe.engine import run_plan, whole_volume_forward
from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import make_plan
from stitchsafe.io import open_volume, prepare_output
from stitchsafe.models import load_model, unet_metadata


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("engine")
    net, cfg = make_net("2d-d1-f2")
    model = write_model(net, cfg, tmp / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    data = np.random.default_rng(0).normal(size=(41, 53)).astype(np.float32)
    inp = tmp / "in.zarr"
    zarr.create_array(inp, data=data, chunks=(16, 16))
    return {"tmp": tmp, "model": model, "input": inp, "data": data, "geometry": cfg.geometry()}


def _spec(setup: dict[str, Any], name: str, plan: Any, dtype: str = "float32") -> Any:
    return prepare_output(
        str(setup["tmp"] / name),
        shape=plan.volume_shape,
        channels=plan.geometry.channels_out,
        chunks=plan.chunks,
        axes=("y", "x"),
        dtype=dtype,
        overwrite=True,
    )


class Counting:
    """Wraps a model; records how many batches had been read when each forward ran."""

    def __init__(self, model: Any, reads: list[int]) -> None:
        self.model, self.reads, self.ahead = model, reads, []

    def __call__(self, x: Any) -> Any:
        self.ahead.append(len(self.reads))
        return self.model(x)


@pytest.mark.parametrize("streams", [1, 2])
@pytest.mark.parametrize("prefetch", [1, 3])
def test_read_ahead_is_bounded(setup: dict[str, Any], prefetch: int, streams: int) -> None:
    plan = make_plan((41, 53), setup["geometry"], tile_shape=(4, 4))
    reads: list[int] = []
    lock = threading.Lock()

    def transform(x: np.ndarray) -> np.ndarray:
        with lock:
            reads.append(1)
        return x

    model = Counting(load_model(setup["model"]), reads)
    volume = open_volume(setup["input"], spatial_dims=2)
    stats = run_plan(
        volume,
        model,  # type: ignore[arg-type]
        plan,
        _spec(setup, "bounded.zarr", plan),
        transform=transform,
        prefetch=prefetch,
        num_workers=2,
        progress=False,
        cpu_streams=streams,
    )
    assert stats.tiles == len(plan) > 50
    # The k-th forward (0-based) runs while batches k .. k + streams - 1 may be computing
    # and at most `prefetch` later ones have been started reading:
    # reads started <= k + streams + prefetch.
    for k, seen in enumerate(model.ahead):
        assert seen <= k + streams + prefetch, (k, seen)
    assert max(a - k for k, a in enumerate(model.ahead)) >= 1  # it did read ahead


@pytest.mark.parametrize("streams", [1, 2])
def test_errors_in_any_stage_stop_the_run(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, streams: int
) -> None:
    plan = make_plan((41, 53), setup["geometry"], tile_shape=(4, 4))
    model = load_model(setup["model"])
    volume = open_volume(setup["input"], spatial_dims=2)
    calls = []

    def bad_read(x: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 5:
            raise StitchsafeError("disk went away")
        return x

    with pytest.raises(StitchsafeError, match="disk went away"):
        run_plan(volume, model, plan, _spec(setup, "e1.zarr", plan), transform=bad_read,
                 progress=False, cpu_streams=streams)  # fmt: skip

    def bad_model(x: Any) -> Any:
        raise RuntimeError("device fell over")

    with pytest.raises(RuntimeError, match="device fell over"):
        run_plan(volume, bad_model, plan, _spec(setup, "e2.zarr", plan), progress=False,  # type: ignore[arg-type]
                 cpu_streams=streams)  # fmt: skip
    import stitchsafe.io

    def bad_write(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stitchsafe.io, "write_block", bad_write)
    with pytest.raises(OSError, match="No space left"):
        run_plan(volume, model, plan, _spec(setup, "e3.zarr", plan), progress=False,
                 cpu_streams=streams)  # fmt: skip
    volume.close()


def test_float16_embeddings_and_bf16_precision(setup: dict[str, Any]) -> None:
    tmp, model, inp = setup["tmp"], setup["model"], setup["input"]
    common: dict[str, Any] = {"tile_shape": (8, 8), "normalize": "none", "device": "cpu"}
    common |= {"progress": False, "labels": False, "overwrite": True}
    exact = stitchsafe.predict(model, inp, output=tmp / "fp32.zarr", **common)
    half = stitchsafe.predict(
        model, inp, output=tmp / "fp16.zarr", embeddings_dtype="float16", **common
    )
    bf16 = stitchsafe.predict(model, inp, output=tmp / "bf16.zarr", precision="bf16", **common)
    a = np.asarray(zarr.open_array(f"{exact.output}/{exact.embeddings}", mode="r"))
    h = zarr.open_array(f"{half.output}/{half.embeddings}", mode="r")
    b = np.asarray(zarr.open_array(f"{bf16.output}/{bf16.embeddings}", mode="r"))
    ref = whole_volume_forward(setup["data"][None], load_model(model), setup["geometry"])
    scale = float(np.abs(ref).max())
    assert float(np.abs(a - ref).max()) <= 1e-4 * scale  # fp32: exact
    assert h.dtype == np.float16
    assert float(np.abs(np.asarray(h, np.float32) - a).max()) <= 1e-3 * scale
    assert 0 < float(np.abs(b - ref).max()) <= 5e-2 * scale  # reduced precision: close, not exact
    with pytest.raises(StitchsafeError, match="--precision 'fp8'"):
        stitchsafe.predict(model, inp, output=tmp / "x.zarr", **{**common, "precision": "fp8"})
    with pytest.raises(StitchsafeError, match="--embeddings-dtype"):
        stitchsafe.predict(
            model, inp, output=tmp / "x.zarr", **{**common, "embeddings_dtype": "int8"}
        )


@pytest.mark.parametrize("code", [28, 13], ids=["disk-full", "permission-denied"])
def test_storage_errors_exit_2_and_point_to_resume(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    import os

    from click.testing import CliRunner

    import stitchsafe.io
    from stitchsafe.cli import cli

    calls: list[int] = []
    real = stitchsafe.io.write_block

    def failing(*args: Any) -> None:
        calls.append(1)
        if len(calls) > 3:
            raise OSError(code, os.strerror(code), "out.zarr/embeddings/0/c/0/0/1")
        real(*args)

    monkeypatch.setattr(stitchsafe.io, "write_block", failing)
    out = setup["tmp"] / f"full-{code}.zarr"
    args = ["predict", "--model", str(setup["model"]), "--input", str(setup["input"])]
    args += ["--output", str(out), "--tile-shape", "8,8", "--device", "cpu", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    assert os.strerror(code) in r.output and "--resume" in r.output
    assert "Traceback" not in r.output
    monkeypatch.setattr(stitchsafe.io, "write_block", real)
    done = CliRunner().invoke(cli, [*args, "--resume", "--json"])  # the cause is fixed
    assert done.exit_code == 0, done.output
    assert 0 < json.loads(done.stdout.splitlines()[-1])["tiles"] < 42
