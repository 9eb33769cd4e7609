"""What ``plan``, ``predict`` and ``check`` share: settings -> volume, model, geometry, plan.

:func:`open_session` runs the steps in order — choose the model (the bundled one without
``--model``), load it, resolve its geometry (metadata, flags, probe; or approximate mode's
native geometry), open the input, measure the approximate halo if asked, size the tiles and
make the plan — and returns them together as a :class:`Session`. :func:`plan` is the public
function that stops there.

>>> import stitchsafe
>>> stitchsafe.plan is plan
True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from .approximate import ApproximateSettings, Approximation, approximate_tiling, native_geometry
from .engine import (
    Normalization,
    RunSettings,
    compute_normalization,
    default_max_input_voxels,
    resolve_device,
)
from .errors import StitchsafeError, UnstitchableModelError
from .geometry import (
    ModelGeometry,
    Plan,
    Shape,
    TilingSettings,
    clamp_tile_shape,
    default_tile_shape,
    make_plan,
)
from .io import PhysicalScale, PhysicalSettings, Volume, open_volume
from .models import LoadedModel, load_model, model_for_input, resolve_geometry

__all__ = [
    "PlanResult",
    "Session",
    "Sources",
    "default_normalization",
    "open_session",
    "plan",
    "session_normalization",
]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PlanResult:
    """A plan together with where its geometry came from."""

    plan: Plan
    geometry_source: str
    model_path: str
    model_format: str
    input_path: str
    channels: int
    notes: tuple[str, ...] = ()
    approximate: dict[str, Any] | None = None
    physical: PhysicalScale | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.plan.to_dict()
        d["geometry_source"] = self.geometry_source
        d["model"] = {"path": self.model_path, "format": self.model_format}
        d["input"] = {"path": self.input_path, "channels": self.channels}
        # Voxel size, units and translation of the input (or --voxel-size/--unit).
        d["physical"] = None if self.physical is None else self.physical.to_dict()
        # Approximate mode (--allow-approximate) is never silent: null means exact.
        d["approximate"] = self.approximate
        if self.approximate is not None:
            d["exact"] = False
        return d


@dataclass(frozen=True)
class Sources:
    """What runs on what: the model file, the input, and whether the model file is trusted.

    ``model`` ``None`` means the bundled model for the input's dimensionality;
    ``trust_model`` allows a model file to run code of its own when loaded (pickled objects,
    architecture source files), which untrusted files may not; ``physical``
    (``--voxel-size``, ``--unit``) replaces the input's own voxel size or unit.
    """

    model: PathLike | None
    input: PathLike
    input_key: str | None = None
    trust_model: bool = False
    physical: PhysicalSettings = PhysicalSettings()


@dataclass
class Session:
    """Model, volume and plan opened together; the caller closes :attr:`volume`."""

    model: LoadedModel
    volume: Volume
    geometry: ModelGeometry
    result: PlanResult
    device: torch.device
    budget: int | None = None  # input voxels per tile that fit the device, when measured

    @property
    def model_geometry(self) -> ModelGeometry:
        """The model's own geometry: what one whole-volume pass of it reads and returns.

        :attr:`geometry` tiles; in approximate mode its halo is wider than the model's own,
        and the plan keeps the model's own as ``plan.native``.
        """
        return self.result.plan.model_geometry


@dataclass(frozen=True)
class _Resolved:
    """The model loaded and its geometry resolved (first steps of :func:`open_session`)."""

    model: LoadedModel
    path: PathLike
    geometry: ModelGeometry
    source: str
    approximate: bool
    notes: tuple[str, ...]


def default_normalization(model: LoadedModel) -> tuple[str, tuple[float, float]]:
    """Normalisation method and percentiles from the model's metadata (default: percentile)."""
    meta = (model.metadata or {}).get("normalization") or {}
    method = str(meta.get("method", "percentile"))
    pct = meta.get("percentiles", (1.0, 99.8))
    return method, (float(pct[0]), float(pct[1]))


def session_normalization(
    model: LoadedModel, volume: Volume, normalize: str | None
) -> Normalization:
    """Whole-volume intensity statistics: ``normalize`` or the model's declared method.

    Non-finite voxels (NaN, Inf) seen by the statistics are refused here, before any tile
    runs; tiles refuse any the statistics' sample did not see.
    """
    method, percentiles = default_normalization(model)
    return compute_normalization(
        volume, method=normalize or method, percentiles=percentiles, refuse_non_finite=True
    )


def open_session(
    sources: Sources,
    *,
    tiling: TilingSettings,
    run: RunSettings,
    approximate: ApproximateSettings,
    remote: bool = False,
) -> Session:
    """Open the input and the model, resolve the geometry and make the plan.

    ``remote``: the tiles run on other workers, so this process plans on its CPU and
    passes absolute paths (workers do not share its working directory).
    """
    device = _planning_device(run.device, remote)
    resolved = _resolve_model(sources, tiling, approximate)
    volume = _open_input(sources, resolved.geometry, remote)
    try:
        session = _plan_session(resolved, volume, device, sources.input, tiling, run, approximate)
    except BaseException:
        volume.close()
        raise
    session.result = replace(session.result, physical=volume.physical)
    return session


def _planning_device(device: str, remote: bool) -> torch.device:
    """The device this process plans on: the run's, or the CPU when workers run the tiles."""
    if not remote:
        return resolve_device(device)
    # The workers run the model; this process only plans, on its CPU (it may be a login
    # node without a GPU). The device is checked for form here, for real there.
    if device != "auto":
        try:
            torch.device(device)
        except RuntimeError:
            raise StitchsafeError(
                f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N."
            ) from None
    return torch.device("cpu")


def _resolve_model(
    sources: Sources, tiling: TilingSettings, approximate: ApproximateSettings
) -> _Resolved:
    """Load the model (the bundled one by default) and resolve its geometry."""
    notes: list[str] = []
    model = sources.model
    if model is None:
        model = model_for_input(
            sources.input, input_key=sources.input_key, physical=sources.physical
        )
        notes.append(
            f"no --model given: using the bundled {model.stem} model (synthetic nuclei-like "
            "cells; train your own with `stitchsafe train`)."
        )
    loaded = load_model(model, device="cpu", trust=sources.trust_model)
    pooling = tiling.pooling(loaded.dims)
    try:
        geometry, source = resolve_geometry(loaded, pooling_factors=pooling, depth=tiling.depth)
    except UnstitchableModelError:
        if approximate.tolerance_value is None:
            raise
        # Tiles stay on the model's period lattice; the halo is measured later.
        geometry, source = native_geometry(loaded, pooling_factors=pooling, depth=tiling.depth)
        return _Resolved(loaded, model, geometry, source, True, tuple(notes))
    if approximate.tolerance_value is not None:
        notes.append(
            "--allow-approximate: this model stitches exactly, so the tiles are exact and "
            "no tolerance applies."
        )
    return _Resolved(loaded, model, geometry, source, False, tuple(notes))


def _open_input(sources: Sources, geometry: ModelGeometry, remote: bool) -> Volume:
    """Open the input volume and check its channels against the model's."""
    input = sources.input
    # Workers elsewhere do not share this process's working directory.
    where = os.path.abspath(input) if remote else input
    volume = open_volume(
        where, key=sources.input_key, spatial_dims=geometry.dims, physical=sources.physical
    )
    if volume.channels != geometry.channels_in:
        volume.close()
        raise StitchsafeError(
            f"the input {os.fspath(input)!r} has {volume.channels} channel(s) but the model "
            f"expects {geometry.channels_in}. Pass an input with a leading channel axis of "
            f"size {geometry.channels_in}"
            + (" (or select one with --input-key)." if geometry.channels_in > 1 else ".")
        )
    return volume


def _plan_session(
    resolved: _Resolved,
    volume: Volume,
    device: torch.device,
    input: PathLike,
    tiling: TilingSettings,
    run: RunSettings,
    approximate: ApproximateSettings,
) -> Session:
    """Approximate halo (if any), tile shape and plan, for an opened model and volume."""
    loaded, geometry = resolved.model.to(device), resolved.geometry
    given = tiling.checked_tile_shape(geometry)
    notes = list(resolved.notes)
    approximation = None
    if resolved.approximate:
        approximation = _approximate(loaded, geometry, volume, given, run, approximate, device)
        loaded, geometry = approximation.model, approximation.geometry
        notes.append(approximation.note())
    budget = None
    if given is None:
        budget = default_max_input_voxels(loaded, geometry, device)
        given = default_tile_shape(volume.shape, geometry, max_input_voxels=budget)
    clamped = clamp_tile_shape(given, volume.shape, geometry.period)
    if clamped != given:
        notes.append(
            f"--tile-shape {given} is larger than the volume {volume.shape} needs; using "
            f"{clamped} (the smallest multiple of the period {geometry.period} that covers it)."
        )
        given = clamped
    native = approximation.native if approximation is not None else None
    result = PlanResult(
        plan=make_plan(volume.shape, geometry, tile_shape=given, native=native),
        geometry_source=resolved.source,
        model_path=os.fspath(resolved.path),
        model_format=loaded.format,
        input_path=os.fspath(input),
        channels=volume.channels,
        notes=(*notes, *loaded.notes),
        approximate=approximation.to_dict() if approximation is not None else None,
    )
    return Session(loaded, volume, geometry, result, device, budget)


def _approximate(
    model: LoadedModel,
    native: ModelGeometry,
    volume: Volume,
    tile_shape: Shape | None,
    run: RunSettings,
    approximate: ApproximateSettings,
    device: torch.device,
) -> Approximation:
    """The measured halo of approximate mode (:mod:`stitchsafe.approximate`)."""
    tolerance = approximate.tolerance_value
    assert tolerance is not None
    return approximate_tiling(
        model,
        native,
        tolerance=tolerance,
        volume=volume,
        transform=session_normalization(model, volume, run.normalize),
        pad_mode=run.pad_mode,
        tile_shape=tile_shape,
        device=device,
    )


def plan(  # noqa: PLR0913 - the public keywords; they become settings values at once
    model: PathLike | None,
    input: PathLike,
    *,
    input_key: str | None = None,
    tile_shape: Any = None,
    pooling_factors: Any = None,
    depth: int | None = None,
    device: str = "auto",
    allow_approximate: bool = False,
    tolerance: float | None = None,
    trust_model: bool = False,
    voxel_size: float | Sequence[float] | str | None = None,
    unit: str | None = None,
) -> PlanResult:
    """Work out the exact tiling of ``input`` for ``model`` without running it.

    Parameters
    ----------
    model
        A torch.export program (``.pt2``), a TorchScript file or a stitchsafe checkpoint;
        ``None``: the bundled model for the input's dimensionality
        (:mod:`stitchsafe.models`).
    input
        A zarr array, zarr group (with ``input_key``), OME-Zarr image or TIFF.
    tile_shape
        Output write box per tile (a multiple of the period); default: the largest that
        fits the device's memory budget.
    pooling_factors, depth
        Geometry hints for models without metadata.
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the default tile size depends on it).
    allow_approximate, tolerance
        Tile a model that cannot be stitched exactly (same-padded convolutions) anyway:
        tiles stay on the period lattice and the halo is measured so that they deviate
        from one whole-volume pass by at most ``tolerance`` (relative to max |output|;
        default 1e-3) on probe inputs (:mod:`stitchsafe.approximate`). Without it such
        models are refused.
    trust_model
        Let the model file run code of its own when it is loaded (pickled objects in a
        ``.pt2``, a bioimage.io architecture given as source code). Only for files from a
        source you trust; without it such files are refused.
    voxel_size, unit
        The input's voxel size (``Z,Y,X`` or one for all) and unit, over its own metadata.

    Returns
    -------
    PlanResult
        The plan and where the geometry came from (``metadata``, ``flags`` or ``probe``);
        ``approximate`` holds the measured halo and deviation in approximate mode.
    """
    tiling = TilingSettings(tile_shape=tile_shape, pooling_factors=pooling_factors, depth=depth)
    session = open_session(
        Sources(model, input, input_key, trust_model, PhysicalSettings(voxel_size, unit)),
        tiling=tiling,
        run=RunSettings(device=device),
        approximate=ApproximateSettings(allow=allow_approximate, tolerance=tolerance),
    )
    session.volume.close()
    return session.result
