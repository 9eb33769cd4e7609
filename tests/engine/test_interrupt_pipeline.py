"""Stopping the tile pipeline early: Ctrl-C joins its threads and keeps what finished.

A real SIGINT is sent to this process from a reader thread while the pipeline runs; the
main thread then raises ``KeyboardInterrupt`` wherever it is, as it would for a user's
Ctrl-C. Oracle: one whole-volume forward pass.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zarr
from nets import make_net, write_model

from stitchsafe.engine import run_plan, whole_volume_forward
from stitchsafe.geometry import Tile, make_plan
from stitchsafe.io import open_volume, prepare_output
from stitchsafe.models import load_model, unet_metadata


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("interrupt")
    net, cfg = make_net("2d-d1-f2")
    model = write_model(net, cfg, tmp / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    data = np.random.default_rng(1).normal(size=(41, 53)).astype(np.float32)
    zarr.create_array(tmp / "in.zarr", data=data, chunks=(16, 16))
    oracle = whole_volume_forward(data[None], load_model(model), cfg.geometry())
    return {"tmp": tmp, "model": model, "geometry": cfg.geometry(), "oracle": oracle}


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread (Python's own handler)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class CtrlCAfter:
    """A normalisation (run on reader threads) that sends this process SIGINT once, at
    its ``reads``-th call."""

    def __init__(self, reads: int) -> None:
        self.reads, self.calls, self.lock = reads, 0, threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls += 1
            if self.calls == self.reads:
                os.kill(os.getpid(), signal.SIGINT)
        return x


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("stitchsafe-")]


@pytest.mark.parametrize("streams", [1, 2], ids=["single-stream", "cpu-streams"])
def test_ctrl_c_joins_the_threads_and_keeps_what_was_written(
    setup: dict[str, Any], ctrl_c_raises: None, streams: int
) -> None:
    plan = make_plan((41, 53), setup["geometry"], tile_shape=(4, 4))
    spec = prepare_output(
        str(setup["tmp"] / f"out-{streams}.zarr"),
        shape=plan.volume_shape,
        channels=plan.geometry.channels_out,
        chunks=plan.chunks,
        axes=("y", "x"),
    )
    volume = open_volume(setup["tmp"] / "in.zarr", spatial_dims=2)
    model = load_model(setup["model"])
    reported: list[Tile] = []
    common: dict[str, Any] = {"progress": False, "cpu_streams": streams, "num_workers": 2}
    with pytest.raises(KeyboardInterrupt) as stop:
        run_plan(volume, model, plan, spec, transform=CtrlCAfter(12), on_done=reported.extend,
                 **common)  # fmt: skip
    # No thread of the pipeline outlives it: nothing writes after the exception.
    assert _pipeline_threads() == []
    assert 0 < len(reported) < len(plan)
    notes = " ".join(getattr(stop.value, "__notes__", []))
    assert f"{len(reported)} of the {len(plan)} tiles" in notes, notes
    out = zarr.open_array(os.path.join(spec.group, spec.array), mode="r")
    oracle, scale = setup["oracle"], float(np.abs(setup["oracle"]).max())
    for tile in reported:  # every tile reported as finished is written, in full
        where = (slice(None), *tile.write.to_slices())
        np.testing.assert_allclose(out[where], oracle[where], rtol=0, atol=1e-4 * scale)
    # Running only the tiles not reported (a resume) completes the output.
    finished = {t.index for t in reported}
    rest = [t for t in plan if t.index not in finished]
    run_plan(volume, model, plan, spec, tiles=rest, **common)
    np.testing.assert_allclose(out[...], oracle, rtol=0, atol=1e-4 * scale)
    volume.close()
