"""What ``--scheduler`` names, parsed once, and how many workers it gets.

``--scheduler`` takes

- ``threads`` (default): the pipelined engine in this process (:func:`run_plan`);
- ``processes``: a pool of ``N`` worker processes on this machine (one per GPU on CUDA,
  else half the CPU cores), each loading the model once;
- ``local`` or ``local:N``: a ``dask.distributed`` ``LocalCluster`` of ``N`` worker
  processes on 127.0.0.1 (with ``dask-cuda`` installed and CUDA requested, a
  ``LocalCUDACluster``: one worker per GPU);
- ``tcp://host:port``: a running dask scheduler (workers started by you, by a batch
  system or by ``--cluster slurm``).

Starting what it names is :func:`open_executor`'s job; feeding it work, :func:`drive`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import StitchsafeError
from ._device import cpu_count

__all__ = [
    "KINDS",
    "SchedulerSpec",
    "cuda_count",
    "default_workers",
    "parse_scheduler",
    "torch_threads",
]

KINDS = ("threads", "processes", "local", "address")
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
        """The value as ``--scheduler`` takes it (the address for ``address``)."""
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


def cuda_count() -> int:
    """CUDA devices visible here (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_workers(spec: SchedulerSpec, device: str) -> int:
    """Worker processes for ``processes``/``local`` without ``:N``.

    One per GPU when CUDA is requested (or ``auto`` finds it), else half the CPU cores
    (at least one): each worker runs torch with the other cores' share of threads.
    """
    if spec.workers is not None:
        return spec.workers
    gpus = cuda_count() if device == "auto" or device.startswith("cuda") else 0
    return gpus if gpus else max(1, cpu_count() // 2)


def torch_threads(workers_on_host: int) -> int:
    """Torch threads per worker so that the host's cores are shared, not oversubscribed.

    >>> torch_threads(10**6) >= 1
    True
    """
    return max(1, cpu_count() // max(1, workers_on_host))
