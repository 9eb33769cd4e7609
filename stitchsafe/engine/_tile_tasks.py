"""Tiles on worker processes: one task per batch, the model loaded once per worker.

The client (``predict``) sends each task a small :class:`TileJob` — paths, the plan, the
normalisation, settings — and a batch of tile indices, never a pickled model or pixels.
A worker loads the model from its path the first time it sees a run (checking the file's
SHA-256 against the client's, so that a different file at the same path on another node
cannot slip into the output), opens the input, fixes its torch thread count, then reads,
runs and writes whole output chunks itself and returns the indices it finished. The
client marks those tiles done (:mod:`stitchsafe.io`) as the futures complete.

A batch's chunks are written before its future completes, so "done" always means "on
disk". If a worker dies mid-batch, the scheduler runs the batch again elsewhere and its
chunks are simply written again: each chunk belongs to exactly one tile.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import StitchsafeError
from ..geometry import Plan, Tile
from ..io import OutputSpec, Volume, file_sha256
from ..models import load_model
from . import _executors
from ._batch_io import Transform, read_batch, write_batch
from ._device import cpu_count, forward_context, resolve_device
from ._drive import drive
from ._executors import Executor
from ._normalize import Normalization
from ._run import Progress, RunStats

__all__ = [
    "TileJob",
    "run_batch",
    "run_plan_distributed",
    "tile_output",
    "worker_device",
    "worker_index",
]


@dataclass(frozen=True)
class TileJob:
    """Everything a worker needs for the tiles of one run (small and picklable)."""

    model: str
    model_sha256: str
    volume: Volume
    plan: Plan
    output: OutputSpec | None  # None: the tiles' outputs are returned (tile_output)
    output_dtype: str
    normalization: dict[str, Any]
    pad_mode: str
    precision: str
    device: str
    torch_threads: int | None = None
    trust_model: bool = False  # --trust-model: the workers load the model file as trusted
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class _WorkerState:
    token: str
    model: Any
    device: Any
    transform: Transform
    volume: Volume  # the first task's copy, kept open for the following ones


_STATE: _WorkerState | None = None
_STATE_LOCK = threading.Lock()


def worker_index() -> int:
    """This worker's number: a ``processes`` pool numbers its processes 0..N-1, a
    LocalCluster names its workers 0..N-1, and a batch job with several workers
    ``<job>-0``, ``<job>-1``...; 0 when there is none.

    >>> worker_index()
    0
    """
    if _executors.POOL_INDEX is not None:
        return _executors.POOL_INDEX
    try:
        from distributed import get_worker  # noqa: PLC0415 - optional extra

        name = get_worker().name
    except (ImportError, ValueError):
        return 0
    if isinstance(name, int):
        return name
    tail = str(name).rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


def worker_device(requested: str) -> str:
    """The device this worker uses for ``--device requested``.

    ``auto``/``cuda`` on a worker that sees several GPUs takes GPU ``index % count``, so
    a LocalCluster of one worker per GPU spreads over them (under dask-cuda or a batch
    system each worker sees one GPU, which is then ``cuda:0``).
    """
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"cuda:{worker_index() % count}" if count > 1 else "cuda"
    return requested


def _threads(job: TileJob) -> int:
    env = os.environ.get("STITCHSAFE_TORCH_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return job.torch_threads or cpu_count()


def _state(job: TileJob) -> _WorkerState:
    """Load the model (once per run per worker) and fix the thread count."""
    global _STATE
    with _STATE_LOCK:
        if _STATE is not None and _STATE.token == job.token:
            return _STATE
        torch.set_num_threads(_threads(job))
        _check_model_file(job)
        device = resolve_device(worker_device(job.device))
        model = load_model(job.model, device=device, trust=job.trust_model)
        _STATE = _WorkerState(
            job.token, model, device, Normalization.from_dict(job.normalization), job.volume
        )
        return _STATE


def _check_model_file(job: TileJob) -> None:
    """The worker sees the client's model file, with the same contents."""
    if not os.path.exists(job.model):
        raise StitchsafeError(
            f"the model {job.model!r} is not visible on worker host {os.uname().nodename}; "
            "workers need the model and the data on a shared file system."
        )
    if file_sha256(job.model) != job.model_sha256:
        raise StitchsafeError(
            f"the model file {job.model!r} on worker host {os.uname().nodename} differs "
            "from the client's; workers must read the same file."
        )


def run_batch(job: TileJob, indices: Sequence[int]) -> list[int]:
    """Read, run and write the tiles ``indices`` of ``job.plan``; return the indices.

    This runs on a worker. Every chunk of these tiles is written before it returns.
    """
    if job.output is None:
        raise ValueError("run_batch writes its tiles: the job needs an output")
    state = _state(job)
    tiles = [job.plan.tile(int(i)) for i in indices]
    x = read_batch(state.volume, tiles, pad_mode=job.pad_mode, transform=state.transform)
    with forward_context(job.precision, state.device):
        y = state.model(torch.from_numpy(x).to(state.device)).float().cpu().numpy()
    write_batch(job.output, tiles, y, np.dtype(job.output_dtype))
    return [int(i) for i in indices]


def tile_output(job: TileJob, index: int, model: Any = None) -> np.ndarray:
    """The cropped float32 output ``(C, *write)`` of tile ``index`` of ``job.plan``.

    One block of a lazy result (:func:`stitchsafe.engine.lazy_output`). ``model``: the
    loaded model of the process that planned (on the run's device); without it (a process
    the block was sent to) the model is loaded once per process and run, as
    :func:`run_batch` does. The block is returned, not written.
    """
    if model is None:
        state = _state(job)
        model, device, volume, transform = state.model, state.device, state.volume, state.transform
    else:
        device, volume = model.device, job.volume
        transform = Normalization.from_dict(job.normalization)
    tile = job.plan.tile(int(index))
    x = read_batch(volume, [tile], pad_mode=job.pad_mode, transform=transform)
    with forward_context(job.precision, device):
        y = model(torch.from_numpy(x).to(device)).float().cpu().numpy()
    return np.ascontiguousarray(y[0][(slice(None), *tile.crop.to_slices())])


def run_plan_distributed(
    executor: Executor,
    job: TileJob,
    *,
    tiles: Sequence[Tile] | None = None,
    batch_size: int = 1,
    on_done: Callable[[list[Tile]], None] | None = None,
    progress: bool = True,
    describe: str = "",
) -> RunStats:
    """Run ``job``'s tiles (all, or ``tiles``) on ``executor``; the distributed ``run_plan``.

    Parameters
    ----------
    executor
        From :func:`stitchsafe.engine.open_executor`.
    job
        The run's description; its plan numbers the tiles.
    tiles
        A subset (``--resume``); default: the whole plan.
    batch_size
        Tiles per task (and per forward pass on the worker).
    on_done
        Called in the caller's thread with each batch's tiles once they are on disk.
    progress
        A tqdm bar on stderr, advanced by completed futures.
    describe
        Where the work runs, for the returned stats.
    """
    plan = job.plan
    indices = _tile_indices(plan, tiles)
    start = time.perf_counter()
    with Progress(len(indices), progress) as bar:

        def finished(batch: list[int], result: list[int]) -> None:
            if sorted(result) != sorted(batch):  # pragma: no cover - a worker bug
                raise RuntimeError(f"a worker returned tiles {result} for batch {batch}")
            if on_done is not None:
                on_done([plan.tile(i) for i in batch])
            bar.update(len(batch))

        # A partial of a module-level function pickles by reference, for every executor.
        task = functools.partial(run_batch, job)
        batches = _index_batches(indices, batch_size)
        drive(executor, task, batches, on_result=finished, stage="tiles")
    return RunStats(
        tiles=len(indices),
        batches=-(-len(indices) // batch_size),
        seconds=time.perf_counter() - start,
        device=describe or job.device,
    )


def _tile_indices(plan: Plan, tiles: Sequence[Tile] | None) -> np.ndarray:
    """The flat plan indices of ``tiles`` (default: every tile of ``plan``)."""
    if tiles is None:
        return np.arange(len(plan), dtype=np.int64)
    if hasattr(tiles, "indices"):  # an io.TileSubset: no Tile objects needed
        return np.asarray(tiles.indices, dtype=np.int64)
    return np.array([np.ravel_multi_index(t.index, plan.grid_shape) for t in tiles], dtype=np.int64)


def _index_batches(indices: np.ndarray, batch_size: int) -> Iterator[list[int]]:
    """Batches made as the window advances: millions of tiles cost 8 bytes each.

    >>> list(_index_batches(np.arange(5), 2))
    [[0, 1], [2, 3], [4]]
    """
    return (indices[i : i + batch_size].tolist() for i in range(0, len(indices), batch_size))
