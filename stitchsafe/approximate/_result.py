"""What the halo search found: each trial, and the :class:`Approximation` it chose."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..geometry import ModelGeometry
from ..models import LoadedModel

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Trial:
    """One candidate halo and the deviation each probe showed with it."""

    halo: tuple[tuple[int, int], ...]
    deviations: dict[str, float]
    shapes: dict[str, Shape]

    @property
    def deviation(self) -> float:
        """The largest deviation over the probes."""
        return max(self.deviations.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the trial."""
        return {
            "halo": [list(h) for h in self.halo],
            "deviation": _finite(self.deviation),
            "probes": {k: _finite(v) for k, v in self.deviations.items()},
        }


@dataclass(frozen=True)
class Approximation:
    """The halo chosen for approximate tiling and what was measured to choose it.

    Attributes
    ----------
    model
        The model (run as it is: plans made with ``native`` crop the extra halo).
    geometry
        The tiling geometry: the model's period and valid sizes, the halo grown.
    native
        The model's own geometry (its halo is 0 for same-padded models); pass it to
        :func:`stitchsafe.geometry.make_plan` as ``native``.
    tolerance
        Largest deviation allowed, relative to max |output|.
    chosen
        The trial chosen: its halo and the deviation each probe showed.
    trials
        Every halo tried, in order.
    write
        Write box of the probe runs' tiles.
    extra
        Halo voxels added on both sides of each axis (the model's own halo excluded).
    probes
        What each probe read at the chosen halo.
    reason
        Why the model cannot be stitched exactly.
    seconds, forwards
        What the measurement cost.
    device
        Where it ran.
    """

    model: LoadedModel
    geometry: ModelGeometry
    native: ModelGeometry
    tolerance: float
    chosen: Trial
    trials: tuple[Trial, ...]
    write: Shape
    extra: Shape
    probes: dict[str, str]
    reason: str
    seconds: float
    forwards: int
    device: str = "cpu"

    @property
    def deviation(self) -> float:
        """The measured deviation at the chosen halo (largest over the probes)."""
        return self.chosen.deviation

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (``--json``, the output's ``stitchsafe.approximate``)."""
        return {
            "tolerance": self.tolerance,
            "measured_deviation": _finite(self.deviation),
            "halo": [list(h) for h in self.geometry.halo],
            "extra_halo": list(self.extra),
            "period": list(self.geometry.period),
            "reason": self.reason,
            "probe": self._probe_dict(),
            "trials": [t.to_dict() for t in self.trials],
            "seconds": round(self.seconds, 3),
            "forward_passes": self.forwards,
        }

    def _probe_dict(self) -> dict[str, Any]:
        """How the deviation was measured, and what each probe showed at the chosen halo."""
        return {
            "description": (
                "tiled run vs one whole-volume pass over each probe volume, float32 on "
                f"{self.device}; deviation = max |tiled - whole| / max |whole|"
            ),
            "tile_shape": list(self.write),
            "inputs": self.probes,
            "shapes": {k: list(v) for k, v in self.chosen.shapes.items()},
            "deviations": {k: _finite(v) for k, v in self.chosen.deviations.items()},
        }

    def note(self) -> str:
        """The stderr note every approximate run prints."""
        per = ", ".join(f"{k} {v:.1e}" for k, v in self.chosen.deviations.items())
        return (
            f"APPROXIMATE mode (--allow-approximate): the model cannot be stitched exactly "
            f"({self.reason}). Halo {halo_text(self.geometry.halo)} chosen: tiled runs on the "
            f"probes deviate from one whole-volume pass by {self.deviation:.1e} of max |output| "
            f"({per}), within --tolerance {self.tolerance:.0e}; measured in {self.seconds:.1f} "
            f"s ({len(self.trials)} halos, {self.forwards} forward passes)."
        )


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def halo_text(halo: Sequence[tuple[int, int]]) -> str:
    """Per-axis halo: ``(8, 8)`` when symmetric, else ``(lo, hi)`` pairs.

    >>> halo_text(((8, 8), (4, 4))), halo_text(((1, 2), (3, 3)))
    ('(8, 4)', '((1, 2), (3, 3))')
    """
    if all(lo == hi for lo, hi in halo):
        return "(" + ", ".join(str(lo) for lo, _ in halo) + ")"
    return "(" + ", ".join(f"({lo}, {hi})" for lo, hi in halo) + ")"
