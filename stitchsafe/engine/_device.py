"""Device and precision: which device runs, how many tiles fit it, and the forward's context."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..errors import StitchsafeError
from ..geometry import ModelGeometry

if TYPE_CHECKING:
    from ..models import LoadedModel

__all__ = [
    "PRECISIONS",
    "auto_batch_size",
    "check_precision",
    "cpu_count",
    "default_max_input_voxels",
    "forward_context",
    "resolve_device",
]

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU.

    >>> str(resolve_device("cpu"))
    'cpu'
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise StitchsafeError(
            f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StitchsafeError(
            f"--device {device} was requested but no CUDA device is available here; "
            "use --device cpu (or auto)."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise StitchsafeError(
            f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible."
        )
    if dev.type == "cuda":
        # TF32 convolutions and matmuls err by ~1e-3 relative, ten times the exactness
        # tolerance; float32 inference must really be float32.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return dev


def default_max_input_voxels(
    model: LoadedModel, geometry: ModelGeometry, device: torch.device
) -> int:
    """Input voxels per tile that fit the device's memory budget.

    On CUDA the per-voxel cost is measured with one forward pass at a small valid size
    and the budget is half of the free memory. On the CPU a fixed budget keeps host memory
    modest (about 2 M input voxels per tile).
    """
    cpu_budget = 2**21
    if device.type != "cuda":
        return cpu_budget
    shape = geometry.input_for_output(geometry.period)
    x = torch.zeros((1, geometry.channels_in, *shape), device=device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    model(x)
    torch.cuda.synchronize(device)
    per_voxel = max(1.0, (torch.cuda.max_memory_allocated(device) - base) / math.prod(shape))
    free, _ = torch.cuda.mem_get_info(device)
    return max(math.prod(shape), int(0.5 * free / per_voxel))


def auto_batch_size(
    budget_voxels: int, read_shape: Sequence[int], tiles: int, *, cap: int = 32
) -> int:
    """Tiles per forward that fit ``budget_voxels`` input voxels (1 to ``cap``, <= ``tiles``).

    With the default tile shape one tile already fills the budget, so this is 1; smaller
    tiles (``--tile-shape``) are batched until the batch fills it.

    >>> auto_batch_size(2**21, (44, 108, 108), 100)
    4
    >>> auto_batch_size(2**21, (200, 200, 200), 100), auto_batch_size(2**30, (8, 8), 3)
    (1, 3)
    """
    return max(1, min(cap, tiles, budget_voxels // math.prod(read_shape)))


def check_precision(precision: str) -> str:
    """``fp32``, ``bf16`` or ``fp16``, else StitchsafeError.

    >>> check_precision("bf16")
    'bf16'
    """
    if precision not in PRECISIONS:
        raise StitchsafeError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
    return precision


def forward_context(precision: str, device: torch.device) -> Any:
    """Autocast for ``bf16``/``fp16``, nothing for ``fp32`` (no gradients either way).

    Reduced precision is not exact: stitched results then match a whole-volume pass only
    to about 1e-2 relative, because convolutions of different sizes round differently.
    """
    check_precision(precision)
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if precision != "fp32":
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        stack.enter_context(torch.autocast(device_type=device.type, dtype=dtype))
    return stack


def cpu_count() -> int:
    """The CPU cores this process may run on (its affinity mask where there is one).

    >>> cpu_count() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
