"""Choosing the halo: the smallest one whose tiled probe runs stay within the tolerance.

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
  multiple of its own period. For each, a tiled run over a probe volume (what the engine
  does: tiles on the lattice, read with the halo, run, cropped) is compared with one
  whole-volume pass of the model over it, as its users run it: no padding beyond what
  the model's own valid sizes need (:func:`stitchsafe.engine.whole_volume_forward` with the
  model's own geometry). The deviation is ``max |tiled - whole| / max |whole|``.
- At the image border, tiles do not read past the whole pass's input: a border tile
  shifts inward (by a multiple of the period) and keeps the part of its output that lands
  on its write box, so the network's own zero padding acts at the border exactly as in
  the whole pass, and the only error left is at the tiles' inner borders, which the halo
  keeps away from every voxel written (:func:`stitchsafe.geometry.make_plan`, ``native``).
- Two probe volumes: a seeded structured input (:func:`stitchsafe.models.structured_input`)
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
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import UnstitchableModelError
from ..geometry import ModelGeometry
from ..io import Volume
from ..models import LoadedModel, suspect_layers
from ..progress import stage_progress
from ._deviation import ProbeRun, tiled_deviation
from ._halo import halo_steps, widen
from ._probes import Probe, input_probe, structured_probe
from ._result import Approximation, Trial, halo_text
from ._settings import INPUT_PROBE_VOXELS, PROBE_WRITE, SearchLimits

Shape = tuple[int, ...]

# One line per halo tried: the search takes minutes on a large model and would be silent.
_LOG = logging.getLogger("stitchsafe.approximate")


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
    tiles = probe_tiles(native.period, tile_shape)
    probes = [structured_probe(native.channels_in)]
    if volume is not None:
        probes.append(
            input_probe(
                volume, transform=transform, pad_mode=pad_mode, max_voxels=INPUT_PROBE_VOXELS
            )
        )
    run = ProbeRun(tiles, pad_mode=pad_mode, device=device)
    return choose_halo(model, native, tolerance=tolerance, probes=probes, run=run)


def probe_tiles(period: Sequence[int], tile_shape: Sequence[int] | None = None) -> Shape:
    """The probe runs' write box: :data:`PROBE_WRITE` rounded up to the period, at most
    ``tile_shape``.

    >>> probe_tiles((1, 8, 32)), probe_tiles((1, 8, 32), (4, 64, 64))
    ((16, 16, 32), (4, 16, 32))
    """
    tiles = tuple(max(p, -(-PROBE_WRITE // p) * p) for p in period)
    if tile_shape is not None:
        tiles = tuple(min(w, int(t)) for w, t in zip(tiles, tile_shape, strict=True))
    return tiles


def choose_halo(
    model: LoadedModel,
    native: ModelGeometry,
    *,
    tolerance: float,
    probes: Sequence[Probe],
    run: ProbeRun,
    limits: SearchLimits | None = None,
) -> Approximation:
    """The smallest halo (in period steps) whose tiled probe runs stay within ``tolerance``.

    Parameters
    ----------
    model
        The loaded model, on ``run.device``.
    native
        Its own geometry (:func:`native_geometry`).
    tolerance
        Largest deviation allowed, relative to max |output|.
    probes
        Probe volumes (:func:`structured_probe`, :func:`input_probe`); the largest
        deviation over them counts.
    run
        The probe runs' write box (a multiple of the period per axis), the run's pad mode
        (tiles and oracle pad the probe volume with it) and the device (float32).
    limits
        Where the search gives up: the largest extra halo, the input voxels the tiled run
        over the first probe may read, the steps without progress (default:
        :class:`SearchLimits`).

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
    >>> from stitchsafe.models import LoadedModel
    >>> from stitchsafe.geometry import ModelGeometry
    >>> same = torch.nn.Conv2d(1, 1, 3, padding=1).eval()
    >>> m = LoadedModel("same", "stitchsafe", same, None, dims=2, channels_in=1)
    >>> native = ModelGeometry(period=(1, 1), halo=((0, 0),) * 2, min_input=(1, 1), step=(1, 1))
    >>> a = choose_halo(m, native, tolerance=1e-3, probes=[structured_probe(1)],
    ...                 run=ProbeRun((8, 8)))
    >>> a.geometry.halo, [t.halo[0][0] for t in a.trials], a.deviation < 1e-6
    (((1, 1), (1, 1)), [0, 1], True)
    """
    if not probes:
        raise ValueError("choose_halo needs at least one probe")
    progress = _Progress()
    search = _Search(model, native, tolerance, tuple(probes), run, limits or SearchLimits())
    found = _search(search, progress)
    if isinstance(found, Approximation):
        return found
    raise _no_halo(search, progress, found)


@dataclass(frozen=True)
class _Search:
    """What the search measures: the model, its geometry and tolerance, probes, runs, caps."""

    model: LoadedModel
    native: ModelGeometry
    tolerance: float
    probes: tuple[Probe, ...]
    run: ProbeRun
    limits: SearchLimits


@dataclass(frozen=True)
class _Candidate:
    """A halo to try: its extra voxels, the widened geometry, each probe's shape."""

    extra: Shape
    geometry: ModelGeometry
    shapes: dict[str, Shape]


@dataclass
class _Progress:
    """The trials so far, their forward passes, the best trial and the steps since it."""

    start: float = field(default_factory=time.perf_counter)
    trials: list[Trial] = field(default_factory=list)
    forwards: int = 0
    best: Trial | None = None
    stalled: int = 0
    bar: Any = None  # advanced by each probe run's forward passes

    def stall(self, trial: Trial) -> int:
        """Steps without a lower deviation, ``trial`` included."""
        if self.best is None or trial.deviation < 0.99 * self.best.deviation:
            self.best, self.stalled = trial, 0
        else:
            self.stalled += 1
        return self.stalled


def _search(search: _Search, progress: _Progress) -> Approximation | str:
    """:func:`_try_halos`, its progress shown where stages show theirs."""
    with stage_progress("approximate: measuring the halo", unit="forward pass") as progress.bar:
        return _try_halos(search, progress)


def _try_halos(search: _Search, progress: _Progress) -> Approximation | str:
    """Try halos in period steps: the first within the tolerance, or why the search stops."""
    k = 0
    while True:
        candidate = _candidate(search, k)
        if isinstance(candidate, str):
            return candidate
        trial = _measure(search, candidate, progress)
        if trial.deviation <= search.tolerance:
            return _approximation(search, candidate, trial, progress)
        if progress.stall(trial) >= search.limits.patience:
            return (
                f"halos up to {halo_text(trial.halo)} did not lower it: what is left is "
                "float32 rounding, or output that depends on input beyond any halo "
                "(normalisation over space)"
            )
        k += 1


def _candidate(search: _Search, k: int) -> _Candidate | str:
    """The halo of step ``k``, or why the search stops before it (a cap)."""
    limits, tiles = search.limits, search.run.tile_shape
    extra = halo_steps(search.native.period)(k)
    if max(extra) > limits.max_halo:
        return f"the next halo would pass the cap of {limits.max_halo} extra voxels per side"
    geometry = widen(search.native, extra)
    read = geometry.input_for_output(tiles)
    shapes = {p.name: p.shape(tiles, read) for p in search.probes}
    first = shapes[search.probes[0].name]
    need = math.prod(-(-v // t) for v, t in zip(first, tiles, strict=True)) * math.prod(read)
    if need > limits.max_probe_voxels:
        return (
            f"the next halo's probe run would read {need} input voxels (the cap is "
            f"{limits.max_probe_voxels})"
        )
    return _Candidate(extra, geometry, shapes)


def _measure(search: _Search, candidate: _Candidate, progress: _Progress) -> Trial:
    """The deviation each probe shows with the candidate's halo, recorded in ``progress``."""
    deviations = {}
    for p in search.probes:
        data = p.read(candidate.shapes[p.name])
        deviations[p.name], passes = tiled_deviation(
            search.model, candidate.geometry, data, search.run, native=search.native
        )
        progress.forwards += passes
        if progress.bar is not None:
            progress.bar.update(passes)
    trial = Trial(candidate.geometry.halo, deviations, candidate.shapes)
    if progress.bar is not None:
        progress.bar.set_postfix(halo=halo_text(trial.halo), deviation=f"{trial.deviation:.2g}")
    progress.trials.append(trial)
    _LOG.info(
        "approximate: halo %s deviates %.2g of max |output| from one whole-image pass "
        "(tolerance %.0e; %d forward passes, %.0f s so far)",
        halo_text(trial.halo),
        trial.deviation,
        search.tolerance,
        progress.forwards,
        time.perf_counter() - progress.start,
    )
    return trial


def _approximation(
    search: _Search, candidate: _Candidate, trial: Trial, progress: _Progress
) -> Approximation:
    """The result: the candidate chosen and what the search measured."""
    return Approximation(
        model=search.model,
        geometry=candidate.geometry,
        native=search.native,
        tolerance=search.tolerance,
        chosen=trial,
        trials=tuple(progress.trials),
        write=search.run.tile_shape,
        extra=candidate.extra,
        probes={p.name: p.describe(candidate.shapes[p.name]) for p in search.probes},
        reason=_reason(search.model, search.native),
        seconds=time.perf_counter() - progress.start,
        forwards=progress.forwards,
        device=str(search.run.device),
    )


def _reason(model: LoadedModel, native: ModelGeometry) -> str:
    """Why the model cannot be stitched exactly, in a few words."""
    layers = suspect_layers(model)
    if any("norm" in n.lower() for n in layers):
        return "normalisation over space"
    if all(c == 0 for c in native.context):
        return "same-padded convolutions: its output keeps the input's size"
    return "zero-padded convolutions inside the network"


def _no_halo(search: _Search, progress: _Progress, stop: str) -> UnstitchableModelError:
    """The error when no halo within the caps meets the tolerance."""
    model, best = search.model, progress.best
    if best is None:
        return UnstitchableModelError(
            f"{model.path!r} cannot be tiled approximately: {stop}, so no halo could be "
            "measured. Use a model with valid convolutions (stitched exactly)."
        )
    return UnstitchableModelError(
        f"{model.path!r}: no halo keeps approximate tiles within --tolerance "
        f"{search.tolerance:.0e} of one whole-volume pass. The smallest deviation reached was "
        f"{best.deviation:.2g} of max |output|, with halo {halo_text(best.halo)} (period "
        f"{search.native.period}, {len(progress.trials)} halos tried); {stop}. Raise "
        f"--tolerance above {best.deviation:.2g}, or use a model with valid convolutions, "
        "which stitchsafe tiles exactly."
    )
