"""The training loop: random crops at every phase, Adam with a cosine schedule, a JSON log.

:func:`crop_batches` draws crops at uniformly random origins (every phase of the period),
augmented alike in input and target; :func:`fit` minimises the loss on them and logs one
JSON line per step; :func:`cpu_threads` sets torch's CPU threads for the run and restores
them afterwards.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import torch

from ..engine import cpu_count
from ..errors import StitchsafeError
from ..progress import progress_bar
from ._data import augment, sample_origin
from ._losses import DiscriminativeLoss
from ._settings import TrainingSettings
from ._setup import TrainingSetup

__all__ = ["Batches", "Fit", "cpu_threads", "crop_batches", "fit"]

Batches = Callable[[], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Fit:
    """What the loop did: the loss of every step and the time it took."""

    losses: list[float]
    seconds: float

    @property
    def final_loss(self) -> float:
        """Mean loss of the last tenth of the steps (1 to 50 of them).

        >>> Fit([4.0] * 90 + [1.0] * 10, 1.0).final_loss
        1.0
        """
        return float(np.mean(self.losses[-max(1, min(50, len(self.losses) // 10)) :]))


def crop_batches(
    setup: TrainingSetup, batch_size: int, rng: np.random.Generator, device: torch.device
) -> Batches:
    """A function that returns one batch of augmented crops ``(x, y)`` on ``device``."""

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(batch_size):
            o = sample_origin(rng, setup.volume_shape, setup.window)
            x = setup.padded[(slice(None), *_crop(o, setup.input_window))]
            y = setup.targets[(slice(None), *_crop(o, setup.window))]
            x, y = augment(x, y, rng, flips=setup.flips, planes=setup.planes)
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        return torch.from_numpy(np.stack(xs)).to(device), torch.from_numpy(np.stack(ys)).to(device)

    return batch


def _crop(origin: tuple[int, ...], window: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(b, b + n) for b, n in zip(origin, window))


@contextlib.contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run torch on ``threads`` CPU threads (default: all this process may use) on the CPU.

    The previous thread count is restored on exit; other devices keep it.
    """
    previous = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(threads or cpu_count())
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit(
    net: Any,
    batches: Batches,
    loss_fn: DiscriminativeLoss,
    iterations: int,
    settings: TrainingSettings,
) -> Fit:
    """Adam with a cosine-decayed learning rate; one JSON line per step in the log."""
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations, settings.lr * 0.05)
    settings.log_path.parent.mkdir(parents=True, exist_ok=True)
    losses: list[float] = []
    start = time.perf_counter()
    with (
        open(settings.log_path, "w", encoding="utf-8") as log,
        progress_bar(iterations, desc="train", unit="step", enabled=settings.progress) as bar,
    ):
        for it in range(1, iterations + 1):
            values = _step(net, batches, loss_fn, optimiser, schedule)
            _check_finite(values, it)
            losses.append(values["total"])
            _log(log, it, values, schedule, start)
            if it % 10 == 0 or it == iterations:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
            bar.update(1)
    return Fit(losses, time.perf_counter() - start)


def _step(
    net: Any,
    batches: Batches,
    loss_fn: DiscriminativeLoss,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, float]:
    """One optimiser step on one batch; the loss terms as floats."""
    x, y = batches()
    terms = loss_fn(net(x), y[:, 0], y[:, 1])
    optimiser.zero_grad(set_to_none=True)
    terms.total.backward()
    # The distance hinge can spike early; clipping keeps Adam's first steps sane.
    torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
    optimiser.step()
    schedule.step()
    return terms.to_floats()


def _check_finite(values: dict[str, float], iteration: int) -> None:
    if not math.isfinite(values["total"]):
        raise StitchsafeError(
            f"training diverged at iteration {iteration} (loss {values['total']}); "
            "try a smaller learning rate."
        )


def _log(
    log: TextIO,
    iteration: int,
    values: dict[str, float],
    schedule: torch.optim.lr_scheduler.LRScheduler,
    start: float,
) -> None:
    """Write one step's record: iteration, loss, its terms, learning rate, seconds."""
    rest = dict(values)
    record: dict[str, Any] = {"iteration": iteration, "loss": rest.pop("total"), **rest}
    record["lr"] = float(schedule.get_last_lr()[0])
    record["seconds"] = round(time.perf_counter() - start, 3)
    log.write(json.dumps(record) + "\n")
