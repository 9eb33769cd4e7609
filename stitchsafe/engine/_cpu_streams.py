"""The CPU pipeline: several batches in flight, each forward on its own thread.

Why: torch's intra-op threads meet at a barrier after every operation, so when read or
write threads take a core from one of them, all wait — on 2 cores the single-stream
pipeline reached only 0.63 of the tight-loop forward speed. Independent streams with
``cores // streams`` torch threads each never wait for one another (the forward releases
the GIL), and each stream crops and writes its own batch, so the cores are shared by
whichever stage has work. The batch holding the plan's last tile, which starts when no
batch is left for the other streams, runs with all of their threads, so that their cores
do not idle while it ends the run. Results equal the single-stream pipeline's to float
rounding (convolution sums run in an order that depends on the thread count).

Stopping early (an error, Ctrl-C) cancels the batches not yet started and the reads they
wait for, joins the compute and read threads, and reports the batches whose outputs the
sink took, as the single-stream pipeline does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..geometry import Tile
from ._device import forward_context
from ._run import Progress, RunStats, TileRun, landed

__all__ = ["run_cpu_streams"]


def run_cpu_streams(
    run: TileRun, streams: int, bar: Progress, last: tuple[int, ...] | None = None
) -> RunStats:
    """Run ``run`` with ``streams`` batches computed at once on the CPU.

    Each batch's forward uses ``threads // streams`` of torch's threads (at least one),
    except that of the batch holding the tile at grid index ``last`` (the plan's last tile
    in every run order), which uses every stream's: when it starts, no batch is left for
    the other streams, whose cores would idle once their own batches end. Chosen by the
    tile, not by the position in this run, so that a resumed run computes each tile with
    the threads it had (convolutions round differently with other thread counts). Torch's
    thread count is restored afterwards. Reads run ahead on their own pool,
    ``options.ahead`` batches at most beyond the streams.
    """
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    pools = _Streams(run, streams, bar, previous_threads, last)
    try:
        pools.execute()
    finally:
        pools.close()
        torch.set_num_threads(previous_threads)
    return run.stats(time.perf_counter() - start, "cpu", pools.busy / streams)


class _Streams:
    """A read pool, a pool of ``streams`` compute threads and the futures in flight."""

    def __init__(
        self, run: TileRun, streams: int, bar: Progress, threads: int, last: tuple[int, ...] | None
    ) -> None:
        self.run, self.streams, self.bar, self.last = run, streams, bar, last
        self.share = max(1, threads // streams)  # each stream's torch threads
        self.device = torch.device("cpu")
        self.busy = 0.0  # seconds of forward passes, summed over the streams
        self.lock = threading.Lock()
        self.readers = ThreadPoolExecutor(run.options.workers, thread_name_prefix="stitchsafe-read")
        self.computers = ThreadPoolExecutor(streams, thread_name_prefix="stitchsafe-compute")
        self.running: deque[Future[list[Tile]]] = deque()

    def execute(self) -> None:
        """Submit every batch (read, then compute) with a bounded number in flight."""
        limit = self.streams + self.run.options.ahead
        for batch in self.run.batches():
            while len(self.running) >= limit:
                self._finish_oldest()  # bounded: wait for the oldest
            tail = any(t.index == self.last for t in batch)
            threads = self.share * self.streams if tail else self.share  # tail: every stream's
            reading = self.readers.submit(self.run.read, batch)
            self.running.append(self.computers.submit(self._compute, batch, reading, threads))
        while self.running:
            self._finish_oldest()

    def close(self) -> None:
        """Cancel what has not started, wait for what has, report the batches that landed.

        Queued reads are cancelled first, so that a compute thread waiting for one stops
        at once instead of reading and computing a batch nobody waits for.
        """
        for pending in self.running:
            pending.cancel()
        self.readers.shutdown(wait=False, cancel_futures=True)
        self.computers.shutdown(wait=True, cancel_futures=True)
        self.readers.shutdown(wait=True)
        finished = [future.result() for future in self.running if landed(future)]
        self.running.clear()
        for batch in finished:
            self.run.finished(batch)

    def _compute(
        self, batch: list[Tile], reading: Future[torch.Tensor], threads: int
    ) -> list[Tile]:
        """On a compute thread: wait for the batch's input, run it with ``threads`` of
        torch's threads (a thread's own setting), hand it to the sink."""
        x = reading.result()
        torch.set_num_threads(threads)
        tick = time.perf_counter()
        with forward_context(self.run.options.precision, self.device):  # thread-local
            y = self.run.model(x).float()
        elapsed = time.perf_counter() - tick
        self.run.sink(batch, y.numpy())
        with self.lock:
            self.busy += elapsed
        self.bar.update(len(batch))
        return batch

    def _finish_oldest(self) -> None:
        """Wait for the oldest batch and report it (it stays queued until it has landed,
        so that :meth:`close` still sees it if the wait is interrupted)."""
        batch = self.running[0].result()
        self.running.popleft()
        self.run.finished(batch)
