"""``--cluster slurm``: dask workers as SLURM batch jobs, through ``dask-jobqueue``.

Each job asks for ``gpus`` GPUs (``--gres=gpu:N``), ``cores`` CPUs, ``memory`` and a
``walltime`` on a ``queue`` (partition), and starts one dask worker per GPU (or one worker
for a CPU job) that offers a ``GPU`` resource, so that every tile batch runs on exactly one
GPU. Anything else ``dask_jobqueue.SLURMCluster`` accepts (``interface`` for the
scheduler's network, ``job_script_prologue`` to load modules or activate an environment,
``account``, ``log_directory``...) comes from ``--cluster-config FILE`` (YAML or JSON).

Workers need the model, the input and the output on a shared file system, and the same
Python environment as the client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import StitchsafeError

__all__ = ["SlurmOptions", "cluster_kwargs", "job_script", "load_cluster_config", "make_cluster"]


@dataclass(frozen=True)
class SlurmOptions:
    """What ``--cluster slurm`` asks of SLURM (per job), with ``jobs`` jobs in all.

    Examples
    --------
    >>> o = SlurmOptions(jobs=2, gpus=2, cores=8, memory="64GB")
    >>> o.workers_per_job, o.threads_per_worker, o.workers
    (2, 4, 4)
    """

    jobs: int = 1
    gpus: int = 1
    cores: int = 8
    memory: str = "32GB"
    walltime: str = "04:00:00"
    queue: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise StitchsafeError(f"--cluster-jobs must be at least 1, got {self.jobs}.")
        if self.gpus < 0:
            raise StitchsafeError(f"--cluster-gpus must be 0 or more, got {self.gpus}.")
        if self.cores < max(1, self.gpus):
            raise StitchsafeError(
                f"--cluster-cores {self.cores} must be at least one per worker "
                f"({max(1, self.gpus)} worker(s) per job, one per GPU)."
            )

    @property
    def workers_per_job(self) -> int:
        """One worker per GPU; one worker for a CPU-only job."""
        return max(1, self.gpus)

    @property
    def threads_per_worker(self) -> int:
        return max(1, self.cores // self.workers_per_job)

    @property
    def workers(self) -> int:
        """Workers once every job runs."""
        return self.jobs * self.workers_per_job


def load_cluster_config(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``SLURMCluster`` keyword arguments from a YAML or JSON file (``{}`` for ``None``)."""
    if path is None:
        return {}
    import yaml  # noqa: PLC0415 - only for --cluster-config

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise StitchsafeError(f"--cluster-config {os.fspath(path)!r}: {exc.strerror}.") from None
    except yaml.YAMLError as exc:
        raise StitchsafeError(
            f"--cluster-config {os.fspath(path)!r} is not valid YAML or JSON ({exc})."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise StitchsafeError(
            f"--cluster-config {os.fspath(path)!r} must hold a mapping of SLURMCluster "
            "options, e.g. `interface: ib0` or `job_script_prologue: [module load cuda]`."
        )
    return data


def cluster_kwargs(options: SlurmOptions) -> dict[str, Any]:
    """Keyword arguments for ``dask_jobqueue.SLURMCluster`` (pure; no cluster started).

    ``options.extra`` (the config file) wins over the flags, except that the GPU request
    and the worker resources are merged rather than replaced.
    """
    # A GPU worker runs one batch at a time (its one GPU resource) with torch using the
    # worker's share of the cores; a CPU worker runs one batch per thread, torch on one.
    per_worker = options.threads_per_worker if options.gpus else 1
    directives: list[str] = []
    worker_args: list[str] = []
    if options.gpus:
        directives.append(f"--gres=gpu:{options.gpus}")
        worker_args += ["--resources", "GPU=1"]
    prologue = [
        # torch in each worker uses its share of the job's cores, no more.
        f"export STITCHSAFE_TORCH_THREADS={per_worker}",
        f"export OMP_NUM_THREADS={per_worker}",
    ]
    kwargs: dict[str, Any] = {
        "cores": options.cores,
        "processes": options.workers_per_job,
        "memory": options.memory,
        "walltime": options.walltime,
        "job_name": "stitchsafe",
        "job_extra_directives": directives,
        "worker_extra_args": worker_args,
        "job_script_prologue": prologue,
        "scheduler_options": {"dashboard_address": None},
    }
    if options.queue:
        kwargs["queue"] = options.queue
    extra = dict(options.extra)
    for key in ("job_extra_directives", "worker_extra_args", "job_script_prologue"):
        if key in extra:
            kwargs[key] = [*kwargs[key], *_as_list(extra.pop(key), key)]
    if "scheduler_options" in extra:
        kwargs["scheduler_options"] = {
            **kwargs["scheduler_options"],
            **extra.pop("scheduler_options"),
        }
    kwargs.update(extra)
    return kwargs


def _as_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise StitchsafeError(f"--cluster-config: {key} must be a string or a list of strings.")


def make_cluster(options: SlurmOptions) -> Any:
    """A ``SLURMCluster`` (its scheduler runs in this process; no job submitted yet)."""
    try:
        from dask_jobqueue import SLURMCluster  # noqa: PLC0415 - optional extra
    except ImportError:
        raise StitchsafeError(
            "--cluster slurm needs dask-jobqueue: pip install 'stitchsafe[distributed]'."
        ) from None
    try:
        return SLURMCluster(**cluster_kwargs(options))
    except TypeError as exc:
        raise StitchsafeError(
            f"--cluster-config holds an option SLURMCluster rejects: {exc}."
        ) from None


def job_script(options: SlurmOptions) -> str:
    """The batch script each SLURM job runs (what ``--print-job-script`` shows)."""
    cluster = make_cluster(options)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()
