"""Execute a tile plan: a bounded pipeline of batched tiles -> device -> crop -> writes.

Three stages run at once, so the device never waits for the disk:

1. **read** — a thread pool reads and pads the next batches (up to ``prefetch`` ahead)
   and normalises them; on CUDA into pinned host memory so that the copy to the device
   does not block.
2. **compute** — one thread (the caller's) owns the device: it copies a batch in, runs
   the forward pass (optionally under ``bf16``/``fp16`` autocast), and starts the copy
   of the result back into pinned memory without waiting for it.
3. **write** — another pool waits for each result, crops it, casts it to the output
   type and writes whole chunks (compression runs here, in parallel).

Both queues are bounded (``prefetch`` batches read ahead, ``prefetch`` results waiting to
be written), so host memory stays flat however large the volume is. The first error in
any stage stops the pipeline and is raised in the caller.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class RunStats:
    """What a run did."""

    tiles: int
    batches: int
    seconds: float
    device: str
    compute_seconds: float = 0.0


def _batches(tiles: Iterable[Tile], batch_size: int) -> Iterator[list[Tile]]:
    """Group tiles into batches of ``batch_size``, keeping plan order (lazily: a plan of
    millions of tiles is never held in memory at once).

    >>> list(_batches(range(7), 3))
    [[0, 1, 2], [3, 4, 5], [6]]
    """
    it = iter(tiles)
    while batch := list(itertools.islice(it, batch_size)):
        yield batch


def check_precision(precision: str) -> str:
    """``fp32``, ``bf16`` or ``fp16``, else StitchsafeError."""
    if precision not in PRECISIONS:
        raise StitchsafeError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
    return precision


def forward_context(precision: str, device: torch.device) -> Any:
    """Autocast for ``bf16``/``fp16``, nothing for ``fp32`` (no gradients either way).

    Reduced precision is not exact: stitched results then match a whole-volume pass only
    to about 1e-2 relative, because convolutions of different sizes round differently.
    """
    import contextlib

    import torch

    check_precision(precision)
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if precision != "fp32":
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        stack.enter_context(torch.autocast(device_type=device.type, dtype=dtype))
    return stack


def run_plan(
    volume: Volume,
    model: LoadedModel,
    plan: Plan,
    output: OutputSpec | None,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    pad_mode: str = "reflect",
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    tiles: Sequence[Tile] | None = None,
    num_workers: int | None = None,
    precision: str = "fp32",
    prefetch: int | None = None,
    on_done: Callable[[list[Tile]], None] | None = None,
    progress: bool = True,
    cpu_streams: int | None = None,
    sink: Callable[[list[Tile], np.ndarray], None] | None = None,
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
        Where :func:`stitchsafe.io.prepare_output` put the embeddings array; results are
        cast to its dtype.
    transform
        Intensity normalisation computed once for the whole volume; applied before padding.
    pad_mode
        ``numpy.pad`` mode applied (conceptually) to the whole volume.
    batch_size
        Tiles per forward pass.
    tiles
        A subset of tiles (default: all of the plan).
    num_workers
        Threads for each of the read and write stages (default: the CPU count, at least 2).
    precision
        ``fp32`` (exact), ``bf16`` or ``fp16`` (autocast; see :func:`forward_context`).
    prefetch
        Batches read ahead, and results waiting to be written (default: ``num_workers``).
    on_done
        Called in the caller's thread with each batch's tiles once all their chunks are
        written (the resume bookkeeping, :mod:`stitchsafe.resume`).
    progress
        Show a tqdm bar on stderr.
    cpu_streams
        On the CPU: batches computed at once, each on its own thread with torch using
        ``cores // cpu_streams`` threads (default: one stream per core; see
        :func:`_run_cpu_streams`). ``1`` gives the single-stream pipeline with torch's
        own thread pool.
    sink
        Called (on a writer thread) with each batch's tiles and raw float32 outputs
        ``(N, C, *raw)`` instead of writing crops to ``output`` (which may then be
        ``None``): labels-only runs (:mod:`stitchsafe.labels_only`).
    """
    import torch
    from tqdm.auto import tqdm

    if pad_mode not in PAD_MODES:
        raise StitchsafeError(f"--pad-mode {pad_mode!r} is not one of {', '.join(PAD_MODES)}.")
    if batch_size < 1:
        raise StitchsafeError(f"--batch-size must be at least 1, got {batch_size}.")
    check_precision(precision)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if cuda:
        # One fixed tile shape for the whole run: let cuDNN pick its fastest algorithms.
        torch.backends.cudnn.benchmark = True
    work: Sequence[Tile] = plan if tiles is None else tiles  # type: ignore[assignment]
    batch_count = -(-len(work) // batch_size)
    workers = num_workers or max(2, _cpu_count())
    ahead = max(1, prefetch or workers)
    if sink is None:
        if output is None:
            raise ValueError("run_plan needs an output or a sink")
        out_dtype = np.dtype(_output_dtype(output))
        sink = functools.partial(write_batch, output, dtype=out_dtype)
    bar = tqdm(total=len(work), desc="tiles", unit="tile", disable=not progress, leave=False)
    bar_lock = threading.Lock()
    streams = 1 if cuda else min(cpu_streams or _cpu_count(), batch_count)
    if streams > 1:
        try:
            return _run_cpu_streams(
                volume,
                model,
                work,
                output,
                transform=transform,
                pad_mode=pad_mode,
                batch_size=batch_size,
                streams=streams,
                readers=workers,
                ahead=ahead,
                precision=precision,
                on_done=on_done,
                bar=bar,
                sink=sink,
            )
        finally:
            bar.close()

    def read(batch: list[Tile]) -> torch.Tensor:
        xt = torch.from_numpy(read_batch(volume, batch, pad_mode=pad_mode, transform=transform))
        return xt.pin_memory() if cuda else xt

    def write(batch: list[Tile], y: torch.Tensor, done: Any) -> None:
        if done is not None:
            done.synchronize()  # the device-to-host copy has landed
        sink(batch, y.numpy())
        with bar_lock:
            bar.update(len(batch))

    start = time.perf_counter()
    compute = 0.0
    readers = ThreadPoolExecutor(workers, thread_name_prefix="stitchsafe-read")
    writers = ThreadPoolExecutor(workers, thread_name_prefix="stitchsafe-write")
    reads: deque[tuple[list[Tile], Future[torch.Tensor]]] = deque()
    writes: deque[tuple[list[Tile], Future[None]]] = deque()

    def finish_oldest() -> None:
        batch, future = writes.popleft()
        future.result()
        if on_done is not None:
            on_done(batch)

    try:
        queued = _batches(work, batch_size)
        for batch in itertools.islice(queued, ahead):
            reads.append((batch, readers.submit(read, batch)))
        with forward_context(precision, dev):
            while reads:
                batch, reading = reads.popleft()
                x = reading.result()
                following = next(queued, None)
                if following is not None:
                    reads.append((following, readers.submit(read, following)))
                tick = time.perf_counter()
                y = model(x.to(dev, non_blocking=True))
                if cuda:
                    host = torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
                    host.copy_(y, non_blocking=True)
                    done: Any = torch.cuda.Event()
                    done.record()
                else:
                    host, done = y.float(), None
                compute += time.perf_counter() - tick
                while len(writes) >= ahead:
                    finish_oldest()  # bounded: wait for the oldest write
                writes.append((batch, writers.submit(write, batch, host, done)))
        while writes:
            finish_oldest()
    finally:
        for _, pending in reads:
            pending.cancel()
        for _, waiting in writes:
            waiting.cancel()
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return RunStats(
        tiles=len(work),
        batches=batch_count,
        seconds=time.perf_counter() - start,
        device=str(dev),
        compute_seconds=compute,
    )


def _run_cpu_streams(
    volume: Volume,
    model: LoadedModel,
    work: Sequence[Tile],
    output: OutputSpec | None,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None,
    pad_mode: str,
    batch_size: int,
    streams: int,
    readers: int,
    ahead: int,
    precision: str,
    on_done: Callable[[list[Tile]], None] | None,
    bar: Any,
    sink: Callable[[list[Tile], np.ndarray], None],
) -> RunStats:
    """The CPU pipeline: ``streams`` batches in flight, each forward on its own thread.

    Why: torch's intra-op threads meet at a barrier after every operation, so when read or
    write threads take a core from one of them, all wait — on 2 cores the single-stream
    pipeline reached only 0.63 of the tight-loop forward speed. Independent streams with
    ``cores // streams`` torch threads each never wait for one another (the forward
    releases the GIL), and each stream crops and writes its own batch, so the cores are
    shared by whichever stage has work. Results equal the single-stream pipeline's to
    float rounding (convolution sums run in an order that depends on the thread count).
    Reads run ahead on their own pool, ``ahead`` batches at most.
    """
    import torch

    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, previous_threads // streams))
    device = torch.device("cpu")
    busy = [0.0]
    lock = threading.Lock()

    def run(batch: list[Tile], reading: Future[torch.Tensor]) -> list[Tile]:
        x = reading.result()
        tick = time.perf_counter()
        with forward_context(precision, device):  # thread-local: entered per stream
            y = model(x).float()
        elapsed = time.perf_counter() - tick
        sink(batch, y.numpy())
        with lock:
            busy[0] += elapsed
            bar.update(len(batch))
        return batch

    def read(batch: list[Tile]) -> torch.Tensor:
        return torch.from_numpy(read_batch(volume, batch, pad_mode=pad_mode, transform=transform))

    pool_read = ThreadPoolExecutor(readers, thread_name_prefix="stitchsafe-read")
    pool_run = ThreadPoolExecutor(streams, thread_name_prefix="stitchsafe-compute")
    running: deque[Future[list[Tile]]] = deque()
    try:
        for batch in _batches(work, batch_size):
            while len(running) >= streams + ahead:
                finished = running.popleft().result()  # bounded: wait for the oldest
                if on_done is not None:
                    on_done(finished)
            running.append(pool_run.submit(run, batch, pool_read.submit(read, batch)))
        while running:
            finished = running.popleft().result()
            if on_done is not None:
                on_done(finished)
    finally:
        for pending in running:
            pending.cancel()
        pool_run.shutdown(wait=True, cancel_futures=True)
        pool_read.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(previous_threads)
    return RunStats(
        tiles=len(work),
        batches=-(-len(work) // batch_size),
        seconds=time.perf_counter() - start,
        device="cpu",
        compute_seconds=busy[0] / streams,
    )


def read_batch(
    volume: Volume,
    tiles: Sequence[Tile],
    *,
    pad_mode: str,
    transform: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """The tiles' padded, normalised input boxes stacked as one ``(N, C, *read)`` batch."""
    from .io import read_padded

    return np.stack(
        [read_padded(volume, t.read, mode=pad_mode, transform=transform) for t in tiles]
    )


def write_batch(output: OutputSpec, tiles: Sequence[Tile], y: np.ndarray, dtype: Any) -> None:
    """Crop each tile's raw output ``y[i]`` and write it, cast to ``dtype``, as whole chunks."""
    from .io import write_block

    for t, yt in zip(tiles, y):
        crop = yt[(slice(None), *t.crop.to_slices())]
        write_block(output, t.write, crop.astype(dtype, copy=False))


def _output_dtype(output: OutputSpec) -> Any:
    from .output import _output_array

    return _output_array(output).dtype


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
