"""``predict`` (the public keywords) and ``run_predict`` (the steps, in order)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

from ..approximate import ApproximateSettings
from ..engine import RunSettings, RunStats, SlurmOptions
from ..geometry import TilingSettings
from ..io import (
    LABELS_OF,
    InputSelection,
    OutputLock,
    OutputSettings,
    PhysicalSettings,
    check_output_group,
    list_images,
    mark_complete,
    refuse_replacing_reads,
    write_channel_metadata,
    write_pyramid,
)
from ..labels import LabelSettings
from ..model import Model
from ..session import Session, open_session
from ._labels_only import predict_labels_only
from ._preflight import check_before_model
from ._settings import PathLike, PredictResult, PredictSettings
from ._steps import (
    execute,
    label_output,
    open_target,
    open_workers,
    prepare_run,
    refuse_remote_approximate,
)

__all__ = ["predict", "run_predict"]


def predict(  # noqa: PLR0913 - the public keywords; they become one PredictSettings at once
    model: PathLike | Model | None,
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
    channel_roles: str | Sequence[str] | None = None,
    scheduler: str = "threads",
    cluster: SlurmOptions | None = None,
    allow_approximate: bool = False,
    tolerance: float | None = None,
    embeddings: bool = True,
    trust_model: bool = False,
    pyramid: bool = True,
    voxel_size: float | Sequence[float] | str | None = None,
    unit: str | None = None,
    channel: int | Sequence[int] | str | None = None,
    timepoint: int | None = None,
    level: int | None = None,
    axes: str | None = None,
) -> PredictResult:
    """Run ``model`` over ``input`` tile by tile; the result equals one whole-volume pass.

    Parameters
    ----------
    model, input, input_key, tile_shape, pooling_factors, depth, device
        As for :func:`stitchsafe.plan`.
    output
        Zarr v3 group to write into. Default: the input's own zarr v3 container (the image
        ``embeddings``), or ``<input stem>.stitchsafe.zarr`` beside a TIFF, a bare array or
        a zarr v2 input. A container that predict makes (or made) is the image itself.
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
        Also write instance labels (see :func:`stitchsafe.segment`) at ``labels/instances``
        of the image they belong to: the raw image of an OME-Zarr input in its own
        container, else the embeddings image.
    precision
        ``fp32`` (default; exact to float rounding), ``bf16`` or ``fp16`` (autocast: faster
        on GPUs, but stitched results then differ from a whole-volume pass by ~1e-2).
    embeddings_dtype
        ``float32`` (default) or ``float16`` (half the disk and write time; embeddings
        rounded to ~1e-3 relative, labels computed from the rounded values).
    resume
        Continue an interrupted run into the same output: only tiles not yet marked done
        are computed (:mod:`stitchsafe.io`); refused when the plan, the model file or
        the settings changed. Labels are then derived anew. Without an existing output
        this is a normal run.
    threshold, min_size, foreground_threshold, label_dtype
        As for :func:`stitchsafe.segment`; defaults from the model's metadata.
    seed_threshold, seed_foreground_threshold, grow
        As for :func:`stitchsafe.segment`.
    channel_roles
        What each output channel is, in place of the model's metadata (said in a note):
        ``"embedding:2,foreground"``, or a list of ``embedding``, ``foreground`` (logits),
        ``probability`` and ``ignore`` (:func:`stitchsafe.labels.parse_channel_roles`).
        A model with a foreground channel and no embeddings gets the connected components
        of its foreground; roles with neither make no labels (said in a note). Default:
        the metadata's roles, else every channel an embedding (said in a note).
    scheduler
        Where the tiles run (:mod:`stitchsafe.engine`): ``threads`` (default, this
        process), ``processes[:N]``, ``local[:N]`` (a dask ``LocalCluster``) or the address
        of a running dask scheduler. Off ``threads`` the workers load the model from its
        path and must see the model, input and output files; without ``tile_shape`` the
        tiles are sized for the CPU budget. Labels run on the same dask cluster (on threads
        here for ``processes``). The output is identical on every scheduler.
    cluster
        Start dask workers as SLURM jobs (:mod:`stitchsafe.engine`) instead of
        ``scheduler``; they are cancelled when the run ends.
    allow_approximate, tolerance
        As for :func:`stitchsafe.plan`; the halo is measured with this run's ``pad_mode``
        and normalisation, stored with the output (``stitchsafe.approximate``) and part of
        the run's fingerprint (``resume`` refuses another tolerance). The ``threads``
        scheduler only.
    embeddings
        ``False``: a labels-only run (:mod:`stitchsafe.labels`) — the labels are
        computed from each tile in memory and written to a stand-alone label image (the
        container predict makes, or ``instances`` in an existing one); no embeddings are
        written. Identical labels, exact; the
        ``threads`` scheduler only, float32 embeddings, and not with approximate mode.
    trust_model
        As for :func:`stitchsafe.plan`: let the model file run code of its own when loaded.
    pyramid
        Also write the OME-Zarr resolution levels ``1``, ``2``... of every image written,
        after it is complete (:func:`stitchsafe.io.write_pyramid`: mean for the
        embeddings, stride for the labels; ``resume`` finishes an interrupted pyramid).
        On by default: a large result without levels cannot be browsed, and the levels
        cost about 1/7 of level 0's writes in 3-D.
    voxel_size, unit
        As for :func:`stitchsafe.plan`: the input's voxel size and unit, in place of its
        own metadata. Every image written (embeddings, labels) carries the voxel size,
        units and translation in its OME-Zarr ``coordinateTransformations`` and axes; a
        ``resume`` with other values is refused.
    channel, timepoint, level, axes
        As for :func:`stitchsafe.plan`: the channels, timepoint and resolution level read;
        part of the run's fingerprint (``resume`` refuses another selection).

    Returns
    -------
    PredictResult
        Output group, embeddings (and labels) array paths, plan, tile count, seconds.
    """
    run = RunSettings(
        device=device,
        precision=precision,
        batch_size=batch_size,
        pad_mode=pad_mode,
        normalize=normalize,
        embeddings_dtype=embeddings_dtype,
        scheduler=scheduler,
        progress=progress,
    )
    settings = PredictSettings(
        input_key=input_key,
        tiling=TilingSettings(tile_shape=tile_shape, pooling_factors=pooling_factors, depth=depth),
        run=run,
        output=OutputSettings(output=output, overwrite=overwrite, resume=resume, pyramid=pyramid),
        label=LabelSettings(
            threshold=threshold,
            min_size=min_size,
            foreground_threshold=foreground_threshold,
            seed_threshold=seed_threshold,
            seed_foreground_threshold=seed_foreground_threshold,
            grow=grow,
            label_dtype=label_dtype,
            channel_roles=channel_roles,
        ),
        approximate=ApproximateSettings(allow=allow_approximate, tolerance=tolerance),
        cluster=cluster,
        labels=labels,
        embeddings=embeddings,
        trust_model=trust_model,
        physical=PhysicalSettings(voxel_size=voxel_size, unit=unit),
        selection=InputSelection.parse(channel, timepoint, level, axes),
    )
    return run_predict(model, input, settings)


def run_predict(
    model: PathLike | Model | None, input: PathLike, settings: PredictSettings
) -> PredictResult:
    """:func:`predict` with its settings already made: the steps, in order."""
    start = time.perf_counter()
    sources = check_before_model(model, input, settings)  # fail fast: input, output
    session = open_session(
        sources,
        tiling=settings.tiling,
        run=settings.run,
        approximate=settings.approximate,
        remote=settings.remote,
        checked=True,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(session.volume.close)
        refuse_remote_approximate(session, settings)
        prepared = prepare_run(session, settings)
        # One writer per output until its labels are written; released after the workers.
        check_output_group(prepared.group)
        stack.enter_context(OutputLock(prepared.group).hold())
        refuse_replacing_reads(
            prepared.group,
            prepared.image,
            _reads(session),
            overwrite=settings.output.overwrite,
        )
        if not settings.embeddings:
            return predict_labels_only(session, prepared, settings, start)
        # Workers first: an unreachable scheduler must fail before anything is written.
        executor = stack.enter_context(open_workers(settings)) if settings.remote else None
        target = open_target(session, prepared, settings)
        stats = execute(session, prepared, target, executor, settings)
        mark_complete(target.spec, {**target.attributes, **_done_record(stats)})
        if settings.output.pyramid:
            write_pyramid(target.spec, progress=settings.run.progress)
        write_channel_metadata(target.spec)
        session.volume.close()
        labels_path, objects, label_stats = label_output(target.spec, prepared, executor, settings)
        raw = target.attributes.get(LABELS_OF)
        if isinstance(raw, str):  # the input's container: its root lists raw + embeddings
            list_images(target.spec.group, [raw, target.spec.image])
    return PredictResult(
        output=target.spec.group,
        embeddings=target.spec.array,
        plan=session.result,
        tiles=stats.tiles,
        seconds=time.perf_counter() - start,
        device=stats.device,
        normalization=prepared.normalization.to_dict(),
        labels=labels_path,
        objects=objects,
        label_params=prepared.params.to_dict() if settings.labels else None,
        batch_size=prepared.batch_size,
        label_stats=label_stats,
        nonfinite=stats.nonfinite,
    )


def _done_record(stats: RunStats) -> dict[str, Any]:
    """What the complete embeddings image's attributes add: ``complete``, the time and,
    when this process wrote the tiles, the NaN or infinite values counted in those it ran
    (``info`` warns of them)."""
    done = {"complete": True, "seconds": round(stats.seconds, 3)}
    return done if stats.nonfinite is None else {**done, "nonfinite": stats.nonfinite}


def _reads(session: Session) -> dict[str, str | None]:
    """The files a run reads, which its output may not replace: the input array, the model."""
    volume = session.volume
    where = volume.path
    if volume.container is not None and volume.array_path is not None:
        where = os.path.join(volume.container, *volume.array_path.split("/"))
    return {"the input": where, "the model": session.result.model_path}
