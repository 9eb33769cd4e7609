"""What ``plan``, ``predict`` and ``check`` share: settings -> volume, model, geometry, plan.

:func:`open_session` runs the steps in order — check the input (its own problems fail
before any model is opened), choose the model (the bundled one without ``--model``), load
it, resolve its geometry (metadata, flags, probe; or approximate mode's native geometry),
open the input, measure the approximate halo if asked, size the tiles and make the plan —
and returns them together as a :class:`Session`. :func:`plan` stops there.

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

from .approximate import ApproximateSettings, Approximation, approximate_tiling
from .engine import (
    RunSettings,
    default_max_input_voxels,
    resolve_device,
)
from .errors import StitchsafeError
from .geometry import (
    ModelGeometry,
    Plan,
    Shape,
    TilingSettings,
    clamp_tile_shape,
    default_tile_shape,
    make_plan,
)
from .io import (
    InputSelection,
    PhysicalScale,
    PhysicalSettings,
    Volume,
    channels_mismatch,
    check_input,
    input_name,
    is_array,
    is_url,
    open_volume,
)
from .model import Model, default_normalization, load_model, refuse_inexact, session_normalization
from .models import LoadedModel, model_for_input

__all__ = [
    "PlanResult",
    "Session",
    "Sources",
    "check_sources",
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
    selection: InputSelection = InputSelection()

    def to_dict(self) -> dict[str, Any]:
        d = self.plan.to_dict()
        d["geometry_source"] = self.geometry_source
        d["model"] = {"path": self.model_path, "format": self.model_format}
        d["input"] = {"path": self.input_path, "channels": self.channels}
        d["input"]["selection"] = self.selection.to_dict()  # --channel, --timepoint, --level
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

    ``model`` is a model file, a :class:`~stitchsafe.Model` kept from
    :func:`~stitchsafe.load_model` (then neither loaded nor probed again), or ``None``: the
    bundled model for the input's dimensionality;
    ``trust_model`` allows a model file to run code of its own when loaded (pickled objects,
    architecture source files), which untrusted files may not; ``physical``
    (``--voxel-size``, ``--unit``) replaces the input's own voxel size or unit;
    ``selection`` (``--channel``, ``--timepoint``, ``--level``) says what of it is read.
    """

    model: PathLike | Model | None
    input: PathLike
    input_key: str | None = None
    trust_model: bool = False
    physical: PhysicalSettings = PhysicalSettings()
    selection: InputSelection = InputSelection()


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
    """The model to run (first step of :func:`open_session`) and what to say about it."""

    model: Model
    notes: tuple[str, ...]


def open_session(
    sources: Sources,
    *,
    tiling: TilingSettings,
    run: RunSettings,
    approximate: ApproximateSettings,
    remote: bool = False,
    checked: bool = False,
) -> Session:
    """Open the input and the model, resolve the geometry and make the plan.

    ``remote``: the tiles run on other workers, so this process plans on its CPU and
    passes absolute paths (workers do not share its working directory). The input is
    checked first (:func:`stitchsafe.io.check_input`), unless the caller ``checked`` it.
    """
    device = _planning_device(run.device, remote)
    early = None if checked else check_sources(sources)
    if early is not None:
        early.close()
    resolved = _resolve_model(sources, tiling, approximate)
    volume = _open_input(sources, resolved.model.geometry, remote)
    try:
        session = _plan_session(resolved, volume, device, sources.input, tiling, run, approximate)
    except BaseException:
        volume.close()
        raise
    session.result = replace(session.result, physical=volume.physical, selection=volume.selection)
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
    """The model given (loaded now, or kept from :func:`load_model`), else the bundled one."""
    notes: list[str] = []
    model = sources.model
    approximate_ok = approximate.tolerance_value is not None
    if isinstance(model, Model):
        model.check_flags(tiling)
    else:
        if model is None:
            model = model_for_input(
                sources.input,
                input_key=sources.input_key,
                physical=sources.physical,
                selection=sources.selection,
            )
            notes.append(
                f"no --model given: using the bundled {model.stem} model (synthetic "
                "nuclei-like cells; train your own with `stitchsafe train`)."
            )
        model = load_model(
            model,
            trust_model=sources.trust_model,
            pooling_factors=tiling.pooling_factors,
            depth=tiling.depth,
            allow_approximate=approximate_ok,
        )
    if not approximate_ok:
        refuse_inexact(model)
    elif model.exact:
        notes.append(
            "--allow-approximate: this model stitches exactly, so the tiles are exact and "
            "no tolerance applies."
        )
    return _Resolved(model, tuple(notes))


def check_sources(sources: Sources) -> Volume | None:
    """The input of ``sources`` checked before its model is opened
    (:func:`stitchsafe.io.check_input`); the caller closes the volume returned."""
    model = sources.model
    return check_input(
        sources.input,
        key=sources.input_key,
        physical=sources.physical,
        selection=sources.selection,
        dims=(model.geometry.dims,) if isinstance(model, Model) else (3, 2),
    )


def _open_input(sources: Sources, geometry: ModelGeometry, remote: bool) -> Volume:
    """Open the input volume and check its channels against the model's."""
    input = sources.input
    # Workers elsewhere do not share this process's working directory.
    local = not (is_array(input) or is_url(input))
    where = os.path.abspath(input) if remote and local else input
    volume = open_volume(
        where,
        key=sources.input_key,
        spatial_dims=geometry.dims,
        physical=sources.physical,
        selection=sources.selection,
    )
    if volume.channels != geometry.channels_in:
        volume.close()
        raise StitchsafeError(channels_mismatch(input, volume, geometry.channels_in))
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
    loaded, geometry = resolved.model.loaded.to(device), resolved.model.geometry
    given = tiling.checked_tile_shape(geometry)
    notes = list(resolved.notes)
    if given is not None:  # before the approximate halo search, which runs such tiles
        given = _clamped(given, volume.shape, geometry.period, notes)
    approximation = None
    if not resolved.model.exact:
        approximation = _approximate(loaded, geometry, volume, given, run, approximate, device)
        loaded, geometry = approximation.model, approximation.geometry
        notes.append(approximation.note())
    budget = None
    if given is None:
        budget = default_max_input_voxels(loaded, geometry, device)
        given = default_tile_shape(volume.shape, geometry, max_input_voxels=budget)
    given = _clamped(given, volume.shape, geometry.period, notes)
    native = approximation.native if approximation is not None else None
    result = PlanResult(
        plan=make_plan(volume.shape, geometry, tile_shape=given, native=native),
        geometry_source=resolved.model.source,
        model_path=resolved.model.path,
        model_format=loaded.format,
        input_path=input_name(input),
        channels=volume.channels,
        notes=(*notes, *loaded.notes),
        approximate=approximation.to_dict() if approximation is not None else None,
    )
    return Session(loaded, volume, geometry, result, device, budget)


def _clamped(given: Shape, volume: Shape, period: Shape, notes: list[str]) -> Shape:
    """``given`` no larger than ``volume`` needs (:func:`clamp_tile_shape`); a note says so."""
    clamped = clamp_tile_shape(given, volume, period)
    if clamped != given:
        notes.append(
            f"--tile-shape {given} is larger than the volume {volume} needs; using "
            f"{clamped} (the smallest multiple of the period {period} that covers it)."
        )
    return clamped


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
    model: PathLike | Model | None,
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
    channel: int | Sequence[int] | str | None = None,
    timepoint: int | None = None,
    level: int | None = None,
    axes: str | None = None,
) -> PlanResult:
    """Work out the exact tiling of ``input`` for ``model`` without running it.

    Parameters
    ----------
    model
        A ``.pt2``, TorchScript, checkpoint or bioimage.io package, or a :class:`Model` kept
        from :func:`stitchsafe.load_model` (not loaded again); ``None``: the bundled one.
    input
        A zarr array, zarr group (with ``input_key``), OME-Zarr image, TIFF or HDF5 file.
    tile_shape, pooling_factors, depth
        Output write box per tile (a multiple of the period; default: the largest that fits
        the device's memory budget); geometry hints for models without metadata.
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the default tile size depends on it).
    allow_approximate, tolerance
        Tile a model that cannot be stitched exactly (same padding) with a measured halo:
        tiles then deviate from one whole-volume pass by at most ``tolerance`` (relative to
        max |output|, default 1e-3; :mod:`stitchsafe.approximate`). Else it is refused.
    trust_model
        Let the model file run code of its own when loaded (pickled objects in a ``.pt2``,
        a bioimage.io architecture as source code); only for files from a trusted source.
    voxel_size, unit, channel, timepoint, level, axes
        The input's voxel size (``Z,Y,X`` or one for all) and unit, over its own metadata;
        the channel(s), timepoint, level and axes read (:class:`stitchsafe.io.InputSelection`).

    Returns
    -------
    PlanResult
        The plan and where the geometry came from (``metadata``, ``flags`` or ``probe``);
        ``approximate`` holds the measured halo and deviation in approximate mode.
    """
    tiling = TilingSettings(tile_shape=tile_shape, pooling_factors=pooling_factors, depth=depth)
    chosen = InputSelection.parse(channel, timepoint, level, axes)
    session = open_session(
        Sources(model, input, input_key, trust_model, PhysicalSettings(voxel_size, unit), chosen),
        tiling=tiling,
        run=RunSettings(device=device),
        approximate=ApproximateSettings(allow=allow_approximate, tolerance=tolerance),
    )
    session.volume.close()
    return session.result
