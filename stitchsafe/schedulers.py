"""Where the work runs: threads, worker processes, or a dask.distributed cluster.

``--scheduler`` takes

- ``threads`` (default): the pipelined engine in this process (:func:`engine.run_plan`);
- ``processes``: a pool of ``N`` worker processes on this machine (one per GPU on CUDA,
  else half the CPU cores), each loading the model once;
- ``local`` or ``local:N``: a ``dask.distributed`` ``LocalCluster`` of ``N`` worker
  processes on 127.0.0.1 (with ``dask-cuda`` installed and CUDA requested, a
  ``LocalCUDACluster``: one worker per GPU);
- ``tcp://host:port``: a running dask scheduler (workers started by you, by a batch
  system or by ``--cluster slurm``).

Work is submitted as one future per batch of tiles (or blocks), at most a few per worker
in flight, so millions of tiles cost neither client memory nor scheduler time; progress is
driven by completed futures on every scheduler. This module owns only *where* and *how
many*; what a task does lives in :mod:`stitchsafe.tile_tasks` and
:mod:`stitchsafe.blockwise`.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .engine import _cpu_count
from .errors import StitchsafeError

__all__ = [
    "Executor",
    "SchedulerSpec",
    "drive",
    "open_executor",
    "parse_scheduler",
]

T = TypeVar("T")
W = TypeVar("W")

KINDS = ("threads", "processes", "local", "address")
_NOTHING: Any = object()
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/]+(:\d+)?/?$")


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed ``--scheduler`` value.

    Examples
    --------
    >>> parse_scheduler("local:4")
    SchedulerSpec(kind='local', workers=4, address=None)
    >>> parse_scheduler("tcp://10.0.0.5:8786").address
    'tcp://10.0.0.5:8786'
    >>> parse_scheduler("threads").distributed
    False
    """

    kind: str
    workers: int | None = None
    address: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether the work leaves this process (anything but ``threads``)."""
        return self.kind != "threads"

    def describe(self) -> str:
        if self.kind == "address":
            return str(self.address)
        if self.workers is None:
            return self.kind
        return f"{self.kind}:{self.workers}"


def parse_scheduler(text: str) -> SchedulerSpec:
    """``threads``, ``processes[:N]``, ``local[:N]`` or ``tcp://host:port``.

    Raises
    ------
    StitchsafeError
        For anything else, with the accepted forms.
    """
    value = text.strip()
    lowered = value.lower()
    if lowered == "threads":
        return SchedulerSpec("threads")
    if "://" in value:
        if not _ADDRESS.match(value):
            raise StitchsafeError(
                f"--scheduler {text!r} is not a scheduler address; expected e.g. "
                "tcp://10.0.0.5:8786 (what `dask scheduler` prints)."
            )
        return SchedulerSpec("address", address=value.rstrip("/"))
    name, sep, count = lowered.partition(":")
    if name in ("processes", "local"):
        if not sep:
            return SchedulerSpec(name)
        if count.isdigit() and int(count) >= 1:
            return SchedulerSpec(name, workers=int(count))
    raise StitchsafeError(
        f"--scheduler {text!r} is not understood; use threads (the default), processes, "
        "processes:N, local, local:N (a dask LocalCluster of N worker processes) or the "
        "address of a running dask scheduler (tcp://host:port)."
    )


class Executor(Protocol):
    """What :func:`drive` needs: submit a call, wait for the first of some to finish."""

    gpu_resources: bool

    @property
    def workers(self) -> int: ...

    def submit(self, fn: Callable[..., T], *args: Any) -> Any: ...

    def wait_first(self, futures: list[Any]) -> set[Any]: ...


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
        import time

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
        from distributed import wait

        done, _ = wait(futures, return_when="FIRST_COMPLETED")
        return set(done)


def drive(
    executor: Executor,
    fn: Callable[..., T],
    items: Iterable[W],
    *,
    on_result: Callable[[W, T], None],
    per_worker: int = 2,
    shared: Any = _NOTHING,
) -> None:
    """Run ``fn(item)`` for every item on ``executor``; ``on_result`` as each finishes.

    With ``shared`` (a handle from ``executor.share``), ``fn(shared, item)`` instead: the
    shared object travels to each worker once, not with every task.

    At most ``per_worker`` futures per worker are in flight (enough to keep workers busy
    while the next is shipped; few enough that client and scheduler memory stay flat for
    millions of items). ``on_result`` runs in the caller's thread, in completion order.
    The first failure cancels what is still pending and is raised.
    """
    queue = iter(items)
    pending: dict[Any, W] = {}

    def top_up() -> None:
        window = max(1, executor.workers * per_worker)
        for item in itertools.islice(queue, max(0, window - len(pending))):
            args = (item,) if shared is _NOTHING else (shared, item)
            pending[executor.submit(fn, *args)] = item

    try:
        top_up()
        while pending:
            for future in executor.wait_first(list(pending)):
                item = pending.pop(future)
                on_result(item, _result(future))
            top_up()
    finally:
        for future in pending:
            future.cancel()


def _result(future: Any) -> Any:
    """``future.result()``, with the failures of a lost worker explained."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        raise StitchsafeError(
            "a worker process died (out of memory, or killed); finished tiles are kept: "
            "rerun the same command with --resume, with a smaller --tile-shape or "
            "--batch-size if memory ran out."
        ) from None
    except Exception as exc:
        if type(exc).__name__ == "KilledWorker":
            raise StitchsafeError(
                "dask workers died repeatedly on the same task (out of memory, or killed); "
                "finished tiles are kept: rerun with --resume, with a smaller --tile-shape "
                "or --batch-size if memory ran out."
            ) from None
        raise


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_workers(spec: SchedulerSpec, device: str) -> int:
    """Worker processes for ``processes``/``local`` without ``:N``.

    One per GPU when CUDA is requested (or ``auto`` finds it), else half the CPU cores
    (at least one): each worker runs torch with the other cores' share of threads.
    """
    if spec.workers is not None:
        return spec.workers
    gpus = _cuda_count() if device == "auto" or device.startswith("cuda") else 0
    return gpus if gpus else max(1, _cpu_count() // 2)


def torch_threads(workers_on_host: int) -> int:
    """Torch threads per worker so that the host's cores are shared, not oversubscribed.

    >>> torch_threads(10**6) >= 1
    True
    """
    return max(1, _cpu_count() // max(1, workers_on_host))


POOL_INDEX: int | None = None  # this process's number in a ``processes`` pool


def _worker_setup(threads: int, numbers: Any) -> None:
    """Process-pool initialiser: fixed torch threads before any work arrives, and a
    worker number (so that workers on a multi-GPU machine take different GPUs)."""
    import torch

    global POOL_INDEX
    POOL_INDEX = int(numbers.get())
    torch.set_num_threads(threads)


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
        import multiprocessing

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
def _local_cluster(spec: SchedulerSpec, device: str) -> Iterator[Any]:
    _require_distributed()
    import dask
    from distributed import LocalCluster

    workers = default_workers(spec, device)
    gpus = _cuda_count() if device == "auto" or device.startswith("cuda") else 0
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
                from dask_cuda import LocalCUDACluster

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
    _require_distributed()
    import dask
    from distributed import Client

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
        yield _DaskExecutor(client, minimum=minimum, gpu_resources=gpu)
    finally:
        client.close()


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise StitchsafeError(
            "this scheduler needs dask.distributed: pip install 'stitchsafe[distributed]'."
        ) from None
