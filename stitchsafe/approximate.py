"""Approximate tiling for models that cannot be stitched exactly (same-padded U-Nets).

A same-padded network pads the input of every convolution with zeros, so near a tile's
border its output differs from one whole-volume pass wherever the tiles are placed
(Rumberger et al., ICCV 2021). The difference fades with the distance from the border:
reading a halo of context around each tile's write box and cropping it away makes it as
small as wanted, down to float rounding once the halo covers the receptive field.

With ``--allow-approximate`` stitchsafe picks that halo by measuring, never by guessing:

- Tiles stay on the model's period lattice (the product of its pooling factors: from the
  metadata or ``--pooling-factor``/``--depth``, else the valid-size step that probing
  measures), so the zero padding at tile borders is the only error left.
- Candidate halos grow from 0 in steps of the largest period, each axis rounded up to a
  multiple of its own period. For each, a tiled run over a probe volume (tiles read from
  the volume padded with the run's pad mode, run, cropped: what the engine does) is
  compared with one whole-volume pass over it (:func:`stitchsafe.engine.whole_volume_forward`,
  exact mode's oracle). The deviation is ``max |tiled - whole| / max |whole|``.
- Two probe volumes: a seeded structured input (:func:`stitchsafe.probe.structured_input`)
  of three tiles per axis, and the real input, normalised as the run normalises it: all
  of it where a tiled run over it reads at most :data:`INPUT_PROBE_VOXELS` voxels (the
  measured deviation is then the run's own, for the probe's tiles), else the largest
  centred crop that does (three tiles per axis at least). The larger deviation counts.
- The first halo whose deviation is at most the tolerance wins. The search gives up when
  the deviation has not fallen for :data:`PATIENCE` steps (what is left is float32
  rounding, or output that depends on input beyond any halo: normalisation over space),
  when the extra halo would pass :data:`DEFAULT_MAX_HALO` voxels, or when the tiled run
  over the structured probe would read more than :data:`MAX_PROBE_VOXELS` voxels.

The probe runs' tiles are the run's tile shape, at most :data:`PROBE_WRITE` voxels per
axis (rounded up to the period): smaller tiles put every output voxel nearer a seam, so
probe tiles no larger than the run's err on the safe side. On a large volume the
deviation is measured on a crop: somewhere else the data may bring a seam a larger one;
``stitchsafe check --allow-approximate`` measures it on any crop.

The chosen halo turns the model into a valid-convolution one as far as the engine can
tell: :class:`CroppedModel` drops the extra halo from every output, and the geometry's
halo includes it, so plans, the tiled engine and the oracle run unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import probe
from .errors import StitchsafeError, UnstitchableModelError
from .geometry import Box, ModelGeometry, make_plan, normalize_pooling_factors
from .model import LoadedModel, metadata_geometry

if TYPE_CHECKING:
    from .io import Volume

__all__ = [
    "DEFAULT_MAX_HALO",
    "DEFAULT_TOLERANCE",
    "INPUT_PROBE_VOXELS",
    "MAX_PROBE_VOXELS",
    "Approximation",
    "CroppedModel",
    "Probe",
    "Trial",
    "approximate_tiling",
    "check_tolerance",
    "choose_halo",
    "halo_steps",
    "input_probe",
    "native_geometry",
    "structured_probe",
    "tiled_deviation",
    "widen",
]

Shape = tuple[int, ...]

# Largest deviation from one whole-volume pass, relative to max |output|, by default: well
# below what changes a thresholded mask or an embedding clustering, and reachable by
# same-padded U-Nets with a halo of about their receptive field's radius or less.
DEFAULT_TOLERANCE = 1e-3
# Write box of the probe runs' tiles per axis, at most (voxels, rounded up to the period).
PROBE_WRITE = 16
# Largest extra halo per side tried, in voxels.
DEFAULT_MAX_HALO = 128
# Input voxels the tiled run over the structured probe may read (tiles x read box), at
# most: the halo's cap for 3-D models (27 tiles of (16 + 2 * halo)**3: halo 45).
MAX_PROBE_VOXELS = 2**25
# Input voxels the tiled run over the real input may read, at most: one default CPU tile
# (more input is cropped, down to three tiles per axis).
INPUT_PROBE_VOXELS = 2**21
# Halo steps without a lower deviation before the search stops.
PATIENCE = 3


def check_tolerance(tolerance: float | None, *, allow_approximate: bool) -> float | None:
    """The tolerance to use: ``None`` in exact mode, :data:`DEFAULT_TOLERANCE` by default.

    >>> check_tolerance(None, allow_approximate=True)
    0.001
    >>> check_tolerance(None, allow_approximate=False) is None
    True
    >>> check_tolerance(2.0, allow_approximate=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --tolerance 2.0 must lie strictly between 0 and 1...
    """
    if not allow_approximate:
        if tolerance is not None:
            raise StitchsafeError(
                "--tolerance applies to approximate mode only; add --allow-approximate (for "
                "models that cannot be stitched exactly), or drop --tolerance."
            )
        return None
    if tolerance is None:
        return DEFAULT_TOLERANCE
    t = float(tolerance)
    if not (math.isfinite(t) and 0.0 < t < 1.0):
        raise StitchsafeError(
            f"--tolerance {tolerance} must lie strictly between 0 and 1: it is the largest "
            "deviation from one whole-volume pass allowed, relative to max |output| (default "
            f"{DEFAULT_TOLERANCE:g})."
        )
    return t


# ---------------------------------------------------------------------------- geometry


def native_geometry(
    model: LoadedModel,
    *,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    depth: int | None = None,
) -> tuple[ModelGeometry, str]:
    """The model's own geometry (valid sizes, context, period), without the locality test.

    The valid sizes and the context come from a size scan
    (:func:`stitchsafe.probe.scan_sizes`); the period from the metadata, else the flags,
    else the valid-size step (for a same-padded U-Net: the product of its pooling factors).

    Returns
    -------
    tuple
        The geometry and where its period came from: ``"metadata"``, ``"flags"`` or
        ``"probe"``.
    """
    flags_period = None
    if pooling_factors is not None or depth is not None:
        levels = normalize_pooling_factors(
            pooling_factors if pooling_factors is not None else 2, dims=model.dims, depth=depth
        )
        flags_period = tuple(math.prod(level[a] for level in levels) for a in range(model.dims))
    _, meta_period = metadata_geometry(model.metadata, channels_in=model.channels_in)
    period = meta_period if meta_period is not None else flags_period
    runner = probe.Runner(model)
    scan = probe.scan_sizes(runner, needed=3 if period is None else 2)
    geometry = scan.geometry(period, channels_in=model.channels_in)
    source = "metadata" if meta_period is not None else "flags" if flags_period else "probe"
    return geometry, source


def widen(native: ModelGeometry, extra: Sequence[int]) -> ModelGeometry:
    """``native`` with ``extra`` more halo voxels on both sides of every axis.

    The smallest valid input grows by steps until an output voxel is left.

    >>> from stitchsafe.geometry import ModelGeometry
    >>> same = ModelGeometry(period=(2, 2), halo=((0, 0), (0, 0)), min_input=(2, 2), step=(2, 2))
    >>> g = widen(same, (4, 6))
    >>> g.halo, g.min_input, g.output_shape((12, 14))
    (((4, 4), (6, 6)), (10, 14), (4, 2))
    """
    halo = tuple((lo + e, hi + e) for (lo, hi), e in zip(native.halo, extra, strict=True))
    min_input = []
    for m, s, (lo, hi) in zip(native.min_input, native.step, halo, strict=True):
        min_input.append(m + max(0, -(-(lo + hi + 1 - m) // s)) * s)
    return ModelGeometry(
        period=native.period,
        halo=halo,
        min_input=tuple(min_input),
        step=native.step,
        channels_in=native.channels_in,
        channels_out=native.channels_out,
    )


def halo_steps(period: Sequence[int]) -> Callable[[int], Shape]:
    """Extra halo of step ``k``: ``k`` times the largest period, rounded up per axis.

    >>> step = halo_steps((1, 2, 4))
    >>> step(0), step(1), step(3)
    ((0, 0, 0), (4, 4, 4), (12, 12, 12))
    >>> halo_steps((2, 3))(1)
    (4, 3)
    """
    unit = max(period)
    return lambda k: tuple(-(-k * unit // p) * p for p in period)


@dataclass
class CroppedModel(LoadedModel):
    """A loaded model whose outputs lose ``extra[a]`` voxels on both sides of axis ``a``.

    With the geometry from :func:`widen`, the tiled engine, the plans and the oracle see a
    valid-convolution model whose halo includes the extra context.
    """

    extra: Shape = ()

    @classmethod
    def of(cls, model: LoadedModel, extra: Sequence[int]) -> CroppedModel:
        """Wrap ``model``, sharing its module."""
        values = {f.name: getattr(model, f.name) for f in fields(LoadedModel)}
        return cls(**values, extra=tuple(int(e) for e in extra))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = super().__call__(x)
        if not any(self.extra):
            return y
        spatial = (slice(e, y.shape[2 + a] - e) for a, e in enumerate(self.extra))
        return y[(slice(None), slice(None), *spatial)]


# ---------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class Probe:
    """A deterministic probe volume.

    ``shape(tile_shape, read_shape)`` is the probe volume's spatial shape for tiles of
    that write and read shape, ``read(shape)`` its ``(C, *shape)`` float32 voxels (already
    normalised), ``describe(shape)`` what was read, for reports.
    """

    name: str
    shape: Callable[[Shape, Shape], Shape]
    read: Callable[[Shape], np.ndarray]
    describe: Callable[[Shape], str]


def structured_probe(channels: int, *, seed: int = 0, tiles: int = 3) -> Probe:
    """Seeded noise plus ramps and slow waves (:func:`stitchsafe.probe.structured_input`).

    The probe volume holds ``tiles`` tiles per axis: the middle one has seams on every
    side.

    >>> p = structured_probe(2)
    >>> p.shape((4, 8), (20, 24))
    (12, 24)
    >>> p.read((3, 4)).shape, p.read((3, 4)).dtype
    ((2, 3, 4), dtype('float32'))
    """

    def read(shape: Shape) -> np.ndarray:
        x = probe.structured_input(shape, channels, seed=seed)[0]
        return x.numpy().astype(np.float32)

    return Probe(
        "structured",
        lambda tile, _: tuple(tiles * t for t in tile),
        read,
        lambda shape: f"seeded noise, ramps and waves ({' x '.join(map(str, shape))})",
    )


def input_probe(
    volume: Volume,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    pad_mode: str = "reflect",
    max_voxels: int = INPUT_PROBE_VOXELS,
    min_tiles: int = 3,
) -> Probe:
    """A centred crop of the real input, normalised as the run normalises it.

    The crop is the whole volume when a tiled run over it reads at most ``max_voxels``
    input voxels (the measured deviation is then the run's own, for the probe's tiles);
    else the largest centred crop that does, shrinking the axis with the most tiles first,
    but never below ``min_tiles`` tiles per axis (nor above the volume). The crop is
    treated as a volume of its own: padded at its borders with ``pad_mode``.
    """
    from .io import read_padded

    def shape(tile: Shape, read_shape: Shape) -> Shape:
        counts = [-(-v // t) for v, t in zip(volume.shape, tile, strict=True)]
        floor = [min(c, min_tiles) for c in counts]
        per_tile = math.prod(read_shape)
        while math.prod(counts) * per_tile > max_voxels and counts != floor:
            a = max((i for i in range(len(counts)) if counts[i] > floor[i]), key=counts.__getitem__)
            counts[a] -= 1
        return tuple(min(v, c * t) for v, c, t in zip(volume.shape, counts, tile, strict=True))

    def box(shape: Shape) -> Box:
        begin = tuple((v - n) // 2 for v, n in zip(volume.shape, shape, strict=True))
        return Box.from_shape(shape, begin)

    def read(shape: Shape) -> np.ndarray:
        return read_padded(volume, box(shape), mode=pad_mode, transform=transform)

    def describe(shape: Shape) -> str:
        b = box(shape)
        if tuple(shape) == tuple(volume.shape):
            return f"the whole input ({' x '.join(map(str, shape))})"
        span = ", ".join(f"{lo}:{hi}" for lo, hi in zip(b.begin, b.end, strict=True))
        return f"centred crop [{span}] of the input"

    return Probe("input", shape, read, describe)


def tiled_deviation(
    model: LoadedModel,
    geometry: ModelGeometry,
    data: np.ndarray,
    *,
    tile_shape: Sequence[int],
    pad_mode: str = "reflect",
    device: torch.device | str = "cpu",
    batch_voxels: int = 2**22,
) -> tuple[float, int]:
    """Relative deviation of a tiled run over ``data`` from one whole pass over it.

    The tiles are those of :func:`stitchsafe.geometry.make_plan`, read from ``data``
    padded like ``numpy.pad(data, ..., mode=pad_mode)`` (as the engine reads a volume),
    run in batches and cropped; the whole pass is the oracle of exact mode,
    :func:`stitchsafe.engine.whole_volume_forward`.

    Parameters
    ----------
    model, geometry
        The (cropped) model and the geometry it is tiled with.
    data
        ``(C, *spatial)`` probe volume, float32, already normalised.
    tile_shape
        Write box per tile (a multiple of the period).
    pad_mode
        ``numpy.pad`` mode at the probe's borders.
    device
        Where the passes run (float32).
    batch_voxels
        Input voxels per forward pass of tiles, at most (one tile at least).

    Returns
    -------
    tuple
        ``max |tiled - whole| / max |whole|`` (divided by 1 where the whole output is 0;
        infinite where the tiled output is not finite), and the forward passes run.

    Examples
    --------
    A valid-convolution model tiles exactly:

    >>> from stitchsafe.model import LoadedModel
    >>> from stitchsafe.geometry import ModelGeometry
    >>> conv = torch.nn.Conv2d(1, 1, 3).eval()
    >>> m = LoadedModel("conv", "stitchsafe", conv, None, dims=2, channels_in=1)
    >>> g = ModelGeometry(period=(1, 1), halo=((1, 1), (1, 1)), min_input=(3, 3), step=(1, 1))
    >>> d, passes = tiled_deviation(m, g, np.ones((1, 9, 7), np.float32), tile_shape=(4, 4))
    >>> d < 1e-6, passes
    (True, 2)
    """
    from .engine import whole_volume_forward

    plan = make_plan(data.shape[1:], geometry, tile_shape=tuple(tile_shape))
    whole = whole_volume_forward(data, model, geometry, pad_mode=pad_mode, device=device)
    kwargs: dict[str, Any] = {"constant_values": 0} if pad_mode == "constant" else {}
    widths = [(0, 0), *plan.pad]
    padded = np.pad(data, widths, mode=pad_mode, **kwargs)  # type: ignore[call-overload]
    tiled = np.zeros_like(whole)
    tiles = list(plan)
    per_batch = max(1, batch_voxels // math.prod(plan.read_shape))
    passes = 1
    for i in range(0, len(tiles), per_batch):
        batch = tiles[i : i + per_batch]
        x = np.stack(
            [padded[(slice(None), *t.read.shift(geometry.halo_lo).to_slices())] for t in batch]
        )
        y = model(torch.from_numpy(x).to(device)).float().cpu().numpy()
        passes += 1
        for t, yt in zip(batch, y, strict=True):
            tiled[(slice(None), *t.write.to_slices())] = yt[(slice(None), *t.crop.to_slices())]
    diff = np.abs(tiled.astype(np.float64) - whole)
    diff[~np.isfinite(diff)] = np.inf
    finite = np.abs(whole[np.isfinite(whole)])
    scale = float(finite.max()) if finite.size else 0.0
    return float(diff.max()) / (scale or 1.0), passes


# ---------------------------------------------------------------------------- search


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
        The model cropping the extra halo (run this one).
    geometry
        The tiling geometry: the model's period and valid sizes, the halo grown.
    native
        The model's own geometry (its halo is 0 for same-padded models).
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

    model: CroppedModel
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
            "probe": {
                "description": (
                    "tiled run vs one whole-volume pass over each probe volume, float32 on "
                    f"{self.device}; deviation = max |tiled - whole| / max |whole|"
                ),
                "tile_shape": list(self.write),
                "inputs": self.probes,
                "shapes": {k: list(v) for k, v in self.chosen.shapes.items()},
                "deviations": {k: _finite(v) for k, v in self.chosen.deviations.items()},
            },
            "trials": [t.to_dict() for t in self.trials],
            "seconds": round(self.seconds, 3),
            "forward_passes": self.forwards,
        }

    def note(self) -> str:
        """The stderr note every approximate run prints."""
        per = ", ".join(f"{k} {v:.1e}" for k, v in self.chosen.deviations.items())
        return (
            f"APPROXIMATE mode (--allow-approximate): the model cannot be stitched exactly "
            f"({self.reason}). Halo {_halo_text(self.geometry.halo)} chosen: tiled runs on the "
            f"probes deviate from one whole-volume pass by {self.deviation:.1e} of max |output| "
            f"({per}), within --tolerance {self.tolerance:.0e}; measured in {self.seconds:.1f} "
            f"s ({len(self.trials)} halos, {self.forwards} forward passes)."
        )


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _halo_text(halo: Sequence[tuple[int, int]]) -> str:
    """Per-axis halo: ``(8, 8)`` when symmetric, else ``(lo, hi)`` pairs.

    >>> _halo_text(((8, 8), (4, 4))), _halo_text(((1, 2), (3, 3)))
    ('(8, 4)', '((1, 2), (3, 3))')
    """
    if all(lo == hi for lo, hi in halo):
        return "(" + ", ".join(str(lo) for lo, _ in halo) + ")"
    return "(" + ", ".join(f"({lo}, {hi})" for lo, hi in halo) + ")"


def _reason(model: LoadedModel, native: ModelGeometry) -> str:
    layers = probe.suspect_layers(model)
    if any("norm" in n.lower() for n in layers):
        return "normalisation over space"
    if all(c == 0 for c in native.context):
        return "same-padded convolutions: its output keeps the input's size"
    return "zero-padded convolutions inside the network"


def choose_halo(
    model: LoadedModel,
    native: ModelGeometry,
    *,
    tolerance: float,
    probes: Sequence[Probe],
    tile_shape: Sequence[int],
    pad_mode: str = "reflect",
    device: torch.device | str = "cpu",
    max_halo: int = DEFAULT_MAX_HALO,
    max_probe_voxels: int = MAX_PROBE_VOXELS,
) -> Approximation:
    """The smallest halo (in period steps) whose tiled probe runs stay within ``tolerance``.

    Parameters
    ----------
    model
        The loaded model, on ``device``.
    native
        Its own geometry (:func:`native_geometry`).
    tolerance
        Largest deviation allowed, relative to max |output|.
    probes
        Probe volumes (:func:`structured_probe`, :func:`input_probe`); the largest
        deviation over them counts.
    tile_shape
        Write box of the probe runs' tiles: a multiple of the period per axis.
    pad_mode
        The run's pad mode (tiles and oracle pad the probe volume with it).
    device
        Where the probe passes run (float32).
    max_halo
        Largest extra halo per side tried, in voxels.
    max_probe_voxels
        Largest number of input voxels the tiled run over the first probe may read.

    Returns
    -------
    Approximation

    Raises
    ------
    UnstitchableModelError
        No halo within the caps meets the tolerance; the message names the smallest
        deviation reached, its halo, and why the search stopped.

    Examples
    --------
    >>> from stitchsafe.model import LoadedModel
    >>> from stitchsafe.geometry import ModelGeometry
    >>> same = torch.nn.Conv2d(1, 1, 3, padding=1).eval()
    >>> m = LoadedModel("same", "stitchsafe", same, None, dims=2, channels_in=1)
    >>> native = ModelGeometry(period=(1, 1), halo=((0, 0),) * 2, min_input=(1, 1), step=(1, 1))
    >>> a = choose_halo(m, native, tolerance=1e-3, probes=[structured_probe(1)],
    ...                 tile_shape=(8, 8))
    >>> a.geometry.halo, [t.halo[0][0] for t in a.trials], a.deviation < 1e-6
    (((1, 1), (1, 1)), [0, 1], True)
    """
    if not probes:
        raise ValueError("choose_halo needs at least one probe")
    start = time.perf_counter()
    tiles = tuple(int(t) for t in tile_shape)
    step = halo_steps(native.period)
    trials: list[Trial] = []
    forwards = 0
    best: Trial | None = None
    stalled = 0
    stop = ""
    k = 0
    while True:
        extra = step(k)
        if max(extra) > max_halo:
            stop = f"the next halo would pass the cap of {max_halo} extra voxels per side"
            break
        geometry = widen(native, extra)
        read = geometry.input_for_output(tiles)
        shapes = {p.name: p.shape(tiles, read) for p in probes}
        first = shapes[probes[0].name]
        need = math.prod(-(-v // t) for v, t in zip(first, tiles, strict=True)) * math.prod(read)
        if need > max_probe_voxels:
            stop = (
                f"the next halo's probe run would read {need} input voxels (the cap is "
                f"{max_probe_voxels})"
            )
            break
        cropped = CroppedModel.of(model, extra)
        deviations = {}
        for p in probes:
            deviations[p.name], passes = tiled_deviation(
                cropped,
                geometry,
                p.read(shapes[p.name]),
                tile_shape=tiles,
                pad_mode=pad_mode,
                device=device,
            )
            forwards += passes
        trial = Trial(geometry.halo, deviations, shapes)
        trials.append(trial)
        if trial.deviation <= tolerance:
            return Approximation(
                model=cropped,
                geometry=geometry,
                native=native,
                tolerance=tolerance,
                chosen=trial,
                trials=tuple(trials),
                write=tiles,
                extra=extra,
                probes={p.name: p.describe(shapes[p.name]) for p in probes},
                reason=_reason(model, native),
                seconds=time.perf_counter() - start,
                forwards=forwards,
                device=str(device),
            )
        if best is None or trial.deviation < 0.99 * best.deviation:
            best, stalled = trial, 0
        else:
            stalled += 1
            if stalled >= PATIENCE:
                stop = (
                    f"halos up to {_halo_text(trial.halo)} did not lower it: what is left is "
                    "float32 rounding, or output that depends on input beyond any halo "
                    "(normalisation over space)"
                )
                break
        k += 1
    if best is None:
        raise UnstitchableModelError(
            f"{model.path!r} cannot be tiled approximately: {stop}, so no halo could be "
            "measured. Use a model with valid convolutions (stitched exactly)."
        )
    raise UnstitchableModelError(
        f"{model.path!r}: no halo keeps approximate tiles within --tolerance {tolerance:.0e} "
        f"of one whole-volume pass. The smallest deviation reached was {best.deviation:.2g} "
        f"of max |output|, with halo {_halo_text(best.halo)} (period {native.period}, "
        f"{len(trials)} halos tried); {stop}. Raise --tolerance above {best.deviation:.2g}, "
        "or use a model with valid convolutions, which stitchsafe tiles exactly."
    )


def approximate_tiling(
    model: LoadedModel,
    native: ModelGeometry,
    *,
    tolerance: float,
    volume: Volume | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    pad_mode: str = "reflect",
    tile_shape: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
) -> Approximation:
    """Choose the halo for tiling ``model`` approximately (what ``--allow-approximate`` runs).

    Parameters
    ----------
    model
        The loaded model, on ``device``.
    native
        Its own geometry (:func:`native_geometry`).
    tolerance
        Largest deviation allowed, relative to max |output| (:func:`check_tolerance`).
    volume, transform
        The input and its normalisation: the second probe is the input itself where a
        tiled run over it is small enough, else a centred crop of it.
    pad_mode
        The run's pad mode.
    tile_shape
        The run's write box, if fixed. The probe runs' tiles are at most
        :data:`PROBE_WRITE` voxels per axis (rounded up to the period) and no larger
        than this: smaller tiles put every voxel nearer a seam, so they err on the safe
        side.
    device
        Where the probes run.
    """
    tiles = tuple(max(p, -(-PROBE_WRITE // p) * p) for p in native.period)
    if tile_shape is not None:
        tiles = tuple(min(w, int(t)) for w, t in zip(tiles, tile_shape, strict=True))
    probes = [structured_probe(native.channels_in)]
    if volume is not None:
        probes.append(
            input_probe(
                volume, transform=transform, pad_mode=pad_mode, max_voxels=INPUT_PROBE_VOXELS
            )
        )
    return choose_halo(
        model,
        native,
        tolerance=tolerance,
        probes=probes,
        tile_shape=tiles,
        pad_mode=pad_mode,
        device=device,
    )
