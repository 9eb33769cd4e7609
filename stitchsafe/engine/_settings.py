"""How to run: device, precision, batching, padding, normalisation, scheduler, checked once."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import StitchsafeError
from ..io import PAD_MODES
from ._device import check_precision
from ._normalize import METHODS
from ._schedulers import SchedulerSpec, parse_scheduler

__all__ = ["EMBEDDING_DTYPES", "RunSettings"]

EMBEDDING_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class RunSettings:
    """Settings of a run that do not change its plan.

    Attributes
    ----------
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    precision
        ``fp32`` (exact), ``bf16`` or ``fp16`` (autocast).
    batch_size
        Tiles per forward pass, or ``"auto"`` (fill half of the free CUDA memory).
    pad_mode
        One of :data:`stitchsafe.io.PAD_MODES`, applied to the whole volume.
    normalize
        ``none``, ``percentile`` or ``zscore``; ``None``: from the model's metadata.
    embeddings_dtype
        ``float32`` or ``float16`` for the written embeddings.
    scheduler
        ``threads``, ``processes[:N]``, ``local[:N]`` or ``tcp://host:port``.
    progress
        Show progress on stderr.

    Examples
    --------
    >>> RunSettings(batch_size="auto").where.kind
    'threads'
    >>> RunSettings(pad_mode="wrap")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --pad-mode 'wrap' is not one of reflect, constant, edge.
    """

    device: str = "auto"
    precision: str = "fp32"
    batch_size: int | str = 1
    pad_mode: str = "reflect"
    normalize: str | None = None
    embeddings_dtype: str = "float32"
    scheduler: str = "threads"
    progress: bool = True

    def __post_init__(self) -> None:
        parse_scheduler(self.scheduler)
        if self.pad_mode not in PAD_MODES:
            raise StitchsafeError(
                f"--pad-mode {self.pad_mode!r} is not one of {', '.join(PAD_MODES)}."
            )
        b = self.batch_size
        if b != "auto" and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise StitchsafeError(f"--batch-size must be 'auto' or at least 1, got {b!r}.")
        check_precision(self.precision)
        if self.embeddings_dtype not in EMBEDDING_DTYPES:
            raise StitchsafeError(
                f"--embeddings-dtype {self.embeddings_dtype!r} is not one of "
                f"{', '.join(EMBEDDING_DTYPES)}."
            )
        if self.normalize is not None and self.normalize not in METHODS:
            raise StitchsafeError(
                f"unknown normalisation method {self.normalize!r}; use one of {', '.join(METHODS)}."
            )

    @property
    def where(self) -> SchedulerSpec:
        """The parsed scheduler."""
        return parse_scheduler(self.scheduler)
