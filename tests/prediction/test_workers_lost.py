"""Lost workers: every worker of a real dask cluster killed, during the tiles or the labels.

The cluster is a real ``distributed.LocalCluster`` of worker processes on 127.0.0.1 (what a
user's ``--scheduler tcp://...`` is); ``predict`` runs as the installed console script, and
its workers are killed with SIGKILL (out of memory, a batch system's end of job) once the
stage under test has started. The command must exit 2 with one paragraph that says what
happened and that ``--resume`` continues, and ``--resume`` (on a fresh cluster, as a
restarted batch job has) must give the clean run's output.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import torch
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli
from nets import labelled_setup

import stitchsafe
from stitchsafe.engine import WorkersLost, drive, open_executor, parse_scheduler
from stitchsafe.io import bookkeeping_path, done_mask_path
from stitchsafe.labels import NEW_LABELS

distributed = pytest.importorskip("distributed")

TILE = (4, 8, 8)
LABELS = "labels/instances/0"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return labelled_setup(tmp_path_factory.mktemp("workers-lost"))


@pytest.fixture(scope="module")
def clean(setup: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and labels of a run that nothing stopped (one torch thread, as the
    workers: the embeddings are then bit-identical)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stitchsafe.predict(
            setup["model"], setup["input"], output=setup["tmp"] / "clean.zarr",
            tile_shape=TILE, device="cpu", progress=False,
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return _read(setup["tmp"] / "clean.zarr")


@contextlib.contextmanager
def _cluster() -> Iterator[Any]:
    """Two single-threaded worker processes under nannies, on 127.0.0.1.

    ``allowed-failures`` 0: a task whose worker dies is not retried, so that killing the
    workers during the tiles stops the run (as repeated deaths do with the default 3).
    Each step of the test gets a fresh cluster: it does not wait for the nannies to
    replace killed workers (which took minutes on a loaded 2-core machine).
    """
    env = {"OMP_NUM_THREADS": "1", "STITCHSAFE_TORCH_THREADS": "1"}
    config = {
        "distributed.nanny.pre-spawn-environ": env,
        "distributed.scheduler.allowed-failures": 0,
    }
    with dask.config.set(config):
        local = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        )  # fmt: skip
    try:
        yield local
    finally:
        local.close()


def _read(out: Path) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(zarr.open_array(out / "0", mode="r"))
    return emb, np.asarray(zarr.open_array(out / LABELS, mode="r"))


def _args(setup: dict[str, Path], out: Path) -> list[str]:
    return [
        "predict", "--model", str(setup["model"]), "--input", str(setup["input"]),
        "--output", str(out), "--tile-shape", ",".join(map(str, TILE)), "--device", "cpu",
        "--no-progress", "--json",
    ]  # fmt: skip


def _chunks_written(out: Path) -> int:
    where = out / "0" / "c"
    return sum(len(files) for _, _, files in os.walk(where)) if where.exists() else 0


def _kill_workers_when(
    args: list[str], started: Callable[[], bool]
) -> subprocess.CompletedProcess[str]:
    """Run ``stitchsafe ARGS`` on a fresh cluster; SIGKILL every worker process once
    ``started()`` and a task is running on a worker; the finished process.

    Workers killed while idle (between two passes) are only replaced by the nannies and
    the run goes on: the kill waits for work in flight.
    """
    with _cluster() as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        pids = sorted(client.run(os.getpid).values())
        command = [EXE, *args, "--scheduler", cluster.scheduler_address]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120

        def ready() -> bool:
            return started() and any(client.processing().values())

        while proc.poll() is None and not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before its workers could be killed"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _one_paragraph(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.stderr.startswith("Error: "), proc.stderr
    assert_bad_input(proc, "workers", "lost", *words)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_all_workers_lost_in_the_tiles_then_in_the_labels_then_resume(
    setup: dict[str, Path], clean: tuple[np.ndarray, np.ndarray]
) -> None:
    out = setup["tmp"] / "lost.zarr"
    args = _args(setup, out)
    # 1. Every worker killed once ten tiles are written.
    stopped = _kill_workers_when(args, lambda: _chunks_written(out) >= 10)
    _one_paragraph(stopped, "running the tiles", "done mask", "--resume")
    done = np.asarray(zarr.open_array(done_mask_path(out, ""), mode="r"))
    assert 0 < done.sum() < done.size  # some tiles finished, and they are kept
    # 2. --resume continues; its workers are killed once the labelling has started (the
    # scratch group where new labels are built appears).
    again = [*args, "--resume"]
    stopped = _kill_workers_when(again, Path(bookkeeping_path(out, "", NEW_LABELS)).exists)
    _one_paragraph(stopped, "running the labels", "embeddings are complete", "--resume")
    assert not (out / LABELS).exists()  # no half-made labels where labels belong
    # 3. --resume once more: only the labels were left to do, and the output is the clean one.
    with _cluster() as cluster:
        resumed = run_cli(*again, "--scheduler", cluster.scheduler_address)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["tiles"] == 0
    emb, lab = _read(out)
    assert np.array_equal(emb, clean[0])
    assert np.array_equal(lab, clean[1])


def _die(item: int) -> int:
    """A task whose worker process dies (as one killed for memory does)."""
    os._exit(3)


def test_a_dead_process_pool_worker_is_workers_lost() -> None:
    """The same report from a process pool (``--scheduler processes``), from :func:`drive`."""
    lost = pytest.raises(WorkersLost, match="running the tiles were lost: a worker process")
    with open_executor(parse_scheduler("processes:1"), device="cpu") as pool, lost:
        drive(pool, _die, [1, 2], on_result=lambda item, result: None, stage="tiles")
