"""What ``stitchsafe check`` found: :class:`CheckResult`, as JSON, as text, as a verdict.

:data:`EXACT_RTOL` is the exactness contract (DESIGN.md section 4) the result is judged
by; :meth:`CheckResult.failure` is the message ``stitchsafe check`` exits with
(:data:`EXIT_NOT_EXACT`) when it fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..geometry import Box, Plan
from ._deviation import Deviation, finite_or_none

__all__ = ["EXACT_RTOL", "EXIT_NOT_EXACT", "CheckResult"]

# The exactness contract (DESIGN.md section 4): stitched and whole-volume float32 outputs
# may differ by rounding only, at most this fraction of max |output|.
EXACT_RTOL = 1e-4
# Exit status of ``stitchsafe check`` when the stitched output deviates (2 is bad input,
# 1 an unexpected failure), so that a pipeline can tell "not exact" from "could not run".
EXIT_NOT_EXACT = 3


def _x(v: Sequence[int]) -> str:
    """``(2, 3)`` as ``2 x 3``."""
    return " x ".join(str(int(i)) for i in v)


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_stitching` measured.

    ``stitched`` is the deviation of stitchsafe's tiling, ``naive`` that of a tiling off
    the period lattice; :attr:`exact` says whether the first is within ``rtol``.
    """

    input_path: str
    model_path: str
    model_format: str
    geometry_source: str
    volume_shape: tuple[int, ...]
    crop: Box
    plan: Plan
    naive_plan: Plan
    stitched: Deviation
    naive: Deviation
    normalization: dict[str, Any]
    pad_mode: str
    device: str
    rtol: float
    picture: str | None
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    approximate: dict[str, Any] | None = None

    @property
    def within_tolerance(self) -> bool:
        """The stitched output is within ``rtol`` of the whole-volume pass (NaN is not)."""
        return bool(self.stitched.relative <= self.rtol)

    @property
    def exact(self) -> bool:
        """Within the exactness tolerance, and not in approximate mode."""
        return self.approximate is None and self.within_tolerance

    def failure(self) -> str | None:
        """Why the check failed (``stitchsafe check`` then exits with 3), ``None`` if it passed."""
        d = self.stitched
        if self.approximate is not None and not self.within_tolerance:
            return (
                f"approximate mode: the stitched output deviates from one whole-volume "
                f"pass by {d.relative:.2g} of max |output| on this crop, above --tolerance "
                f"{self.rtol:.0e} (the probes measured "
                f"{self.approximate['measured_deviation']:.2g}), largest at voxel {d.voxel}, "
                f"channel {d.channel}: this data is harder than the probes. A smaller "
                "--tolerance measures a larger halo; check again with it."
            )
        if self.approximate is None and not self.exact:
            return (
                f"the stitched output deviates from one whole-volume pass by "
                f"{d.relative:.2g} of max |output| (tolerance {self.rtol:.0e}), largest at "
                f"voxel {d.voxel}, channel {d.channel}. Tiled predictions of this model are "
                "not exact: its output depends on more than its period and halo (input size, "
                "nondeterministic kernels, reduced precision); compare predict's output with "
                "care."
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON values (what ``stitchsafe check --json`` prints)."""
        g = self.plan.geometry
        return {
            "exact": self.exact,
            "within_tolerance": self.within_tolerance,
            "approximate": self.approximate,
            "tolerance": self.rtol,
            "input": self.input_path,
            "model": {
                "path": self.model_path,
                "format": self.model_format,
                "geometry_source": self.geometry_source,
            },
            "volume_shape": list(self.volume_shape),
            "crop": {"begin": list(self.crop.begin), "shape": list(self.crop.shape)},
            "period": list(g.period),
            "halo": [list(h) for h in g.halo],
            "output_scale": finite_or_none(self.stitched.scale),
            "stitched": {
                **self.stitched.to_dict(),
                "tile_shape": list(self.plan.tile_shape),
                "tiles": len(self.plan),
            },
            "naive": {
                **self.naive.to_dict(),
                "tile_shape": list(self.naive_plan.tile_shape),
                "tiles": len(self.naive_plan),
            },
            "normalization": self.normalization,
            "pad_mode": self.pad_mode,
            "device": self.device,
            "picture": self.picture,
            "seconds": round(self.seconds, 3),
        }

    def describe(self) -> str:
        """Human-readable report (what ``stitchsafe check`` prints)."""
        rows = self._rows()
        width = max(len(k) for k, _ in rows)
        lines = [f"stitchsafe check: {self._verdict()}"]
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        lines += self._deviation_table()
        if self.picture:
            lines.append(f"  picture: {self.picture}")
        return "\n".join(lines)

    def _verdict(self) -> str:
        """The report's first line, after ``stitchsafe check: ``."""
        rel, tol = f"{self.stitched.relative:.1e}", f"{self.rtol:.0e}"
        if self.approximate is not None:
            return (
                "APPROXIMATE, "
                + ("WITHIN TOLERANCE" if self.within_tolerance else "OVER TOLERANCE")
                + f": the stitched output deviates from one whole-volume pass by {rel} of max "
                f"|output| (--tolerance {tol}; the probes measured "
                f"{self.approximate['measured_deviation']:.1e} with this halo)"
            )
        if self.exact:
            return (
                f"EXACT: the stitched output equals one whole-volume pass to {rel} of max "
                f"|output| (tolerance {tol})"
            )
        return (
            f"NOT EXACT: the stitched output deviates from one whole-volume pass by {rel} "
            f"of max |output| (tolerance {tol})"
        )

    def _rows(self) -> list[tuple[str, str]]:
        """``(name, value)`` rows: input and crop, model, tiles, output scale, halo."""
        whole = " (the whole volume)" if self.crop.shape == self.volume_shape else ""
        span = ", ".join(f"{b}:{e}" for b, e in zip(self.crop.begin, self.crop.end))
        g = self.plan.geometry
        rows = [
            ("input", f"{self.input_path} ({_x(self.volume_shape)}); crop [{span}]{whole}"),
            (
                "model",
                f"{self.model_path} ({self.model_format}, geometry from "
                f"{self.geometry_source}); period {_x(g.period)}",
            ),
            (
                "tiles",
                f"stitchsafe {len(self.plan)} of {_x(self.plan.tile_shape)} (on the period "
                f"lattice); naive {len(self.naive_plan)} of {_x(self.naive_plan.tile_shape)} "
                "(off it)",
            ),
            ("output scale", f"max |whole| = {self.stitched.scale:.4g}"),
        ]
        if self.approximate is not None:
            halo = ", ".join(f"({lo}, {hi})" for lo, hi in g.halo)
            rows.append(("halo (lo, hi)", f"{halo}, measured ({self.approximate['reason']})"))
        return rows

    def _deviation_table(self) -> list[str]:
        """Both tilings' deviations as aligned text lines, with the header line."""
        dims = self.plan.geometry.dims
        axes = ("z", "y", "x")[-dims:] if dims <= 3 else tuple(f"a{i}" for i in range(dims))
        table = [("", "max |dev|", "mean |dev|", "relative", f"at (c; {', '.join(axes)})")]
        for name, d in (("stitchsafe", self.stitched), ("naive", self.naive)):
            where = f"({d.channel}; {', '.join(map(str, d.voxel))})"
            table.append(
                (name, f"{d.max_abs:.3g}", f"{d.mean_abs:.3g}", f"{d.relative:.3g}", where)
            )
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        return [
            "  "
            + "  ".join(
                f"{c:<{w}}" if i in (0, 4) else f"{c:>{w}}"
                for i, (c, w) in enumerate(zip(r, widths))
            ).rstrip()
            for r in table
        ]
