"""What one run of the tile pipeline is: its options, its inputs, its progress and its stats."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..errors import StitchsafeError
from ..geometry import Tile
from ..io import PAD_MODES, Volume
from ..progress import plural, progress_bar
from ._batch_io import Sink, Transform, iter_batches, read_batch
from ._device import check_precision, cpu_count

if TYPE_CHECKING:
    from ..models import LoadedModel

__all__ = [
    "PipelineOptions",
    "Progress",
    "RunStats",
    "TileRun",
    "landed",
    "pipeline_options",
]


@dataclass(frozen=True)
class PipelineOptions:
    """How the tile pipeline runs; checked once, when made.

    Attributes
    ----------
    pad_mode
        ``numpy.pad`` mode applied (conceptually) to the whole volume; one of
        :data:`stitchsafe.io.PAD_MODES`.
    batch_size
        Tiles per forward pass.
    device
        Where the model runs (it must already be there).
    precision
        ``fp32`` (exact), ``bf16`` or ``fp16`` (autocast; see :func:`forward_context`).
    num_workers
        Threads for each of the read and write stages (default: the CPU count, at least 2).
    prefetch
        Batches read ahead, and results waiting to be written (default: ``num_workers``).
    progress
        Show progress on stderr: a bar on a terminal, log lines in a batch log.
    cpu_streams
        On the CPU: batches computed at once, each on its own thread with torch using
        ``cores // cpu_streams`` threads (default: one stream per core; see
        :func:`run_cpu_streams`). ``1`` gives the single-stream pipeline with torch's own
        thread pool.

    Examples
    --------
    >>> PipelineOptions(num_workers=3).ahead
    3
    >>> PipelineOptions(pad_mode="wrap")
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --pad-mode 'wrap' is not one of reflect, constant, edge.
    """

    pad_mode: str = "reflect"
    batch_size: int = 1
    device: torch.device | str = "cpu"
    precision: str = "fp32"
    num_workers: int | None = None
    prefetch: int | None = None
    progress: bool = True
    cpu_streams: int | None = None

    def __post_init__(self) -> None:
        if self.pad_mode not in PAD_MODES:
            raise StitchsafeError(
                f"--pad-mode {self.pad_mode!r} is not one of {', '.join(PAD_MODES)}."
            )
        if self.batch_size < 1:
            raise StitchsafeError(f"--batch-size must be at least 1, got {self.batch_size}.")
        check_precision(self.precision)

    @property
    def workers(self) -> int:
        """Threads for each of the read and write stages."""
        return self.num_workers or max(2, cpu_count())

    @property
    def ahead(self) -> int:
        """Batches read ahead, and results waiting to be written (at least one)."""
        return max(1, self.prefetch or self.workers)


def pipeline_options(options: PipelineOptions | None, keywords: dict[str, Any]) -> PipelineOptions:
    """``options`` (default: the defaults) with the fields named in ``keywords`` replaced.

    >>> pipeline_options(None, {"batch_size": 2}).batch_size
    2
    >>> pipeline_options(None, {"batch": 2})
    Traceback (most recent call last):
    ...
    TypeError: run_plan() got an unexpected keyword argument 'batch'
    """
    names = {f.name for f in dataclasses.fields(PipelineOptions)}
    for key in keywords:
        if key not in names:
            raise TypeError(f"run_plan() got an unexpected keyword argument {key!r}")
    if options is None:
        return PipelineOptions(**keywords)
    return dataclasses.replace(options, **keywords) if keywords else options


@dataclass(frozen=True)
class RunStats:
    """What a run did."""

    tiles: int
    batches: int
    seconds: float
    device: str
    compute_seconds: float = 0.0
    # NaN or infinite values in the crops written (None: not counted: on workers, or a
    # sink of its own).
    nonfinite: int | None = None


@dataclass(frozen=True)
class TileRun:
    """One run's inputs, handed whole to the pipeline's stages.

    Attributes
    ----------
    volume
        The opened input volume.
    model
        The loaded model, already on the options' device.
    tiles
        The tiles to run, in order.
    sink
        Where each batch's raw outputs go (:func:`output_writer`, or a labels run's).
    options
        How the pipeline runs.
    transform
        Intensity normalisation computed once for the whole volume; applied before padding.
    on_done
        Called in the caller's thread with each batch's tiles once the sink has them.
    """

    volume: Volume
    model: LoadedModel
    tiles: Sequence[Tile]
    sink: Sink
    options: PipelineOptions
    transform: Transform | None = None
    on_done: Callable[[list[Tile]], None] | None = None

    @property
    def batch_count(self) -> int:
        """Batches the tiles make."""
        return -(-len(self.tiles) // self.options.batch_size)

    def batches(self) -> Iterator[list[Tile]]:
        """The tiles in batches, lazily, in order."""
        return iter_batches(self.tiles, self.options.batch_size)

    def read(self, batch: list[Tile]) -> torch.Tensor:
        """The batch's padded, normalised input as a (host) tensor."""
        x = read_batch(self.volume, batch, pad_mode=self.options.pad_mode, transform=self.transform)
        return torch.from_numpy(x)

    def finished(self, batch: list[Tile]) -> None:
        """Report a batch whose outputs the sink has taken."""
        if self.on_done is not None:
            self.on_done(batch)

    def stats(self, seconds: float, device: str, compute_seconds: float = 0.0) -> RunStats:
        """The run's :class:`RunStats`."""
        return RunStats(
            tiles=len(self.tiles),
            batches=self.batch_count,
            seconds=seconds,
            device=device,
            compute_seconds=compute_seconds,
        )


def landed(future: Future[Any]) -> bool:
    """Whether ``future`` ran to the end without an error (not cancelled, not failed).

    A pipeline that stops early still reports the batches whose futures landed: their
    outputs are complete, so a resumed run need not compute them again.
    """
    return future.done() and not future.cancelled() and future.exception() is None


class Progress:
    """Progress of tiles on stderr that several threads may advance; a context manager.

    A bar on a terminal, log lines in a batch log (:func:`stitchsafe.progress.progress_bar`).

    ``count`` is the number of tiles the sink has taken so far (shown or not).
    """

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = progress_bar(total, desc="tiles", unit="tile", enabled=enabled)
        self._lock = threading.Lock()
        self.total = total
        self.count = 0

    def update(self, tiles: int) -> None:
        """Advance by ``tiles``."""
        with self._lock:
            self.count += tiles
            self._bar.update(tiles)

    def stopped(self) -> str:
        """What a run that stopped early had finished, in one sentence."""
        return (
            f"{self.count} of the {plural(self.total, 'tile')} this run had to compute "
            f"{'was' if self.count == 1 else 'were'} finished and written."
        )

    def close(self) -> None:
        """Remove the bar."""
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
