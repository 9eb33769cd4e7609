"""Edge tiles run on trimmed inputs and still equal one whole-volume pass.

A tile clipped at the volume's far edge reads only what its write needs
(``stitchsafe.geometry.batch_reads``): the forward passes are watched through a hook on
the model, and the stitched output is compared with the oracle, on both CPU pipelines
and with batches that mix edge and full tiles (which then read full boxes).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from test_oracle import TOL, oracle, pipeline_setup, relative_error

from stitchsafe.engine import run_plan
from stitchsafe.models import load_model


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
    model_path, data, volume, plan, spec = pipeline_setup(tmp_path, arch, shape, periods, 5)
    model, seen = _watched(model_path)
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
    model_path, data, volume, plan, spec = pipeline_setup(tmp_path, "2d-d2-f3", (61, 44), (2, 1), 6)
    assert any(t.least_read is not None for t in plan)
    model, seen = _watched(model_path)
    run_plan(volume, model, plan, spec, batch_size=len(plan), cpu_streams=1, progress=False)
    assert seen == [(len(plan), 1, *plan.read_shape)]
    out = np.asarray(zarr.open_array(f"{spec.group}/{spec.array}", mode="r"))
    assert relative_error(out, oracle(model_path, data)) <= TOL


def _watched(model_path: Path) -> tuple[Any, list[tuple[int, ...]]]:
    """The loaded model, and the list its forward passes append their input shapes to."""
    model = load_model(model_path)
    seen: list[tuple[int, ...]] = []
    model.module.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    return model, seen
