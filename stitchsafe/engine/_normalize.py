"""Global intensity normalisation: statistics computed once per volume, never per tile.

Per-tile normalisation breaks exact stitching (each tile would see a different mapping of
intensities), so :func:`compute_normalization` reads the whole volume, or a deterministic
sample of it, before tiling, and every tile applies the same :class:`Normalization`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StitchsafeError
from ..geometry import Box
from ..io import Volume, check_finite

__all__ = ["METHODS", "Normalization", "compute_normalization", "sample_boxes"]

METHODS = ("none", "percentile", "zscore")


@dataclass(frozen=True)
class Normalization:
    """The affine intensity mapping ``y = (x - offset) * scale``, computed in float32.

    Attributes
    ----------
    method
        ``"none"``, ``"percentile"`` or ``"zscore"``.
    offset, scale
        Parameters of the mapping, shared by all channels.
    percentiles
        The percentiles used by ``"percentile"``; ``None`` otherwise.
    samples
        Number of voxel values the statistics were computed from.

    Examples
    --------
    >>> n = Normalization("percentile", offset=10.0, scale=0.5)
    >>> n(np.array([10, 12, 14], dtype=np.uint16)).tolist()
    [0.0, 1.0, 2.0]
    >>> Normalization.from_dict(n.to_dict()) == n
    True
    """

    method: str
    offset: float
    scale: float
    percentiles: tuple[float, float] | None = None
    samples: int = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply the mapping; returns float32."""
        x = np.asarray(x, dtype=np.float32)
        if self.offset == 0.0 and self.scale == 1.0:
            return x
        # Overflow gives infinity, which the readers refuse with a message (no warning).
        with np.errstate(over="ignore", invalid="ignore"):
            return (x - np.float32(self.offset)) * np.float32(self.scale)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (stored with outputs and printed by ``--json``)."""
        return {
            "method": self.method,
            "offset": self.offset,
            "scale": self.scale,
            "percentiles": list(self.percentiles) if self.percentiles is not None else None,
            "samples": self.samples,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`."""
        p = d.get("percentiles")
        return cls(
            method=str(d["method"]),
            offset=float(d["offset"]),
            scale=float(d["scale"]),
            percentiles=(float(p[0]), float(p[1])) if p is not None else None,
            samples=int(d.get("samples", 0)),
        )


def sample_boxes(
    shape: tuple[int, ...], *, channels: int = 1, max_samples: int, seed: int = 0, blocks: int = 64
) -> list[Box]:
    """Deterministic boxes spread over a volume, ``channels * voxels <= max_samples`` in all.

    The volume is cut into a grid of about ``blocks`` cells; each cell contributes one box
    at a seeded random position inside it (stratified sampling, so periodic structure
    cannot line up with the sample). A volume that fits the budget is one box.

    Examples
    --------
    >>> sample_boxes((4, 5), max_samples=100)
    [Box(begin=(0, 0), end=(4, 5))]
    >>> boxes = sample_boxes((1000, 1000), max_samples=10_000)
    >>> len(boxes), sum(b.size for b in boxes) <= 10_000
    (64, True)
    >>> boxes == sample_boxes((1000, 1000), max_samples=10_000)
    True
    """
    total = math.prod(shape) * channels
    if total <= max_samples:
        return [Box.from_shape(shape)]
    d = len(shape)
    per_axis = max(1, round(blocks ** (1 / d)))
    edges = [np.linspace(0, s, min(per_axis, s) + 1).round().astype(int) for s in shape]
    grid = [len(e) - 1 for e in edges]
    cell = [int(np.diff(e).min()) for e in edges]
    # Take the same fraction of every cell per axis so the sample keeps the volume's aspect.
    frac = (max_samples / total) ** (1 / d)
    size = [max(1, min(c, int(c * frac))) for c in cell]

    def sampled() -> int:
        return math.prod(g * b for g, b in zip(grid, size, strict=True)) * channels

    while sampled() > max_samples and any(b > 1 for b in size):
        a = max(range(d), key=lambda i: size[i])
        size[a] = max(1, min(size[a] - 1, int(size[a] * max_samples / sampled())))
    rng = np.random.default_rng(seed)
    boxes = []
    for index in np.ndindex(*grid):
        begin = []
        for a, i in enumerate(index):
            lo, hi = int(edges[a][i]), int(edges[a][i + 1])
            begin.append(lo + int(rng.integers(0, hi - lo - size[a] + 1)))
        boxes.append(Box.from_shape(size, begin))
    # A budget smaller than one voxel per cell keeps an evenly spread subset of the cells.
    keep = max(1, max_samples // (channels * math.prod(size)))
    if keep < len(boxes):
        boxes = [boxes[i] for i in np.linspace(0, len(boxes) - 1, keep).round().astype(int)]
    return boxes


def compute_normalization(
    volume: Volume,
    *,
    method: str,
    percentiles: tuple[float, float] = (1.0, 99.8),
    max_samples: int = 2_000_000,
    seed: int = 0,
    refuse_non_finite: bool = False,
) -> Normalization:
    """Intensity statistics of the whole volume (or a deterministic sample of it).

    The sample also refuses, before any tile runs, float64 values beyond float32, a
    mapping that carries the sample beyond float32 and, with ``refuse_non_finite``, NaN
    and infinity (else left out of the statistics).

    Parameters
    ----------
    volume
        The input volume; all channels are pooled into one offset and scale.
    method
        ``"none"`` (identity), ``"percentile"`` (``p_low`` maps to 0 and ``p_high`` to 1)
        or ``"zscore"`` (zero mean, unit standard deviation).
    percentiles
        ``(low, high)`` percentiles for ``"percentile"``.
    max_samples
        Most voxel values read; a volume with no more values is read completely.
    seed
        Seed of the sample positions; the same input and seed give the same statistics.
    refuse_non_finite
        Refuse NaN and infinity in the sample (naming the voxel), for every method; with
        ``"none"`` a float input's sample is read for this check alone.

    Returns
    -------
    Normalization

    Examples
    --------
    >>> import tempfile, zarr
    >>> from stitchsafe.io import open_volume
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> _ = zarr.create_array(f"{d}/a.zarr", data=np.arange(101, dtype="float32"))
    >>> n = compute_normalization(open_volume(f"{d}/a.zarr", spatial_dims=1), method="percentile",
    ...                           percentiles=(10, 90))
    >>> n.offset, n.scale
    (10.0, 0.0125)

    >>> tmp.cleanup()
    """
    if method not in METHODS:
        raise StitchsafeError(
            f"unknown normalisation method {method!r}; use one of {', '.join(METHODS)}."
        )
    if method == "none":
        if refuse_non_finite and volume.dtype.kind == "f":  # a float sample, for the check
            _sampled_values(volume, max_samples=max(1, max_samples), seed=seed, refuse=True)
        return Normalization("none", 0.0, 1.0)
    bounds = _checked_percentiles(method, percentiles, max_samples)
    values = _sampled_values(volume, max_samples=max_samples, seed=seed, refuse=refuse_non_finite)
    return _checked_mapping(_fit(method, values, bounds), values, volume)


def _checked_percentiles(
    method: str, percentiles: tuple[float, float], max_samples: int
) -> tuple[float, float]:
    """The percentiles as floats, once they (and ``max_samples``) are checked."""
    lo_p, hi_p = (float(p) for p in percentiles)
    if method == "percentile" and not 0.0 <= lo_p < hi_p <= 100.0:
        raise StitchsafeError(
            f"percentiles {percentiles} must satisfy 0 <= low < high <= 100, e.g. (1, 99.8)."
        )
    if max_samples < 1:
        raise StitchsafeError(f"max_samples must be positive, got {max_samples}.")
    return lo_p, hi_p


def _sampled_values(volume: Volume, *, max_samples: int, seed: int, refuse: bool) -> np.ndarray:
    """The finite float64 values of the sample boxes, all channels pooled.

    Each box is checked as it is read (:func:`stitchsafe.io.check_finite`); ``refuse``
    refuses NaN and infinity too instead of leaving them out.
    """
    boxes = sample_boxes(volume.shape, channels=volume.channels, max_samples=max_samples, seed=seed)
    parts = []
    for box in boxes:
        data = volume.read(box)
        check_finite(volume, box, data, allow_non_finite=not refuse)
        parts.append(data.astype(np.float64).ravel())
    values = np.concatenate(parts)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise StitchsafeError(
            f"the input {volume.path!r} has no finite values in the sampled region, so no "
            "intensity statistics can be computed; use --normalize none or fix the data."
        )
    return values


def _checked_mapping(norm: Normalization, values: np.ndarray, volume: Volume) -> Normalization:
    """``norm``, once it is seen to keep the sampled values inside float32 (the network's)."""
    ends = np.array([values.min(), values.max()], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        mapped = norm(ends)
    if not (math.isfinite(norm.scale) and np.isfinite(mapped).all()):
        raise StitchsafeError(
            f"the {norm.method} normalisation of {volume.path!r} (offset {norm.offset:.6g}, "
            f"scale {norm.scale:.6g}) maps its values {ends[0]:.6g}..{ends[1]:.6g} beyond the "
            "float32 range (+-3.4e38) that the network computes in. Pass another --normalize "
            "(zscore, or none), or rescale the data."
        )
    return norm


def _fit(method: str, values: np.ndarray, percentiles: tuple[float, float]) -> Normalization:
    """The ``percentile`` or ``zscore`` mapping of ``values``."""
    if method == "percentile":
        lo, hi = (float(v) for v in np.percentile(values, list(percentiles)))
        # A flat sample has no range to stretch; shifting alone keeps it finite.
        scale = 1.0 / (hi - lo) if hi > lo else 1.0
        return Normalization("percentile", lo, scale, percentiles, int(values.size))
    mean, std = float(values.mean()), float(values.std())
    return Normalization("zscore", mean, 1.0 / std if std > 0 else 1.0, None, int(values.size))
