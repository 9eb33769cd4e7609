"""The CPU streams' last batch takes every stream's threads; which batch is fixed by its tile.

With one stream per core, the batch holding the plan's last tile (the grid's far corner,
last in every run order) starts when no batch is left for the other streams: its forward
uses the threads the streams had together (one each on two cores, whatever torch was
set to), so that the other cores do not idle while it ends the run. The choice goes by
that tile, not by the batch's place in the run, so a resumed run (a subset of the tiles)
computes every tile with the thread count it had in the full run: convolutions round
differently with other thread counts. Watched through a sink that records, on the compute
thread right after the forward, that thread's torch setting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from test_oracle import pipeline_setup

from stitchsafe.engine import run_plan
from stitchsafe.geometry import Tile
from stitchsafe.models import load_model


@pytest.fixture(params=[2, 1])
def two_threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Torch set to 2 threads, or to 1 (as a worker of a pool may have left it): either way
    two streams of one thread each, and two threads for the tail."""
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


def _threads_by_tile(
    tmp_path: Path, tiles: list[Tile] | None, batch: int
) -> tuple[dict[tuple[int, ...], int], tuple[int, ...]]:
    """Run the plan (or ``tiles`` of it) with 2 streams; each tile's thread count, and the
    plan's last tile."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    model_path, _, volume, plan, _ = pipeline_setup(tmp_path, "3d-d1-f2", (9, 21, 17), (3, 2, 2), 7)
    seen: dict[tuple[int, ...], int] = {}
    lock = threading.Lock()

    def sink(batch_tiles: list[Tile], y: np.ndarray) -> None:
        with lock:
            seen.update({t.index: torch.get_num_threads() for t in batch_tiles})

    run_plan(
        volume, load_model(model_path), plan, None, tiles=tiles, sink=sink,
        batch_size=batch, cpu_streams=2, progress=False,
    )  # fmt: skip
    return seen, tuple(g - 1 for g in plan.grid_shape)


@pytest.mark.parametrize("batch", [1, 2])
def test_the_batch_with_the_last_tile_takes_every_thread(
    tmp_path: Path, two_threads: int, batch: int
) -> None:
    seen, last = _threads_by_tile(tmp_path, None, batch)
    assert len(seen) > 4 * batch
    order = sorted(seen)  # C order: the plan's order here
    tail = set(order[-batch:]) if len(order) % batch == 0 else {last}
    assert last in tail
    assert {i: n for i, n in seen.items() if i in tail} == dict.fromkeys(tail, 2)
    assert set(n for i, n in seen.items() if i not in tail) == {1}
    assert torch.get_num_threads() == two_threads  # restored


def test_a_resumed_run_gives_each_tile_the_threads_of_the_full_run(
    tmp_path: Path, two_threads: int
) -> None:
    full, last = _threads_by_tile(tmp_path / "full", None, 1)
    (tmp_path / "plan").mkdir()
    _, _, _, plan, _ = pipeline_setup(tmp_path / "plan", "3d-d1-f2", (9, 21, 17), (3, 2, 2), 7)
    tiles = list(plan)
    for left in (tiles[len(tiles) // 2 :], tiles[1:-1], tiles[:3]):  # with the corner, or not
        resumed, _ = _threads_by_tile(tmp_path / str(len(left)), left, 1)
        assert resumed == {t.index: full[t.index] for t in left}
    assert full[last] == 2
