"""How far a tiled output is from the whole-volume output: :class:`Deviation`, measured."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Deviation", "finite_or_none", "measure_deviation"]


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN or infinity: such values become ``None`` (``null``).

    >>> finite_or_none(0.5), finite_or_none(float("nan"))
    (0.5, None)
    """
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class Deviation:
    """How far a tiled output is from the whole-volume output.

    Attributes
    ----------
    max_abs, mean_abs
        Largest and mean ``|tiled - whole|`` over all channels and voxels.
    scale
        ``max |whole|``, the output's scale; relative numbers are divided by it (by 1 when
        the whole output is zero).
    voxel
        Spatial coordinates of the largest deviation, in the input volume's coordinates.
    channel
        Output channel of the largest deviation.
    """

    max_abs: float
    mean_abs: float
    scale: float
    voxel: tuple[int, ...]
    channel: int

    @property
    def relative(self) -> float:
        """``max_abs / scale``."""
        return self.max_abs / (self.scale or 1.0)

    @property
    def mean_relative(self) -> float:
        """``mean_abs / scale``."""
        return self.mean_abs / (self.scale or 1.0)

    def to_dict(self) -> dict[str, Any]:
        """The deviation as JSON values (non-finite numbers become ``None``)."""
        return {
            "max_abs": finite_or_none(self.max_abs),
            "mean_abs": finite_or_none(self.mean_abs),
            "relative": finite_or_none(self.relative),
            "mean_relative": finite_or_none(self.mean_relative),
            "voxel": list(self.voxel),
            "channel": self.channel,
        }


def measure_deviation(
    tiled: np.ndarray, whole: np.ndarray, *, origin: Sequence[int] | None = None
) -> Deviation:
    """Largest and mean ``|tiled - whole|``, and where the largest is.

    Parameters
    ----------
    tiled, whole
        ``(C, *spatial)`` outputs of the same region.
    origin
        Position of the region's first voxel in the volume (added to ``voxel``).

    Examples
    --------
    >>> whole = np.zeros((2, 3, 4), np.float32); whole[0, 0, 0] = 2.0
    >>> tiled = whole.copy(); tiled[1, 2, 1] += 0.5
    >>> d = measure_deviation(tiled, whole, origin=(10, 20))
    >>> d.max_abs, d.relative, d.voxel, d.channel
    (0.5, 0.25, (12, 21), 1)
    """
    if tiled.shape != whole.shape:
        raise ValueError(f"shapes differ: {tiled.shape} and {whole.shape}")
    diff = np.abs(tiled.astype(np.float32, copy=False) - whole.astype(np.float32, copy=False))
    # NaN anywhere is the worst deviation there is, not one to skip.
    diff[np.isnan(diff)] = np.inf
    where = np.unravel_index(int(np.argmax(diff)), diff.shape)
    begin = tuple(origin) if origin is not None else (0,) * (diff.ndim - 1)
    finite = np.abs(whole[np.isfinite(whole)])
    return Deviation(
        max_abs=float(diff[where]),
        mean_abs=float(diff.mean(dtype=np.float64)),
        scale=float(finite.max()) if finite.size else 0.0,
        voxel=tuple(int(b) + int(i) for b, i in zip(begin, where[1:])),
        channel=int(where[0]),
    )
