"""``segment``: instance labels again from embeddings that ``predict`` already wrote."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..engine import open_executor, parse_scheduler
from ..io import (
    EMBEDDINGS,
    OutputLock,
    PhysicalSettings,
    inner_path,
    labels_of,
    place_absolute,
    place_isdir,
    refuse_replacing_reads,
    zarr_node,
)
from ..progress import plural
from ._labelling import LABELS_NAME, open_embeddings, write_labels
from ._settings import LabelSettings
from ._warnings import ResultStats, result_warnings

__all__ = ["SegmentResult", "segment"]

PathLike = str | os.PathLike[str]
_WAIT = "wait for it to finish, then run segment again"


@dataclass(frozen=True)
class SegmentResult:
    """What :func:`segment` wrote: label array path (inside ``output``), object count;
    ``label_stats``: what the labels hold, and ``warnings``: what in it looks wrong."""

    output: str
    embeddings: str
    labels: str
    objects: int
    blocks: int
    seconds: float
    params: dict[str, Any]
    notes: tuple[str, ...] = ()
    label_stats: ResultStats | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What looks wrong in the labels (:func:`stitchsafe.labels.result_warnings`)."""
        if self.label_stats is None:
            return ()
        return result_warnings(self.label_stats, command="segment")

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "embeddings": self.embeddings,
            "labels": self.labels,
            "objects": self.objects,
            "blocks": self.blocks,
            "seconds": round(self.seconds, 3),
            "params": self.params,
            "warnings": list(self.warnings),
        }

    def describe(self) -> str:
        """What was written, in one line for the terminal."""
        return (
            f"wrote {self.output}/{self.labels}: {plural(self.objects, 'object')} from "
            f"{plural(self.blocks, 'block')} in {self.seconds:.1f} s"
        )


def segment(  # noqa: PLR0913 - the public keywords; they become one LabelSettings at once
    input: PathLike,
    *,
    image: str | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    foreground_threshold: float | None = None,
    seed_threshold: float | None = None,
    seed_foreground_threshold: float | None = None,
    grow: int | None = None,
    label_dtype: str = "uint32",
    channel_roles: str | Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    num_workers: int | None = None,
    scheduler: str = "threads",
    voxel_size: float | Sequence[float] | str | None = None,
    unit: str | None = None,
    pyramid: bool = True,
) -> SegmentResult:
    """Derive instance labels from embeddings that :func:`stitchsafe.predict` already wrote.

    Face-adjacent foreground voxels whose embeddings are closer than ``threshold`` join
    one object (:mod:`stitchsafe.labels`); labelled block by block, the result equals
    labelling the whole volume at once, for any tile shape.

    Parameters
    ----------
    input
        The zarr v3 group predict wrote into (its ``output``).
    image
        Path of the embeddings image inside ``input``. Default: the container's root when
        it is the embeddings image (a container predict made), else ``embeddings``; an
        ``embeddings`` that is not there means the root too.
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
        The seeded variant (:mod:`stitchsafe.labels`): only voxels whose embedding
        differs from every foreground neighbour's by less than ``seed_threshold`` (and whose
        foreground probability exceeds ``seed_foreground_threshold``) are linked, then the
        objects grow ``grow`` voxels into the remaining foreground. Default: metadata
        (models trained by stitchsafe declare them), else plain links.
    label_dtype
        ``uint32`` (default) or ``uint64``; more objects than the type holds is an error.
    channel_roles
        What each channel is (:func:`stitchsafe.labels.parse_channel_roles`), in place of
        the roles stored with the embeddings (said in a note). Default: the stored roles,
        else every channel an embedding (said in a note). Roles with neither embeddings
        nor a foreground channel are refused: they make no labels.
    overwrite
        Replace existing labels written by stitchsafe.
    progress
        Show progress bars on stderr.
    num_workers
        dask threads (default: the CPU count, at least 2).
    scheduler
        ``threads`` (default), ``local[:N]`` or a scheduler address: where the blocks are
        labelled (``processes`` labels on threads). The labels are the same.
    voxel_size, unit
        The labels' voxel size (one for every spatial axis, or one per axis) and unit, in
        place of the embeddings' (which ``predict`` took from its input). Default: the
        embeddings' voxel size, units and translation.
    pyramid
        Also write the labels' resolution levels ``1``, ``2``... (every other voxel, so no
        label is invented; :func:`stitchsafe.io.write_pyramid`). On by default, so that
        large labels can be browsed.

    Returns
    -------
    SegmentResult
        Label array path inside ``input``, object count, blocks, seconds, parameters.
    """
    start = time.perf_counter()
    where = parse_scheduler(scheduler)
    settings = LabelSettings(
        threshold=threshold,
        min_size=min_size,
        foreground_threshold=foreground_threshold,
        seed_threshold=seed_threshold,
        seed_foreground_threshold=seed_foreground_threshold,
        grow=grow,
        label_dtype=label_dtype,
        channel_roles=channel_roles,
    )
    physical = PhysicalSettings(voxel_size=voxel_size, unit=unit)
    # Workers elsewhere do not share this process's working directory.
    group = place_absolute(input) if where.distributed else os.fspath(input)
    with contextlib.ExitStack() as stack:
        node = zarr_node(group) if place_isdir(group) else None
        if node is not None and node[:2] == ("group", 3):  # else open_embeddings says why not
            # Before reading: a predict still writing this group must not be reported as
            # "incomplete embeddings", and its labels must not be replaced under it.
            stack.enter_context(OutputLock(group, advice=_WAIT).hold())
        source = open_embeddings(group, image=_embeddings_image(group, image))
        what = f"the embeddings image {source.image!r} in {source.group!r}"
        source = replace(source, physical=physical.apply(source.physical, source.axes, what))
        choice = settings.roles(
            source.attributes.get("channel_roles"), channels=source.channels, where=what
        )
        choice.refuse_unlabelled("segment")
        params = settings.resolve(
            source.attributes.get("label_defaults"), choice.roles, channels=source.channels
        )
        refuse_replacing_reads(
            source.group,
            inner_path(labels_of(source.group, source.image), "labels", LABELS_NAME),
            {"the embeddings": os.path.join(source.group, *source.array.split("/"))},
            overwrite=overwrite,
        )
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
            pyramid=pyramid,
        )
    return SegmentResult(
        output=source.group,
        embeddings=source.array,
        labels=spec.array,
        objects=stats.objects,
        blocks=stats.blocks,
        seconds=time.perf_counter() - start,
        params=params.to_dict(),
        notes=choice.notes,
        label_stats=stats.content,
    )


def _embeddings_image(group: str, image: str | None) -> str:
    """``image``, or the root when predict made the container (its root is the embeddings
    image) and ``image`` is the default ``embeddings`` that it does not hold."""
    if image not in (None, EMBEDDINGS):
        return image
    inside = os.path.join(group, EMBEDDINGS)
    root = zarr_node(group) if place_isdir(group) else None
    if root is not None and "stitchsafe" in root[2] and not place_isdir(inside):
        return ""
    return EMBEDDINGS
