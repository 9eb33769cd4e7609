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
any stage stops the pipeline and is raised in the caller. On the CPU several compute
streams usually do better (:func:`run_cpu_streams`); :func:`run_plan` picks.

Stopping: whatever ends the run early — an error, Ctrl-C (``KeyboardInterrupt``) or an
exception that a caller's signal handler raises (the command line's SIGTERM) — nothing
new is submitted, what has not started is cancelled, the threads are joined (the writes
in progress finish), and every batch whose outputs were written is still reported to
``on_done``. No thread of the pipeline outlives :func:`run_plan`. A ``KeyboardInterrupt``
carries a note (``add_note``) saying how many tiles were finished.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import torch

from ..geometry import Plan, Tile
from ..io import OutputSpec, Volume
from ._batch_io import CountingSink, Sink, Transform, output_writer
from ._cpu_streams import run_cpu_streams
from ._device import cpu_count, forward_context
from ._run import PipelineOptions, Progress, RunStats, TileRun, landed, pipeline_options

if TYPE_CHECKING:
    from ..models import LoadedModel

__all__ = ["run_plan", "run_single_stream"]


def run_plan(  # noqa: PLR0913 - data, the options value and four per-run hooks
    volume: Volume,
    model: LoadedModel,
    plan: Plan,
    output: OutputSpec | None,
    *,
    options: PipelineOptions | None = None,
    transform: Transform | None = None,
    tiles: Sequence[Tile] | None = None,
    on_done: Callable[[list[Tile]], None] | None = None,
    sink: Sink | None = None,
    **keywords: Any,
) -> RunStats:
    """Run every tile of ``plan`` (or the given ``tiles``) and write the crops to ``output``.

    Parameters
    ----------
    volume
        The opened input volume.
    model
        The loaded model, already on the options' ``device``.
    plan
        The tile plan (its tiles' write boxes are the output chunks).
    output
        Where :func:`stitchsafe.io.prepare_output` put the embeddings array; results are
        cast to its dtype.
    options
        How the pipeline runs (:class:`PipelineOptions`: ``pad_mode``, ``batch_size``,
        ``device``, ``precision``, ``num_workers``, ``prefetch``, ``progress``,
        ``cpu_streams``).
    transform
        Intensity normalisation computed once for the whole volume; applied before padding.
    tiles
        A subset of tiles (default: all of the plan).
    on_done
        Called in the caller's thread with each batch's tiles once all their chunks are
        written (the resume bookkeeping, :mod:`stitchsafe.io`), also if the run stops.
    sink
        Called (on a writer thread) with each batch's tiles and raw float32 outputs
        ``(N, C, *raw)`` instead of writing crops to ``output`` (which may then be
        ``None``): labels-only runs, which count NaNs themselves (:mod:`stitchsafe.labels`).
    **keywords
        Fields of :class:`PipelineOptions`, replacing those of ``options`` (else TypeError).

    Raises
    ------
    KeyboardInterrupt
        Ctrl-C: raised once the threads are joined, with a note of the tiles finished.
    """
    opts = pipeline_options(options, keywords)
    device = torch.device(opts.device)
    if device.type == "cuda":
        # One fixed tile shape for the whole run: let cuDNN pick its fastest algorithms.
        torch.backends.cudnn.benchmark = True
    work: Sequence[Tile] = plan if tiles is None else tiles  # type: ignore[assignment]
    counted = CountingSink(output_writer(output)) if sink is None else None
    run = TileRun(volume, model, work, counted or sink, opts, transform=transform, on_done=on_done)
    with Progress(len(work), opts.progress) as bar:
        stats = _run_streams(run, device, bar, plan)
    return stats if counted is None else dataclasses.replace(stats, nonfinite=counted.total)


def _run_streams(run: TileRun, device: torch.device, bar: Progress, plan: Plan) -> RunStats:
    """Several compute streams on the CPU where the plan has batches for them, else one; a
    ``KeyboardInterrupt`` leaves with a note of the tiles finished.

    The streams (and so the torch threads of each) are sized by the plan's batches, not by
    the tiles given, and the batch holding the plan's last tile (its grid's far corner,
    last in every run order) gets all of theirs: a resumed tile runs with the threads it
    had in the full run (convolutions round differently with other thread counts).
    """
    try:
        if device.type != "cuda":
            batches = -(-len(plan) // run.options.batch_size)
            streams = min(run.options.cpu_streams or cpu_count(), batches)
            if streams > 1:
                last = tuple(g - 1 for g in plan.grid_shape)
                return run_cpu_streams(run, streams, bar, last)
        return run_single_stream(run, device, bar)
    except KeyboardInterrupt as stop:
        stop.add_note(bar.stopped())
        raise


def run_single_stream(run: TileRun, device: torch.device, bar: Progress) -> RunStats:
    """The three-stage pipeline with one compute stream, the caller's thread, on ``device``."""
    start = time.perf_counter()
    stages = _Stages(run, device, bar)
    try:
        stages.execute()
    finally:
        stages.close()
    return run.stats(time.perf_counter() - start, str(device), stages.compute)


class _Stages:
    """The read pool, the device (this thread), the write pool and the queues between them."""

    def __init__(self, run: TileRun, device: torch.device, bar: Progress) -> None:
        self.run, self.device, self.bar = run, device, bar
        self.cuda = device.type == "cuda"
        self.ahead = run.options.ahead
        self.compute = 0.0
        workers = run.options.workers
        self.readers = ThreadPoolExecutor(workers, thread_name_prefix="stitchsafe-read")
        self.writers = ThreadPoolExecutor(workers, thread_name_prefix="stitchsafe-write")
        self.reads: deque[tuple[list[Tile], Future[torch.Tensor]]] = deque()
        self.writes: deque[tuple[list[Tile], Future[None]]] = deque()

    def execute(self) -> None:
        """Read ahead, compute each batch in turn, write behind; wait for the last write."""
        queued = self.run.batches()
        for batch in itertools.islice(queued, self.ahead):
            self._start_read(batch)
        with forward_context(self.run.options.precision, self.device):
            while self.reads:
                batch, reading = self.reads.popleft()
                x = reading.result()
                following = next(queued, None)
                if following is not None:
                    self._start_read(following)
                host, landed = self._forward(x)
                while len(self.writes) >= self.ahead:
                    self._finish_oldest()  # bounded: wait for the oldest write
                self.writes.append((batch, self.writers.submit(self._write, batch, host, landed)))
        while self.writes:
            self._finish_oldest()

    def close(self) -> None:
        """Cancel what has not started, wait for what has, report the writes that landed.

        After a normal end nothing is in flight; after an early stop (an error, Ctrl-C)
        the batches whose writes finished are still reported as finished.
        """
        for _, pending in self.reads:
            pending.cancel()
        for _, waiting in self.writes:
            waiting.cancel()
        self.readers.shutdown(wait=True, cancel_futures=True)
        self.writers.shutdown(wait=True, cancel_futures=True)
        written = [batch for batch, future in self.writes if landed(future)]
        self.writes.clear()
        for batch in written:
            self.run.finished(batch)

    def _start_read(self, batch: list[Tile]) -> None:
        self.reads.append((batch, self.readers.submit(self._read, batch)))

    def _read(self, batch: list[Tile]) -> torch.Tensor:
        """On a reader thread: the batch's input, pinned on CUDA."""
        xt = self.run.read(batch)
        return xt.pin_memory() if self.cuda else xt

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Run the model; on CUDA start the copy back to pinned memory without waiting.

        Returns the host tensor and the CUDA event that marks its copy landed (``None`` on
        the CPU).
        """
        tick = time.perf_counter()
        y = self.run.model(x.to(self.device, non_blocking=True))
        if self.cuda:
            host = torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(y, non_blocking=True)
            landed: Any = torch.cuda.Event()
            landed.record()
        else:
            host, landed = y.float(), None
        self.compute += time.perf_counter() - tick
        return host, landed

    def _write(self, batch: list[Tile], y: torch.Tensor, landed: Any) -> None:
        """On a writer thread: hand the batch's outputs to the sink."""
        if landed is not None:
            landed.synchronize()  # the device-to-host copy has landed
        self.run.sink(batch, y.numpy())
        self.bar.update(len(batch))

    def _finish_oldest(self) -> None:
        """Wait for the oldest write and report its batch (it stays queued until it has
        landed, so that :meth:`close` still sees it if the wait is interrupted)."""
        batch, future = self.writes[0]
        future.result()
        self.writes.popleft()
        self.run.finished(batch)
