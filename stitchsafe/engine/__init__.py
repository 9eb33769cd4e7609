"""Running a plan: device and precision, the pipelined tile engine (:func:`run_plan`), the
whole-volume oracle (:func:`whole_volume_forward`), global intensity normalisation, the run
settings, schedulers and executors, tile tasks for worker processes, a run as a lazy dask
array, and SLURM clusters.
The modules inside are private; import from here.
"""

from __future__ import annotations

from ..io import PAD_MODES
from ._batch_io import read_batch, write_batch
from ._device import (
    PRECISIONS,
    auto_batch_size,
    check_precision,
    cpu_count,
    default_max_input_voxels,
    forward_context,
    resolve_device,
)
from ._drive import WorkersLost, drive
from ._executors import Executor, open_executor
from ._lazy import TileBlocks, lazy_output, plan_chunks
from ._normalize import METHODS, Normalization, compute_normalization, sample_boxes
from ._oracle import whole_volume_forward
from ._pipeline import run_plan
from ._run import PipelineOptions, RunStats
from ._schedulers import KINDS, SchedulerSpec, default_workers, parse_scheduler, torch_threads
from ._settings import EMBEDDING_DTYPES, RunSettings
from ._slurm import SlurmOptions, cluster_kwargs, job_script, load_cluster_config, make_cluster
from ._tile_tasks import (
    TileJob,
    run_batch,
    run_plan_distributed,
    tile_output,
    worker_device,
    worker_index,
)

__all__ = [
    "EMBEDDING_DTYPES",
    "Executor",
    "KINDS",
    "METHODS",
    "Normalization",
    "PAD_MODES",
    "PRECISIONS",
    "PipelineOptions",
    "RunSettings",
    "RunStats",
    "SchedulerSpec",
    "SlurmOptions",
    "TileBlocks",
    "TileJob",
    "WorkersLost",
    "auto_batch_size",
    "check_precision",
    "cluster_kwargs",
    "compute_normalization",
    "cpu_count",
    "default_max_input_voxels",
    "default_workers",
    "drive",
    "forward_context",
    "job_script",
    "lazy_output",
    "load_cluster_config",
    "make_cluster",
    "open_executor",
    "parse_scheduler",
    "plan_chunks",
    "read_batch",
    "resolve_device",
    "run_batch",
    "run_plan",
    "run_plan_distributed",
    "sample_boxes",
    "tile_output",
    "torch_threads",
    "whole_volume_forward",
    "worker_device",
    "worker_index",
    "write_batch",
]
