"""Where the work runs: a pool of worker processes, or a ``dask.distributed`` cluster.

:func:`open_executor` starts what a :class:`SchedulerSpec` names (or connects to a running
scheduler, or to a ``--cluster slurm`` cluster) and shuts down what it started. Each
executor offers what :func:`drive` needs: submit a call, wait for the first of some to
finish, the current number of workers, and whether a failure means that its workers were
lost (:meth:`Executor.lost`, which :func:`drive` turns into one message).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import dask
import torch

from ..errors import StitchsafeError
from ._schedulers import SchedulerSpec, cuda_count, default_workers, torch_threads

__all__ = ["POOL_INDEX", "Executor", "open_executor"]

T = TypeVar("T")

POOL_INDEX: int | None = None  # this process's number in a ``processes`` pool


class Executor(Protocol):
    """What :func:`drive` needs: submit a call, wait for the first of some to finish, and
    tell a failure of lost workers from a task's own error."""

    gpu_resources: bool

    @property
    def workers(self) -> int: ...

    def submit(self, fn: Callable[..., T], *args: Any) -> Any: ...

    def wait_first(self, futures: list[Any]) -> set[Any]: ...

    def lost(self, exc: BaseException) -> str | None:
        """Why the workers were lost, if ``exc`` says they were; ``None`` otherwise."""


@dataclass
class _PoolExecutor:
    """A ``concurrent.futures`` process pool (``--scheduler processes``)."""

    pool: ProcessPoolExecutor
    workers: int
    gpu_resources: bool = False

    def submit(self, fn: Callable[..., T], *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def wait_first(self, futures: list[Any]) -> set[Any]:
        done, _ = futures_wait(futures, return_when=FIRST_COMPLETED)
        return set(done)

    def lost(self, exc: BaseException) -> str | None:
        if isinstance(exc, BrokenProcessPool):
            return "a worker process died (out of memory, or killed), which breaks the pool"
        return None


@dataclass
class _DaskExecutor:
    """A ``dask.distributed`` client; tasks ask for one ``GPU`` when workers offer it.

    ``workers`` is the cluster's current thread count (re-read at most every few seconds),
    so that a cluster that grows (batch jobs starting) gets more work in flight.
    """

    client: Any
    minimum: int = 1
    gpu_resources: bool = False

    def __post_init__(self) -> None:
        self._count = self.minimum
        self._checked = -1e9

    @property
    def workers(self) -> int:
        if time.monotonic() - self._checked > 5.0:
            self._checked = time.monotonic()
            # Keep the last count if the scheduler does not answer.
            with contextlib.suppress(Exception):
                self._count = max(self.minimum, sum(self.client.nthreads().values()))
        return self._count

    def submit(self, fn: Callable[..., T], *args: Any) -> Any:
        kwargs: dict[str, Any] = {"pure": False}
        if self.gpu_resources:
            kwargs["resources"] = {"GPU": 1}
        return self.client.submit(fn, *args, **kwargs)

    def share(self, obj: Any) -> Any:
        """Send ``obj`` to every worker once; pass the handle to :func:`drive`."""
        return self.client.scatter(obj, broadcast=True, hash=False)

    def wait_first(self, futures: list[Any]) -> set[Any]:
        from distributed import wait  # noqa: PLC0415 - optional extra

        done, _ = wait(futures, return_when="FIRST_COMPLETED")
        return set(done)

    def lost(self, exc: BaseException) -> str | None:
        """The ways ``dask.distributed`` fails when workers die (or its scheduler does)."""
        from distributed import KilledWorker  # noqa: PLC0415 - optional extra
        from distributed.comm import CommClosedError  # noqa: PLC0415 - optional extra
        from distributed.scheduler import NoValidWorkerError  # noqa: PLC0415 - optional extra

        if isinstance(exc, KilledWorker):
            times = exc.allowed_failures + 1
            again = f", {times} times in a row" if times > 1 else ""
            return f"the worker running a task died (out of memory, or killed){again}"
        if isinstance(exc, CommClosedError):
            return (
                "the dask cluster closed the connection (its workers died or were killed, "
                "or its scheduler stopped)"
            )
        if isinstance(exc, CancelledError):
            return (
                "the dask scheduler cancelled the tasks, because data they needed was lost "
                "with the workers that held it (they died or were killed)"
            )
        if isinstance(exc, NoValidWorkerError) or (
            isinstance(exc, TimeoutError) and "No valid workers" in str(exc)
        ):
            return "no dask worker was left to run them"
        return None


@contextlib.contextmanager
def open_executor(
    spec: SchedulerSpec,
    *,
    device: str = "auto",
    cluster: Any = None,
    cluster_workers: int = 1,
    cluster_gpus: bool = False,
) -> Iterator[Executor]:
    """Start (or connect to) what ``spec`` names; shut down what was started on exit.

    Parameters
    ----------
    spec
        A parsed ``--scheduler`` (not ``threads``: that runs in this process).
    device
        The requested ``--device`` (sizes ``local``/``processes`` pools on GPU machines).
    cluster, cluster_workers, cluster_gpus
        An already created dask cluster object (``--cluster slurm``; ``spec`` is then
        ignored and a client is connected to it), how many workers it was asked for (its
        jobs start later) and whether they offer ``GPU`` resources.
    """
    if cluster is not None:
        yield from _client(cluster, minimum=cluster_workers, gpu=cluster_gpus)
        return
    if spec.kind == "processes":
        with _process_pool(spec, device) as pool:
            yield pool
        return
    if spec.kind == "local":
        with _local_cluster(spec, device) as local:
            yield from _client(local)
        return
    if spec.kind == "address":
        yield from _client(spec.address)
        return
    raise ValueError(f"open_executor does not run {spec.kind!r}")  # pragma: no cover


@contextlib.contextmanager
def _process_pool(spec: SchedulerSpec, device: str) -> Iterator[_PoolExecutor]:
    """A pool of spawned worker processes, numbered, each with its share of the cores."""
    workers = default_workers(spec, device)
    # spawn: forking a process that already runs torch threads can deadlock.
    context = multiprocessing.get_context("spawn")
    numbers = context.Queue()
    for i in range(workers):
        numbers.put(i)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_worker_setup,
        initargs=(torch_threads(workers), numbers),
    )
    try:
        yield _PoolExecutor(pool, workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_setup(threads: int, numbers: Any) -> None:
    """Process-pool initialiser: fixed torch threads before any work arrives, and a
    worker number (so that workers on a multi-GPU machine take different GPUs).

    Workers ignore SIGINT: a terminal's Ctrl-C reaches the whole process group, and only the
    main process stops the run (it cancels queued batches and lets running ones finish).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global POOL_INDEX
    POOL_INDEX = int(numbers.get())
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _local_cluster(spec: SchedulerSpec, device: str) -> Iterator[Any]:
    """A ``LocalCluster`` (a ``LocalCUDACluster`` on GPUs with dask-cuda installed)."""
    _require_distributed()
    from distributed import LocalCluster  # noqa: PLC0415 - optional extra

    workers = default_workers(spec, device)
    gpus = cuda_count() if device == "auto" or device.startswith("cuda") else 0
    options: dict[str, Any] = {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": None,
    }
    if gpus:
        options["resources"] = {"GPU": 1}
    # Each worker process runs torch with its share of the cores; dask must not also
    # spread numpy/BLAS over all of them.
    threads = torch_threads(workers)
    env = {"OMP_NUM_THREADS": str(threads), "STITCHSAFE_TORCH_THREADS": str(threads)}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        if gpus:
            with contextlib.suppress(ImportError):
                from dask_cuda import LocalCUDACluster  # noqa: PLC0415 - optional extra

                options.pop("threads_per_worker")
                cuda_cluster = LocalCUDACluster(**options)
                try:
                    yield cuda_cluster
                finally:
                    cuda_cluster.close()
                return
        cluster = LocalCluster(**options)
        try:
            yield cluster
        finally:
            cluster.close()


def _client(target: Any, minimum: int = 1, gpu: bool | None = None) -> Iterator[Executor]:
    """A client of ``target`` (a cluster or an address) as an executor, closed afterwards.

    ``gpu=None``: tasks ask for a ``GPU`` when every worker offers one.
    """
    _require_distributed()
    from distributed import Client  # noqa: PLC0415 - optional extra

    # How long to keep trying: dask's connect timeout (30 s unless configured, e.g. by
    # DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=60s for a scheduler still starting).
    timeout = dask.config.get("distributed.comm.timeouts.connect", "30s")
    try:
        client = Client(target, timeout=timeout)
    except OSError as exc:
        raise StitchsafeError(
            f"could not reach the dask scheduler at {target} ({exc}); check the address "
            "and that the scheduler is running."
        ) from None
    try:
        info = client.scheduler_info()
        workers = info.get("workers", {})
        if gpu is None:
            gpu = bool(workers) and all(
                w.get("resources", {}).get("GPU", 0) >= 1 for w in workers.values()
            )
        with _quiet_client():
            yield _DaskExecutor(client, minimum=minimum, gpu_resources=gpu)
    finally:
        client.close()


@contextlib.contextmanager
def _quiet_client() -> Iterator[None]:
    """No warnings from dask's client while stitchsafe drives it (``Couldn't gather keys,
    rescheduling`` when a worker dies): :func:`drive` reports lost workers itself, in one
    paragraph. Its errors still show."""
    logger = logging.getLogger("distributed.client")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401, PLC0415 - optional extra
    except ImportError:
        raise StitchsafeError(
            "this scheduler needs dask.distributed: pip install 'stitchsafe[distributed]'."
        ) from None
