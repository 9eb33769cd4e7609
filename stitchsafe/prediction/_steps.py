"""The steps of ``run_predict`` after the session: prepare, target, execute, label."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..engine import (
    Normalization,
    PipelineOptions,
    RunStats,
    TileJob,
    WorkersLost,
    auto_batch_size,
    default_max_input_voxels,
    make_cluster,
    open_executor,
    run_plan,
    run_plan_distributed,
)
from ..errors import StitchsafeError
from ..geometry import Tile
from ..io import (
    LABELS_OF,
    TILE_ARRAY,
    DoneMask,
    OutputSpec,
    check_fingerprint,
    clear_partial_writes,
    existing_done_mask,
    file_sha256,
    input_identity,
    input_image_path,
    input_tile_block,
    is_url,
    place_absolute,
    place_isfile,
    prepare_output,
    run_fingerprint,
    tiled_level_one,
    with_sources,
)
from ..labels import (
    LabelParams,
    ResultStats,
    label_defaults,
    open_embeddings,
    write_labels,
)
from ..session import Session, session_normalization
from ._location import output_location, previous_run, refuse_foreign_labels
from ._settings import SPATIAL_AXES, PredictSettings

__all__ = [
    "PreparedRun",
    "Target",
    "execute",
    "label_output",
    "open_target",
    "open_workers",
    "pipeline_options",
    "prepare_run",
    "refuse_remote_approximate",
]


@dataclass(frozen=True)
class PreparedRun:
    """Step 2 of :func:`run_predict`: what the run writes and how, before anything runs."""

    params: LabelParams
    normalization: Normalization
    group: str
    image: str
    model_sha256: str
    fingerprint: dict[str, Any]
    attributes: dict[str, Any]
    batch_size: int
    labelled: bool = True


@dataclass(frozen=True)
class Target:
    """Step 3 of :func:`run_predict`: the output image, its done-mask, the tiles to run,
    and the attributes it gets when complete."""

    spec: OutputSpec
    done: DoneMask
    todo: Sequence[Tile] | None
    attributes: dict[str, Any] = field(default_factory=dict, hash=False)


# How predict continues after its workers were lost (engine.WorkersLost), per stage.
TILES_LOST = (
    "Every tile that finished is kept (recorded in the output's done mask): rerun the same "
    "command with --resume to compute only the rest (with a smaller --batch-size if memory "
    "ran out)."
)
LABELS_LOST = (
    "The embeddings are complete and kept, and so are the labels of an earlier run, if "
    "any: rerun the same command with --resume; it finds every tile done and derives the "
    "labels again."
)


def refuse_remote_approximate(session: Session, settings: PredictSettings) -> None:
    if session.result.approximate is not None and settings.remote:
        raise StitchsafeError(
            "--allow-approximate runs on --scheduler threads only: workers load the model "
            "from its file and would not crop the measured halo. Drop --scheduler/--cluster."
        )


def prepare_run(session: Session, settings: PredictSettings) -> PreparedRun:
    """Batch size, label parameters, normalisation, output location and fingerprint.

    The fingerprint holds the input's identity (metadata and a SHA-256 of a sample of its
    data) and a SHA-256 of every file that feeds the model, so that ``--resume`` refuses
    another input or changed weights.
    """
    batch_size = _batch_size(session, settings)
    metadata = session.model.metadata or {}
    channels = session.geometry.channels_out
    choice = settings.label.roles(metadata.get("channel_roles"), channels=channels)
    roles = None if choice.roles is None else list(choice.roles)
    if settings.labels:
        if not settings.embeddings:
            choice.refuse_unlabelled("--no-embeddings (which writes only the labels)")
        session.result = replace(session.result, notes=(*session.result.notes, *choice.notes))
    defaults = label_defaults(metadata)
    # Bad label flags fail now, before the network runs.
    params = settings.label.resolve(defaults, roles, channels=channels)
    norm = session_normalization(session.model, session.volume, settings.run.normalize)
    group, image = output_location(session, settings)
    if settings.remote:
        group = place_absolute(group)  # workers write here from their own directories
    model_sha256, fingerprint = _run_fingerprint(session, settings, norm)
    attributes = {
        "plan": session.result.to_dict(),
        "approximate": session.result.approximate,
        "normalization": norm.to_dict(),
        "pad_mode": settings.run.pad_mode,
        "channel_roles": roles,
        "label_defaults": defaults,
        "run": fingerprint,
        "complete": False,
    }
    if settings.embeddings:
        # The embeddings' tiles write level 0: a resume checks its chunks against the mask.
        attributes[TILE_ARRAY] = "0"
        raw = input_image_path(session.volume, group)
        if raw is not None:  # the labels belong to the raw image, in its labels/ group
            attributes[LABELS_OF] = raw
            if settings.labels:
                refuse_foreign_labels(group, raw)
    made = (params, norm, group, image, model_sha256, fingerprint, attributes, batch_size)
    return PreparedRun(*made, labelled=choice.labelled)


def _run_fingerprint(
    session: Session, settings: PredictSettings, norm: Normalization
) -> tuple[str, dict[str, Any]]:
    """The model file's SHA-256 (what workers check) and the run's fingerprint."""
    run, approximate = settings.run, session.result.approximate
    model_files = _model_files(session)
    fingerprint = run_fingerprint(
        session.result.plan,
        model_sha256=model_files[0][1],
        normalization=norm.to_dict(),
        pad_mode=run.pad_mode,
        precision=run.precision,
        embeddings_dtype=run.embeddings_dtype,
        approximate=_approximate_fingerprint(approximate),
        physical=session.volume.physical.to_dict(),
    )
    identity = input_identity(session.volume, key=settings.input_key)
    fingerprint = with_sources(
        fingerprint, input_identity=identity.to_dict(), model_files=model_files
    )
    return model_files[0][1], fingerprint


def _approximate_fingerprint(approximate: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a resume must share in approximate mode: the tolerance, and how border tiles
    are placed (inside the model's own input; older outputs padded them: never mixed)."""
    if approximate is None:
        return None
    return {"tolerance": approximate["tolerance"], "border": "inside"}


def _model_files(session: Session) -> list[tuple[str, str]]:
    """``(name, SHA-256)`` of the model file, then of each other file that feeds the model.

    Files inside a model directory (a bioimage.io package folder) are in its hash already.
    """
    path = os.path.realpath(session.result.model_path)
    inside = path.rstrip(os.sep) + os.sep
    files = getattr(session.model, "files", None) or (path,)
    others = sorted({os.path.realpath(f) for f in files} - {path})
    others = [f for f in others if not f.startswith(inside)]
    return [(os.path.basename(f), file_sha256(f)) for f in [path, *others]]


def _batch_size(session: Session, settings: PredictSettings) -> int:
    """``--batch-size``, with ``auto`` filling half of the free CUDA memory (1 elsewhere)."""
    batch_size = settings.run.batch_size
    if batch_size != "auto":
        assert isinstance(batch_size, int)
        return batch_size
    if settings.remote or session.device.type != "cuda":
        return 1  # CPU streams run one tile each; remote workers plan nothing here
    budget = session.budget  # measured by the planning when it chose the tile shape
    if budget is None:
        budget = default_max_input_voxels(session.model, session.geometry, session.device)
    plan = session.result.plan
    return auto_batch_size(budget, plan.read_shape, len(plan))


def open_target(session: Session, prepared: PreparedRun, settings: PredictSettings) -> Target:
    """A new output image, or the interrupted one to continue (its fingerprint checked).

    An image whose creation never finished (stopped by a full disk, say, before its level-0
    array and done mask existed) holds no finished tile: it is made anew, by ``--resume``
    as by ``--overwrite`` (and a folder left without any metadata by any run).
    """
    the_plan = session.result.plan
    group, image = prepared.group, prepared.image
    _clear_unmade_folder(group, image)
    previous = previous_run(group, image) if settings.output.resume else None
    unmade = previous is not None and not _made(group, image)
    if previous is None or unmade:
        physical = session.volume.physical
        spec = prepare_output(
            group,
            image=image,
            shape=session.volume.shape,
            channels=session.geometry.channels_out,
            chunks=the_plan.chunks,
            axes=SPATIAL_AXES[session.geometry.dims],
            dtype=settings.run.embeddings_dtype,
            overwrite=settings.output.overwrite or unmade,
            attributes=prepared.attributes,
            scale=physical.scale,
            units=physical.units,
            translation=physical.translation,
        )
        if settings.output.pyramid:
            spec = tiled_level_one(spec)  # level 1 written with each tile, not read back
        block = input_tile_block(the_plan, session.volume)  # each input chunk decoded once
        done = DoneMask.create(spec.group, spec.image, the_plan.grid_shape, block)
        return Target(spec, done, done.tiles(the_plan), prepared.attributes)
    spec, stored = previous
    where = os.path.join(group, image) if image else group
    check_fingerprint(stored.get("run"), prepared.fingerprint, where)
    done = DoneMask.open(spec.group, spec.image, the_plan.grid_shape)
    # An output of an earlier version keeps its labels where it had them (under itself).
    attributes = dict(prepared.attributes)
    if LABELS_OF not in stored:
        attributes.pop(LABELS_OF, None)
    # Labels from before the interruption (if any) are derived anew afterwards.
    return Target(spec, done, done.remaining(the_plan, prepared.batch_size), attributes)


def _made(group: str, image: str) -> bool:
    """Whether the creation of the output image finished: its level-0 array and its done
    mask (made last, before any tile runs) have their metadata."""
    level0 = os.path.join(group, *image.split("/"), "0", "zarr.json")
    return place_isfile(level0) and existing_done_mask(group, image) is not None


def _clear_unmade_folder(group: str, image: str) -> None:
    """Remove the output image's folder when a creation stopped before writing its metadata
    left it holding nothing but zarr's partial writes: nobody's data. (An object store has
    no folders, and writes each object whole: nothing to clear there.)"""
    image_dir = os.path.join(group, *image.split("/"))
    if is_url(image_dir):
        return
    if os.path.isdir(image_dir) and clear_partial_writes(image_dir):
        os.rmdir(image_dir)


def pipeline_options(
    session: Session, prepared: PreparedRun, settings: PredictSettings
) -> PipelineOptions:
    """The engine's options for this run's tiles in this process."""
    return PipelineOptions(
        pad_mode=settings.run.pad_mode,
        batch_size=prepared.batch_size,
        device=session.device,
        precision=settings.run.precision,
        progress=settings.run.progress,
    )


def execute(
    session: Session,
    prepared: PreparedRun,
    target: Target,
    executor: Any,
    settings: PredictSettings,
) -> RunStats:
    """Run the tiles here or on the workers; what finished is kept whatever stops the run."""
    run = settings.run
    try:
        if executor is None:
            return run_plan(
                session.volume,
                session.model,
                session.result.plan,
                target.spec,
                options=pipeline_options(session, prepared, settings),
                transform=prepared.normalization,
                tiles=target.todo,
                on_done=target.done.mark,
            )
        job = TileJob(
            model=os.path.abspath(session.result.model_path),
            model_sha256=prepared.model_sha256,
            volume=session.volume,
            plan=session.result.plan,
            output=target.spec,
            output_dtype=run.embeddings_dtype,
            normalization=prepared.normalization.to_dict(),
            pad_mode=run.pad_mode,
            precision=run.precision,
            device=run.device,
            trust_model=settings.trust_model,
        )
        describe = "slurm" if settings.cluster is not None else run.where.describe()
        return run_plan_distributed(
            executor,
            job,
            tiles=target.todo,
            batch_size=prepared.batch_size,
            on_done=target.done.mark,
            progress=run.progress,
            describe=f"{run.device} on {describe}",
        )
    except WorkersLost as lost:
        raise lost.advise(TILES_LOST) from lost.__cause__
    finally:
        target.done.flush()


def label_output(
    spec: OutputSpec, prepared: PreparedRun, executor: Any, settings: PredictSettings
) -> tuple[str | None, int | None, ResultStats | None]:
    """Instance labels from the written embeddings: (label array path, object count, what
    the labels hold)."""
    if not settings.labels or not prepared.labelled:
        return None, None, None
    try:
        label_spec, label_stats = write_labels(
            open_embeddings(spec.group, image=spec.image),
            params=prepared.params,
            label_dtype=settings.label.label_dtype,
            overwrite=settings.output.overwrite or settings.output.resume,
            progress=settings.run.progress,
            executor=executor,
            pyramid=settings.output.pyramid,
        )
    except WorkersLost as lost:
        raise lost.advise(LABELS_LOST) from lost.__cause__
    return label_spec.array, label_stats.objects, label_stats.content


@contextlib.contextmanager
def open_workers(settings: PredictSettings) -> Iterator[Any]:
    """The workers for a run off the threaded scheduler (SLURM jobs cancelled after)."""
    cluster, where = settings.cluster, settings.run.where
    if cluster is None:
        with open_executor(where, device=settings.run.device) as executor:
            yield executor
        return
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
