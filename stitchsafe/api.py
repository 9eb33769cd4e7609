"""The public Python API; the command line calls exactly these functions.

>>> import stitchsafe
>>> callable(stitchsafe.plan) and callable(stitchsafe.predict) and callable(stitchsafe.segment)
True
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import StitchsafeError
from .geometry import (
    ModelGeometry,
    Plan,
    check_tile_shape,
    default_tile_shape,
    make_plan,
    normalize_pooling_factors,
)

if TYPE_CHECKING:
    from .approximate import Approximation
    from .io import OutputSpec, Volume
    from .model import LoadedModel
    from .normalize import Normalization
    from .schedulers import SchedulerSpec
    from .slurm import SlurmOptions

PathLike = str | os.PathLike[str]
SPATIAL_AXES = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}


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

    def to_dict(self) -> dict[str, Any]:
        d = self.plan.to_dict()
        d["geometry_source"] = self.geometry_source
        d["model"] = {"path": self.model_path, "format": self.model_format}
        d["input"] = {"path": self.input_path, "channels": self.channels}
        # Approximate mode (--allow-approximate) is never silent: null means exact.
        d["approximate"] = self.approximate
        if self.approximate is not None:
            d["exact"] = False
        return d


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict` wrote and how long it took.

    ``labels`` (the label array's path inside ``output``) and ``objects`` are ``None``
    when labels were not requested.
    """

    output: str
    embeddings: str | None
    plan: PlanResult
    tiles: int
    seconds: float
    device: str
    normalization: dict[str, Any] = field(default_factory=dict)
    labels: str | None = None
    objects: int | None = None
    label_params: dict[str, Any] | None = None
    batch_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "embeddings": self.embeddings,
            "batch_size": self.batch_size,
            "labels": self.labels,
            "objects": self.objects,
            "plan": self.plan.to_dict(),
            "approximate": self.plan.approximate,
            "tiles": self.tiles,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "normalization": self.normalization,
            "label_params": self.label_params,
        }


@dataclass(frozen=True)
class SegmentResult:
    """What :func:`segment` wrote: label array path (inside ``output``), object count."""

    output: str
    embeddings: str
    labels: str
    objects: int
    blocks: int
    seconds: float
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "embeddings": self.embeddings,
            "labels": self.labels,
            "objects": self.objects,
            "blocks": self.blocks,
            "seconds": round(self.seconds, 3),
            "params": self.params,
        }


def _pooling(
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None,
    depth: int | None,
    dims: int,
) -> tuple[tuple[int, ...], ...] | None:
    if pooling_factors is None:
        if depth is not None:
            raise StitchsafeError("--depth needs --pooling-factor (e.g. --pooling-factor 2).")
        return None
    return normalize_pooling_factors(pooling_factors, dims=dims, depth=depth)


@dataclass
class _Session:
    """Model, volume and plan opened together (internal)."""

    model: LoadedModel
    volume: Volume
    geometry: ModelGeometry
    result: PlanResult
    device: Any
    budget: int | None = None  # input voxels per tile that fit the device, when measured


def _open(
    model: PathLike | None,
    input: PathLike,
    *,
    input_key: str | None,
    tile_shape: Sequence[int] | int | None,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None,
    depth: int | None,
    device: str,
    remote: bool = False,
    allow_approximate: bool = False,
    tolerance: float | None = None,
    pad_mode: str = "reflect",
    normalize: str | None = None,
) -> _Session:
    from .approximate import check_tolerance
    from .engine import default_max_input_voxels, resolve_device
    from .errors import UnstitchableModelError
    from .io import open_volume
    from .model import load_model, resolve_geometry

    tolerance = check_tolerance(tolerance, allow_approximate=allow_approximate)

    if remote:
        # The workers run the model; this process only plans, on its CPU (it may be a
        # login node without a GPU). The device is checked for form here, for real there.
        import torch

        if device != "auto":
            try:
                torch.device(device)
            except RuntimeError:
                raise StitchsafeError(
                    f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N."
                ) from None
        dev = torch.device("cpu")
    else:
        dev = resolve_device(device)
    notes: list[str] = []
    if model is None:
        from .bundled import model_for_input

        model = model_for_input(input, input_key=input_key)
        notes.append(
            f"no --model given: using the bundled {model.stem} model (synthetic nuclei-like "
            "cells; train your own with `stitchsafe train`)."
        )
    loaded = load_model(model, device="cpu")
    pf = _pooling(pooling_factors, depth, loaded.dims)
    approximate = False
    try:
        geometry, source = resolve_geometry(loaded, pooling_factors=pf, depth=depth)
    except UnstitchableModelError:
        if tolerance is None:
            raise
        from .approximate import native_geometry

        # Tiles stay on the model's period lattice; the halo is measured below.
        geometry, source = native_geometry(loaded, pooling_factors=pf, depth=depth)
        approximate = True
    else:
        if tolerance is not None:
            notes.append(
                "--allow-approximate: this model stitches exactly, so the tiles are exact and "
                "no tolerance applies."
            )
    # Workers elsewhere do not share this process's working directory.
    where = os.path.abspath(input) if remote else input
    volume = open_volume(where, key=input_key, spatial_dims=geometry.dims)
    if volume.channels != geometry.channels_in:
        volume.close()
        raise StitchsafeError(
            f"the input {os.fspath(input)!r} has {volume.channels} channel(s) but the model "
            f"expects {geometry.channels_in}. Pass an input with a leading channel axis of "
            f"size {geometry.channels_in}"
            + (" (or select one with --input-key)." if geometry.channels_in > 1 else ".")
        )
    loaded = loaded.to(dev)
    given = None
    if tile_shape is not None:
        given = check_tile_shape(
            (tile_shape,) * geometry.dims if isinstance(tile_shape, int) else tile_shape,
            geometry,
        )
    approximation = None
    if approximate:
        assert tolerance is not None
        try:
            approximation = _approximate(
                loaded, geometry, volume, tolerance, given, pad_mode, normalize, dev
            )
        except BaseException:
            volume.close()
            raise
        loaded, geometry = approximation.model, approximation.geometry
        notes.append(approximation.note())
    budget = None
    if given is None:
        budget = default_max_input_voxels(loaded, geometry, dev)
        tshape = default_tile_shape(volume.shape, geometry, max_input_voxels=budget)
    else:
        tshape = given
    the_plan = make_plan(volume.shape, geometry, tile_shape=tshape)
    result = PlanResult(
        plan=the_plan,
        geometry_source=source,
        model_path=os.fspath(model),
        model_format=loaded.format,
        input_path=os.fspath(input),
        channels=volume.channels,
        notes=(*notes, *loaded.notes),
        approximate=approximation.to_dict() if approximation is not None else None,
    )
    return _Session(loaded, volume, geometry, result, dev, budget)


def _approximate(
    model: LoadedModel,
    native: ModelGeometry,
    volume: Volume,
    tolerance: float,
    tile_shape: Sequence[int] | None,
    pad_mode: str,
    normalize: str | None,
    device: Any,
) -> Approximation:
    """The measured halo of approximate mode (:mod:`stitchsafe.approximate`)."""
    from .approximate import approximate_tiling
    from .normalize import compute_normalization

    method, percentiles = default_normalization(model)
    norm = compute_normalization(volume, method=normalize or method, percentiles=percentiles)
    return approximate_tiling(
        model,
        native,
        tolerance=tolerance,
        volume=volume,
        transform=norm,
        pad_mode=pad_mode,
        tile_shape=tile_shape,
        device=device,
    )


def plan(
    model: PathLike | None,
    input: PathLike,
    *,
    input_key: str | None = None,
    tile_shape: Sequence[int] | int | None = None,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    depth: int | None = None,
    device: str = "auto",
    allow_approximate: bool = False,
    tolerance: float | None = None,
) -> PlanResult:
    """Work out the exact tiling of ``input`` for ``model`` without running it.

    Parameters
    ----------
    model
        A torch.export program (``.pt2``), a TorchScript file or a stitchsafe checkpoint;
        ``None``: the bundled model for the input's dimensionality
        (:mod:`stitchsafe.bundled`).
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

    Returns
    -------
    PlanResult
        The plan and where the geometry came from (``metadata``, ``flags`` or ``probe``);
        ``approximate`` holds the measured halo and deviation in approximate mode.
    """
    session = _open(
        model,
        input,
        input_key=input_key,
        tile_shape=tile_shape,
        pooling_factors=pooling_factors,
        depth=depth,
        device=device,
        allow_approximate=allow_approximate,
        tolerance=tolerance,
    )
    session.volume.close()
    return session.result


EMBEDDING_DTYPES = ("float32", "float16")


def _previous_run(group: str, image: str) -> tuple[OutputSpec, dict[str, Any]] | None:
    """The output image an interrupted run left at ``group/image``, with its attributes."""
    import zarr

    from .io import OutputSpec as Spec

    path = os.path.join(group, *image.split("/"))
    if not os.path.exists(os.path.join(path, "zarr.json")):
        return None
    try:
        attrs = zarr.open_group(store=path, mode="r").attrs.asdict().get("stitchsafe")
    except Exception:  # noqa: BLE001 - unreadable: not ours to resume
        attrs = None
    if not isinstance(attrs, dict):
        raise StitchsafeError(
            f"{path} exists but was not written by stitchsafe; choose another --output."
        )
    return Spec(group=group, image=image, array=f"{image}/0"), attrs


def default_normalization(model: LoadedModel) -> tuple[str, tuple[float, float]]:
    """Normalisation method and percentiles from the model's metadata (default: percentile)."""
    meta = (model.metadata or {}).get("normalization") or {}
    method = str(meta.get("method", "percentile"))
    pct = meta.get("percentiles", (1.0, 99.8))
    return method, (float(pct[0]), float(pct[1]))


def predict(
    model: PathLike | None,
    input: PathLike,
    *,
    output: PathLike | None = None,
    input_key: str | None = None,
    tile_shape: Sequence[int] | int | None = None,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    depth: int | None = None,
    batch_size: int | str = 1,
    device: str = "auto",
    pad_mode: str = "reflect",
    normalize: str | None = None,
    precision: str = "fp32",
    embeddings_dtype: str = "float32",
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    labels: bool = True,
    threshold: float | None = None,
    min_size: int | None = None,
    foreground_threshold: float | None = None,
    seed_threshold: float | None = None,
    seed_foreground_threshold: float | None = None,
    grow: int | None = None,
    label_dtype: str = "uint32",
    scheduler: str = "threads",
    cluster: SlurmOptions | None = None,
    allow_approximate: bool = False,
    tolerance: float | None = None,
    embeddings: bool = True,
) -> PredictResult:
    """Run ``model`` over ``input`` tile by tile; the result equals one whole-volume pass.

    Parameters
    ----------
    model, input, input_key, tile_shape, pooling_factors, depth, device
        As for :func:`plan`.
    output
        Zarr v3 group to write into. Default: the input's own zarr v3 container, or
        ``<input stem>.stitchsafe.zarr`` beside a TIFF, a bare array or a zarr v2 input.
    batch_size
        Tiles per forward pass, or ``"auto"``: on a CUDA device (threads scheduler) as many
        tiles as fit half of the free device memory (measured with one small forward pass,
        as for the default tile shape), at most 32; elsewhere 1.
    pad_mode
        ``reflect`` (default), ``constant`` (zeros after normalisation) or ``edge``:
        ``numpy.pad`` semantics applied to the whole volume.
    normalize
        ``none``, ``percentile`` or ``zscore``; statistics are computed once over the whole
        volume (or a deterministic sample). Default: from the model's metadata.
    overwrite
        Replace an existing embeddings image in the output group.
    progress
        Show a progress bar on stderr.
    labels
        Also write instance labels (see :func:`segment`) under
        ``<embeddings image>/labels/instances``.
    precision
        ``fp32`` (default; exact to float rounding), ``bf16`` or ``fp16`` (autocast: faster
        on GPUs, but stitched results then differ from a whole-volume pass by ~1e-2).
    embeddings_dtype
        ``float32`` (default) or ``float16`` (half the disk and write time; embeddings
        rounded to ~1e-3 relative, labels computed from the rounded values).
    resume
        Continue an interrupted run into the same output: only tiles not yet marked done
        are computed (:mod:`stitchsafe.resume`); refused when the plan, the model file or
        the settings changed. Labels are then derived anew. Without an existing output
        this is a normal run.
    threshold, min_size, foreground_threshold, label_dtype
        As for :func:`segment`; defaults from the model's metadata.
    seed_threshold, seed_foreground_threshold, grow
        As for :func:`segment`.
    scheduler
        Where the tiles run (:mod:`stitchsafe.schedulers`): ``threads`` (default, this
        process), ``processes[:N]``, ``local[:N]`` (a dask ``LocalCluster``) or the address
        of a running dask scheduler. Off ``threads`` the workers load the model from its
        path and must see the model, input and output files; without ``tile_shape`` the
        tiles are sized for the CPU budget. Labels run on the same dask cluster (on threads
        here for ``processes``). The output is identical on every scheduler.
    cluster
        Start dask workers as SLURM jobs (:mod:`stitchsafe.slurm`) instead of
        ``scheduler``; they are cancelled when the run ends.
    allow_approximate, tolerance
        As for :func:`plan`; the halo is measured with this run's ``pad_mode`` and
        normalisation, stored with the output (``stitchsafe.approximate``) and part of the
        run's fingerprint (``resume`` refuses another tolerance). The ``threads``
        scheduler only.
    embeddings
        ``False``: a labels-only run (:mod:`stitchsafe.labels_only`) — the labels are
        computed from each tile in memory and written to the stand-alone label image
        ``<output>/instances``; no embeddings are written. Identical labels, exact; the
        ``threads`` scheduler only, float32 embeddings, and not with approximate mode.

    Returns
    -------
    PredictResult
        Output group, embeddings (and labels) array paths, plan, tile count, seconds.
    """
    from .engine import PAD_MODES, check_precision, run_plan
    from .instances import label_defaults
    from .io import default_output_location, mark_complete, prepare_output
    from .labelling import check_label_dtype, open_embeddings, resolve_label_params, write_labels
    from .normalize import compute_normalization
    from .resume import DoneMask, check_fingerprint, file_sha256, run_fingerprint
    from .schedulers import parse_scheduler

    where = parse_scheduler(scheduler)
    remote = where.distributed or cluster is not None
    if pad_mode not in PAD_MODES:
        raise StitchsafeError(f"--pad-mode {pad_mode!r} is not one of {', '.join(PAD_MODES)}.")
    if batch_size != "auto" and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise StitchsafeError(f"--batch-size must be 'auto' or at least 1, got {batch_size!r}.")
    check_precision(precision)
    if resume and overwrite:
        raise StitchsafeError(
            "--resume continues an interrupted run and --overwrite starts again; pass one."
        )
    if embeddings_dtype not in EMBEDDING_DTYPES:
        raise StitchsafeError(
            f"--embeddings-dtype {embeddings_dtype!r} is not one of {', '.join(EMBEDDING_DTYPES)}."
        )
    if not embeddings:
        _check_labels_only(
            labels=labels,
            remote=remote,
            allow_approximate=allow_approximate,
            embeddings_dtype=embeddings_dtype,
        )
    start = time.perf_counter()
    session = _open(
        model,
        input,
        input_key=input_key,
        tile_shape=tile_shape,
        pooling_factors=pooling_factors,
        depth=depth,
        device=device,
        remote=remote,
        allow_approximate=allow_approximate,
        tolerance=tolerance,
        pad_mode=pad_mode,
        normalize=normalize,
    )
    volume, geometry, the_plan = session.volume, session.geometry, session.result.plan
    approximate = session.result.approximate
    if approximate is not None and remote:
        volume.close()
        raise StitchsafeError(
            "--allow-approximate runs on --scheduler threads only: workers load the model "
            "from its file and would not crop the measured halo. Drop --scheduler/--cluster."
        )
    if batch_size == "auto":
        batch_size = _auto_batch(session, remote)
    assert isinstance(batch_size, int)
    workers = contextlib.ExitStack()
    try:
        metadata = session.model.metadata or {}
        roles = metadata.get("channel_roles")
        defaults = label_defaults(metadata)
        # Bad label flags fail now, before the network runs.
        params = resolve_label_params(
            defaults,
            roles,
            channels=geometry.channels_out,
            threshold=threshold,
            min_size=min_size,
            foreground_threshold=foreground_threshold,
            seed_threshold=seed_threshold,
            seed_foreground_threshold=seed_foreground_threshold,
            grow=grow,
        )
        check_label_dtype(label_dtype)
        method, percentiles = default_normalization(session.model)
        norm: Normalization = compute_normalization(
            volume, method=normalize or method, percentiles=percentiles
        )
        group, image = default_output_location(volume)
        if output is not None:
            group = os.fspath(output)
        if remote:
            group = os.path.abspath(group)  # workers write here from their own directories
        model_sha256 = file_sha256(session.result.model_path)
        fingerprint = run_fingerprint(
            the_plan,
            model_sha256=model_sha256,
            normalization=norm.to_dict(),
            pad_mode=pad_mode,
            precision=precision,
            embeddings_dtype=embeddings_dtype,
            approximate=None if approximate is None else {"tolerance": approximate["tolerance"]},
        )
        attrs = {
            "plan": session.result.to_dict(),
            "approximate": approximate,
            "normalization": norm.to_dict(),
            "pad_mode": pad_mode,
            "channel_roles": roles,
            "label_defaults": defaults,
            "run": fingerprint,
            "complete": False,
        }
        if not embeddings:
            return _predict_labels_only(
                session,
                group=group,
                attrs=attrs,
                fingerprint=fingerprint,
                params=params,
                label_dtype=label_dtype,
                norm=norm,
                pad_mode=pad_mode,
                batch_size=batch_size,
                precision=precision,
                overwrite=overwrite,
                resume=resume,
                progress=progress,
                start=start,
            )
        # Workers first: an unreachable scheduler must fail before anything is written.
        executor = workers.enter_context(_executor(where, cluster, device)) if remote else None
        previous = _previous_run(group, image) if resume else None
        if previous is None:
            spec = prepare_output(
                group,
                image=image,
                shape=volume.shape,
                channels=geometry.channels_out,
                chunks=the_plan.chunks,
                axes=SPATIAL_AXES[geometry.dims],
                dtype=embeddings_dtype,
                overwrite=overwrite,
                attributes=attrs,
            )
            done = DoneMask.create(spec.group, spec.image, the_plan.grid_shape)
            todo = None
        else:
            spec, stored = previous
            check_fingerprint(stored.get("run"), fingerprint, f"{group}/{image}")
            done = DoneMask.open(spec.group, spec.image, the_plan.grid_shape)
            todo = done.remaining(the_plan)
            # Labels from before the interruption (if any) are derived anew below.
        try:
            if executor is None:
                stats = run_plan(
                    volume,
                    session.model,
                    the_plan,
                    spec,
                    transform=norm,
                    pad_mode=pad_mode,
                    batch_size=batch_size,
                    device=session.device,
                    precision=precision,
                    tiles=todo,
                    on_done=done.mark,
                    progress=progress,
                )
            else:
                from .tile_tasks import TileJob, run_plan_distributed

                job = TileJob(
                    model=os.path.abspath(session.result.model_path),
                    model_sha256=model_sha256,
                    volume=volume,
                    plan=the_plan,
                    output=spec,
                    output_dtype=embeddings_dtype,
                    normalization=norm.to_dict(),
                    pad_mode=pad_mode,
                    precision=precision,
                    device=device,
                )
                describe = "slurm" if cluster is not None else where.describe()
                stats = run_plan_distributed(
                    executor,
                    job,
                    tiles=todo,
                    batch_size=batch_size,
                    on_done=done.mark,
                    progress=progress,
                    describe=f"{device} on {describe}",
                )
        finally:
            done.flush()  # what finished is kept, whatever stopped the run
        mark_complete(spec, {**attrs, "complete": True, "seconds": round(stats.seconds, 3)})
        volume.close()
        labels_path, objects = None, None
        if labels:
            label_spec, label_stats = write_labels(
                open_embeddings(spec.group, image=spec.image),
                params=params,
                label_dtype=label_dtype,
                overwrite=overwrite or resume,
                progress=progress,
                executor=executor,
            )
            labels_path, objects = label_spec.array, label_stats.objects
    finally:
        volume.close()
        workers.close()
    return PredictResult(
        output=spec.group,
        embeddings=spec.array,
        plan=session.result,
        tiles=stats.tiles,
        seconds=time.perf_counter() - start,
        device=stats.device,
        normalization=norm.to_dict(),
        labels=labels_path,
        objects=objects,
        label_params=params.to_dict() if labels else None,
        batch_size=batch_size,
    )


def _auto_batch(session: _Session, remote: bool) -> int:
    """``--batch-size auto``: fill half of the free CUDA memory; 1 elsewhere."""
    from .engine import auto_batch_size, default_max_input_voxels

    if remote or session.device.type != "cuda":
        return 1  # CPU streams run one tile each; remote workers plan nothing here
    budget = session.budget  # measured by the planning when it chose the tile shape
    if budget is None:
        budget = default_max_input_voxels(session.model, session.geometry, session.device)
    plan = session.result.plan
    return auto_batch_size(budget, plan.read_shape, len(plan))


def _check_labels_only(
    *, labels: bool, remote: bool, allow_approximate: bool, embeddings_dtype: str
) -> None:
    """Refuse what a labels-only run cannot do, before anything is opened or written."""
    if not labels:
        raise StitchsafeError(
            "--no-embeddings with --no-labels would write nothing; drop one of them."
        )
    if remote:
        raise StitchsafeError(
            "--no-embeddings runs on --scheduler threads only (labels are computed from each "
            "tile in this process); drop --scheduler/--cluster, or write the embeddings."
        )
    if allow_approximate:
        raise StitchsafeError(
            "--no-embeddings is exact only: it cannot be combined with --allow-approximate."
        )
    if embeddings_dtype != "float32":
        raise StitchsafeError(
            "--embeddings-dtype has no effect with --no-embeddings (no embeddings are "
            "written; labels are computed from float32 outputs); drop it."
        )


def _predict_labels_only(
    session: Any,
    *,
    group: str,
    attrs: dict[str, Any],
    fingerprint: dict[str, Any],
    params: Any,
    label_dtype: str,
    norm: Normalization,
    pad_mode: str,
    batch_size: int,
    precision: str,
    overwrite: bool,
    resume: bool,
    progress: bool,
    start: float,
) -> PredictResult:
    """The labels-only branch of :func:`predict` (:mod:`stitchsafe.labels_only`)."""
    from .labels_only import LABELS_IMAGE, run_labels_only
    from .resume import check_fingerprint

    # The labels depend on the labelling settings too: part of what a resume must share.
    fingerprint = {**fingerprint, "labels": params.to_dict(), "label_dtype": label_dtype}
    the_plan = session.result.plan
    previous = _previous_run(group, LABELS_IMAGE) if resume else None
    where = os.path.join(group, LABELS_IMAGE)
    result = run_labels_only(
        session.volume,
        session.model,
        the_plan,
        group=group,
        params=params,
        label_dtype=label_dtype,
        attributes={
            **attrs,
            "run": fingerprint,
            "params": params.to_dict(),
            "axes": list(SPATIAL_AXES[the_plan.dims]),
        },
        previous=previous,
        check_previous=lambda stored: check_fingerprint(stored.get("run"), fingerprint, where),
        transform=norm,
        pad_mode=pad_mode,
        batch_size=batch_size,
        device=session.device,
        precision=precision,
        overwrite=overwrite,
        progress=progress,
    )
    return PredictResult(
        output=result.spec.group,
        embeddings=None,
        plan=session.result,
        tiles=result.tiles,
        seconds=time.perf_counter() - start,
        device=result.device,
        normalization=norm.to_dict(),
        labels=result.spec.array,
        objects=result.objects,
        label_params=params.to_dict(),
        batch_size=batch_size,
    )


@contextlib.contextmanager
def _executor(where: SchedulerSpec, cluster: SlurmOptions | None, device: str) -> Iterator[Any]:
    """The workers for a run off the threaded scheduler (SLURM jobs cancelled after)."""
    from .schedulers import open_executor

    if cluster is None:
        with open_executor(where, device=device) as executor:
            yield executor
        return
    from .slurm import make_cluster

    jobs = make_cluster(cluster)
    try:
        jobs.scale(jobs=cluster.jobs)
        minimum = cluster.workers if cluster.gpus else cluster.workers * cluster.threads_per_worker
        with open_executor(
            where, cluster=jobs, cluster_workers=minimum, cluster_gpus=cluster.gpus > 0
        ) as executor:
            yield executor
    finally:
        jobs.close()


def segment(
    input: PathLike,
    *,
    image: str = "embeddings",
    threshold: float | None = None,
    min_size: int | None = None,
    foreground_threshold: float | None = None,
    seed_threshold: float | None = None,
    seed_foreground_threshold: float | None = None,
    grow: int | None = None,
    label_dtype: str = "uint32",
    overwrite: bool = False,
    progress: bool = True,
    num_workers: int | None = None,
    scheduler: str = "threads",
) -> SegmentResult:
    """Derive instance labels from embeddings that :func:`predict` already wrote.

    Face-adjacent foreground voxels whose embeddings are closer than ``threshold`` join
    one object (:mod:`stitchsafe.instances`); labelled block by block, the result equals
    labelling the whole volume at once, for any tile shape.

    Parameters
    ----------
    input
        The zarr v3 group predict wrote into (its ``output``).
    image
        Path of the embeddings image inside ``input``.
    threshold
        Embedding distance below which neighbours join (> 0). Default: stored with the
        embeddings from the model's metadata (``labels.threshold``, else the
        discriminative-loss ``loss.delta_d``), else 1.5.
    min_size
        Objects with fewer voxels become background (>= 0). Default: metadata, else 0.
    foreground_threshold
        Foreground probability cut in (0, 1) for the model's foreground channel (logits).
        Default: metadata, else 0.5. Without a foreground channel every voxel is
        foreground.
    seed_threshold, seed_foreground_threshold, grow
        The seeded variant (:mod:`stitchsafe.instances`): only voxels whose embedding
        differs from every foreground neighbour's by less than ``seed_threshold`` (and whose
        foreground probability exceeds ``seed_foreground_threshold``) are linked, then the
        objects grow ``grow`` voxels into the remaining foreground. Default: metadata
        (models trained by stitchsafe declare them), else plain links.
    label_dtype
        ``uint32`` (default) or ``uint64``; more objects than the type holds is an error.
    overwrite
        Replace existing labels written by stitchsafe.
    progress
        Show progress bars on stderr.
    num_workers
        dask threads (default: the CPU count, at least 2).
    scheduler
        ``threads`` (default), ``local[:N]`` or a scheduler address: where the blocks are
        labelled (``processes`` labels on threads). The labels are the same.

    Returns
    -------
    SegmentResult
        Label array path inside ``input``, object count, blocks, seconds, parameters.
    """
    from .labelling import check_label_dtype, open_embeddings, resolve_label_params, write_labels
    from .schedulers import open_executor, parse_scheduler

    start = time.perf_counter()
    where = parse_scheduler(scheduler)
    check_label_dtype(label_dtype)
    # Workers elsewhere do not share this process's working directory.
    source = open_embeddings(os.path.abspath(input) if where.distributed else input, image=image)
    params = resolve_label_params(
        source.attributes.get("label_defaults"),
        source.attributes.get("channel_roles"),
        channels=source.channels,
        threshold=threshold,
        min_size=min_size,
        foreground_threshold=foreground_threshold,
        seed_threshold=seed_threshold,
        seed_foreground_threshold=seed_foreground_threshold,
        grow=grow,
    )
    with contextlib.ExitStack() as stack:
        executor = None
        if where.distributed and where.kind != "processes":
            executor = stack.enter_context(open_executor(where))
        spec, stats = write_labels(
            source,
            params=params,
            label_dtype=label_dtype,
            overwrite=overwrite,
            progress=progress,
            num_workers=num_workers,
            executor=executor,
        )
    return SegmentResult(
        output=source.group,
        embeddings=source.array,
        labels=spec.array,
        objects=stats.objects,
        blocks=stats.blocks,
        seconds=time.perf_counter() - start,
        params=params.to_dict(),
    )
