"""Execute a tile plan: dask tasks of batched tiles -> device -> crop -> chunk-aligned writes.

One task is one batch of tiles. Reading, padding and writing run in dask's thread pool;
the forward pass itself is serialised by a lock because there is one device (several
concurrent forwards on one device only fight over it). While one batch is on the device,
other tasks read their tiles and write their results, so I/O overlaps compute.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import StitchsafeError
from .geometry import ModelGeometry, Plan, Tile

if TYPE_CHECKING:
    import torch

    from .io import OutputSpec, Volume
    from .model import LoadedModel


# The modes predict offers (padding.pad_indices supports more).
PAD_MODES = ("reflect", "constant", "edge")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU.

    >>> str(resolve_device("cpu"))
    'cpu'
    """
    import torch

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
    import torch

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


@dataclass(frozen=True)
class RunStats:
    """What a run did."""

    tiles: int
    batches: int
    seconds: float
    device: str


def _batches(tiles: Iterable[Tile], batch_size: int) -> list[list[Tile]]:
    """Group tiles into batches of ``batch_size``, keeping plan order."""
    out: list[list[Tile]] = []
    for t in tiles:
        if not out or len(out[-1]) == batch_size:
            out.append([])
        out[-1].append(t)
    return out


def run_plan(
    volume: Volume,
    model: LoadedModel,
    plan: Plan,
    output: OutputSpec,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    pad_mode: str = "reflect",
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    tiles: Sequence[Tile] | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> RunStats:
    """Run every tile of ``plan`` (or the given ``tiles``) and write the crops to ``output``.

    Parameters
    ----------
    volume
        The opened input volume.
    model
        The loaded model, already on ``device``.
    plan
        The tile plan (its tiles' write boxes are the output chunks).
    output
        Where :func:`stitchsafe.io.prepare_output` put the embeddings array.
    transform
        Intensity normalisation computed once for the whole volume; applied before padding.
    pad_mode
        ``numpy.pad`` mode applied (conceptually) to the whole volume.
    batch_size
        Tiles per forward pass.
    tiles
        A subset of tiles (default: all of the plan).
    num_workers
        dask threads (default: the CPU count, at least 2 so I/O overlaps compute).
    progress
        Show a tqdm bar on stderr.
    """
    import dask
    import torch
    from tqdm.auto import tqdm

    from .io import read_padded, write_block

    if pad_mode not in PAD_MODES:
        raise StitchsafeError(f"--pad-mode {pad_mode!r} is not one of {', '.join(PAD_MODES)}.")
    if batch_size < 1:
        raise StitchsafeError(f"--batch-size must be at least 1, got {batch_size}.")
    dev = torch.device(device)
    work = list(plan) if tiles is None else list(tiles)
    batches = _batches(work, batch_size)
    device_lock = threading.Lock()
    bar = tqdm(total=len(work), desc="tiles", unit="tile", disable=not progress, leave=False)
    bar_lock = threading.Lock()

    def run_batch(batch: list[Tile]) -> int:
        x = np.stack(
            [read_padded(volume, t.read, mode=pad_mode, transform=transform) for t in batch]
        )
        with device_lock:
            xt = torch.from_numpy(x).to(dev, non_blocking=True)
            y = model(xt).float().cpu().numpy()
        for t, yt in zip(batch, y):
            write_block(output, t.write, yt[(slice(None), *t.crop.to_slices())])
        with bar_lock:
            bar.update(len(batch))
        return len(batch)

    start = time.perf_counter()
    tasks = [dask.delayed(run_batch, pure=False)(b) for b in batches]
    workers = num_workers or max(2, _cpu_count())
    try:
        dask.compute(*tasks, scheduler="threads", num_workers=workers)
    finally:
        bar.close()
    return RunStats(
        tiles=len(work),
        batches=len(batches),
        seconds=time.perf_counter() - start,
        device=str(dev),
    )


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def whole_volume_forward(
    data: np.ndarray,
    model: LoadedModel,
    geometry: ModelGeometry,
    *,
    pad_mode: str = "reflect",
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The oracle: one forward pass over the whole padded volume, cropped back.

    ``data`` is ``(C, *spatial)``. The volume is padded with ``numpy.pad(..., mode=pad_mode)``
    by the halo before and enough after to reach a valid input size; the raw output then
    starts at voxel 0 of the volume and is cropped to its shape.
    """
    import torch

    x = data.astype(np.float32)
    if transform is not None:
        x = transform(x)
    spatial = x.shape[1:]
    need = geometry.input_for_output(spatial)
    widths = [(0, 0)] + [(lo, n - v - lo) for v, n, lo in zip(spatial, need, geometry.halo_lo)]
    kwargs: dict[str, Any] = {"constant_values": 0} if pad_mode == "constant" else {}
    xp = np.pad(x, widths, mode=pad_mode, **kwargs)  # type: ignore[call-overload]
    y = model(torch.from_numpy(xp[None]).to(device)).float().cpu().numpy()[0]
    return y[(slice(None), *(slice(0, v) for v in spatial))]
