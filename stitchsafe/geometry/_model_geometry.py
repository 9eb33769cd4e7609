"""How a network maps input sizes to output sizes: period, halo, valid sizes; the U-Net's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import StitchsafeError
from ._shape import Shape, as_shape

__all__ = [
    "ModelGeometry",
    "normalize_pooling_factors",
    "unet_geometry",
    "unet_output_size",
]


@dataclass(frozen=True)
class ModelGeometry:
    """How a network maps input sizes to output sizes, per spatial axis.

    Parameters
    ----------
    period
        Shift-equivariance period ``P`` per axis (product of the pooling factors).
    halo
        ``(lo, hi)`` input voxels needed before/after an output region, per axis.
    min_input
        Smallest valid input size per axis.
    step
        Valid input sizes are ``min_input + k * step``; ``step`` is a multiple of ``period``.
    channels_in, channels_out
        Channel counts of the network's input and output.

    Examples
    --------
    A 2-D valid U-Net of depth 4, factor 2, two 3x3 convolutions per level (the paper's
    example): output sizes 4, 20, 36, ... so ``r = 4``.

    >>> g = unet_geometry([(2, 2)] * 4)
    >>> g.period, g.min_input, g.min_output, g.remainder
    ((16, 16), (188, 188), (4, 4), (4, 4))
    >>> g.output_shape((204, 220))
    (20, 36)
    """

    period: Shape
    halo: tuple[tuple[int, int], ...]
    min_input: Shape
    step: Shape
    channels_in: int = 1
    channels_out: int = 1

    def __post_init__(self) -> None:
        n = len(self.period)
        if not (len(self.halo) == len(self.min_input) == len(self.step) == n) or n == 0:
            raise StitchsafeError(
                f"model geometry has inconsistent axis counts: period {self.period}, halo "
                f"{self.halo}, min_input {self.min_input}, step {self.step}."
            )
        for a in range(n):
            p, s, (lo, hi), m = self.period[a], self.step[a], self.halo[a], self.min_input[a]
            if p < 1 or s < 1 or s % p:
                raise StitchsafeError(
                    f"axis {a}: valid-size step {s} must be a positive multiple of the period {p}."
                )
            if lo < 0 or hi < 0:
                raise StitchsafeError(f"axis {a}: halo {(lo, hi)} must not be negative.")
            if m - lo - hi < 1:
                raise StitchsafeError(
                    f"axis {a}: smallest valid input {m} leaves no output after the halo "
                    f"{(lo, hi)}."
                )

    @property
    def dims(self) -> int:
        return len(self.period)

    @property
    def context(self) -> Shape:
        """Input voxels lost per axis: ``input - output`` for valid sizes."""
        return tuple(lo + hi for lo, hi in self.halo)

    @property
    def halo_lo(self) -> Shape:
        return tuple(lo for lo, _ in self.halo)

    @property
    def halo_hi(self) -> Shape:
        return tuple(hi for _, hi in self.halo)

    @property
    def min_output(self) -> Shape:
        return tuple(m - c for m, c in zip(self.min_input, self.context))

    @property
    def remainder(self) -> Shape:
        """``r`` per axis: raw output sizes are ``n * period + r``; ``r`` is never stitched."""
        return tuple(o % p for o, p in zip(self.min_output, self.period))

    @property
    def distinguishable_objects(self) -> int:
        """Most same-looking objects the network can tell apart: ``prod(period)``."""
        return math.prod(self.period)

    def is_valid_input(self, shape: Sequence[int]) -> bool:
        """Whether ``shape`` is a valid input size on every axis.

        >>> unet_geometry([(2,)]).is_valid_input((18,)), unet_geometry([(2,)]).is_valid_input((19,))
        (True, False)
        """
        return all(n >= m and (n - m) % s == 0 for n, m, s in zip(shape, self.min_input, self.step))

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        """Raw output shape for a valid input shape.

        >>> unet_geometry([(2,)]).output_shape((20,))
        (4,)
        """
        if not self.is_valid_input(input_shape):
            raise StitchsafeError(
                f"input shape {tuple(input_shape)} is not valid for this model; valid sizes per "
                f"axis are {self.describe_valid_sizes()}."
            )
        return tuple(n - c for n, c in zip(input_shape, self.context))

    def input_for_output(self, output_shape: Sequence[int]) -> Shape:
        """Smallest valid input shape whose raw output covers ``output_shape``.

        >>> unet_geometry([(2,)]).input_for_output((5,))
        (22,)
        """
        out = []
        for o, m, s, c in zip(output_shape, self.min_input, self.step, self.context):
            need = max(int(o) + c, m)
            out.append(m + -(-(need - m) // s) * s)
        return tuple(out)

    def describe_valid_sizes(self) -> str:
        """Human-readable valid input sizes, e.g. ``'12 + k*2'`` per axis.

        >>> unet_geometry([(1, 2)]).describe_valid_sizes()
        '(13 + k*1, 18 + k*2)'
        """
        parts = [f"{m} + k*{s}" for m, s in zip(self.min_input, self.step)]
        return "(" + ", ".join(parts) + ")"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (the schema used in model metadata and ``--json``)."""
        return {
            "dims": self.dims,
            "channels_in": self.channels_in,
            "channels_out": self.channels_out,
            "period": list(self.period),
            "halo": [list(h) for h in self.halo],
            "valid_input": {"min": list(self.min_input), "step": list(self.step)},
            "remainder": list(self.remainder),
            "distinguishable_objects": self.distinguishable_objects,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelGeometry:
        """Inverse of :meth:`to_dict` (extra keys are ignored).

        >>> g = unet_geometry([(2, 2)])
        >>> ModelGeometry.from_dict(g.to_dict()) == g
        True
        """
        return cls(
            period=tuple(int(v) for v in d["period"]),
            halo=tuple((int(lo), int(hi)) for lo, hi in d["halo"]),
            min_input=tuple(int(v) for v in d["valid_input"]["min"]),
            step=tuple(int(v) for v in d["valid_input"]["step"]),
            channels_in=int(d.get("channels_in", 1)),
            channels_out=int(d.get("channels_out", 1)),
        )


def normalize_pooling_factors(
    factors: Sequence[Sequence[int]] | Sequence[int] | int, *, dims: int, depth: int | None = None
) -> tuple[Shape, ...]:
    """Pooling factors as one tuple per level, one factor per axis.

    Accepts one int (all levels and axes), one per level, or per level and axis.

    >>> normalize_pooling_factors(2, dims=3, depth=2)
    ((2, 2, 2), (2, 2, 2))
    >>> normalize_pooling_factors([(1, 2, 2), 2], dims=3)
    ((1, 2, 2), (2, 2, 2))
    """
    if isinstance(factors, int):
        if depth is None:
            raise StitchsafeError("a single pooling factor needs a depth (number of levels).")
        levels: list[Any] = [factors] * depth
    else:
        levels = list(factors)
        if depth is not None and len(levels) == 1 and depth != 1:
            levels = levels * depth
    out = tuple(as_shape(level, dims, "pooling factor") for level in levels)
    if depth is not None and len(out) != depth:
        raise StitchsafeError(f"{len(out)} pooling levels given but depth is {depth}.")
    if any(f < 1 for level in out for f in level):
        raise StitchsafeError(f"pooling factors must be >= 1, got {out}.")
    return out


def unet_output_size(
    n: int, factors: Sequence[int], *, convs_per_level: int = 2, kernel_size: int = 3
) -> int | None:
    """Output size of one axis of a valid U-Net, or ``None`` when ``n`` is not valid.

    ``factors`` are this axis's pooling factors, one per level.

    >>> unet_output_size(188, [2, 2, 2, 2]), unet_output_size(189, [2, 2, 2, 2])
    (4, None)
    """
    loss = convs_per_level * (kernel_size - 1)
    for f in factors:
        n -= loss
        if n < 1 or n % f:
            return None
        n //= f
    n -= loss
    if n < 1:
        return None
    for f in reversed(factors):
        n = n * f - loss
        if n < 1:
            return None
    return n


def unet_geometry(
    pooling_factors: Sequence[Sequence[int]],
    *,
    convs_per_level: int = 2,
    kernel_size: int = 3,
    channels_in: int = 1,
    channels_out: int = 1,
) -> ModelGeometry:
    """Geometry of the valid-convolution U-Net with these per-level, per-axis factors.

    >>> g = unet_geometry([(1, 2, 2), (1, 2, 2), (2, 2, 2)])
    >>> g.period, g.halo[0], g.min_input
    ((2, 8, 8), (16, 16), (34, 92, 92))
    >>> unet_geometry([(3, 3)]).period
    (3, 3)
    """
    if kernel_size % 2 != 1:
        raise StitchsafeError(f"kernel size must be odd for a centred U-Net, got {kernel_size}.")
    levels = [tuple(level) for level in pooling_factors]
    dims = len(levels[0]) if levels else 0
    if not levels or any(len(level) != dims for level in levels):
        raise StitchsafeError(f"pooling factors {levels} must give one factor per axis per level.")
    period, halo, min_input = [], [], []
    for a in range(dims):
        fa = [level[a] for level in levels]
        p = math.prod(fa)
        n = 1
        while (
            unet_output_size(n, fa, convs_per_level=convs_per_level, kernel_size=kernel_size)
            is None
        ):
            n += 1
        out = unet_output_size(n, fa, convs_per_level=convs_per_level, kernel_size=kernel_size)
        assert out is not None
        ctx = n - out
        period.append(p)
        halo.append((ctx // 2, ctx - ctx // 2))
        min_input.append(n)
    return ModelGeometry(
        period=tuple(period),
        halo=tuple(halo),
        min_input=tuple(min_input),
        step=tuple(period),
        channels_in=channels_in,
        channels_out=channels_out,
    )
