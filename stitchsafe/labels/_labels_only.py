"""Labels-only runs: instance labels written, embeddings never (``predict --no-embeddings``).

Writing the embeddings (``C`` float channels per voxel) is the slowest part of a run on a
GPU. When only the instance labels are wanted, each tile is computed with a few voxels of
extra output on the period lattice (:mod:`stitchsafe.labels`), labelled while it is
in memory, and reduced to block-local fragment ids and one ``uint32`` code per voxel in
two scratch arrays (in the bookkeeping folder: :func:`stitchsafe.io.bookkeeping_path`).
Three passes over those — fragment tables, links across block faces, relabelling (and
growth) — give the labels :func:`stitchsafe.labels.write_labels` would derive from a full
run's embeddings, identical voxel for voxel. The scratch arrays go when the labels are done.

Layout: an OME-Zarr 0.5 label image with ``image-label`` metadata, one shard per tile
write box, the run's attributes and its done mask (``--resume`` works as for embeddings).
With a ``home`` (the raw image of an OME-Zarr input in its own container) it goes to
``<home>/labels/instances``: built in the bookkeeping folder and swapped in whole when
complete, as :func:`stitchsafe.labels.write_labels` does. Otherwise it stands alone: a new
container's root, or ``instances`` where an earlier version put it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import zarr

from ..engine import PipelineOptions, RunStats, run_plan
from ..errors import StitchsafeError
from ..geometry import Plan, Tile
from ..io import (
    DoneMask,
    ImageLayout,
    OutputSpec,
    PhysicalScale,
    bookkeeping_path,
    create_label_image,
    create_labels,
    input_tile_block,
    mark_complete,
    place_exists,
    place_remove,
    write_pyramid,
)
from ._blocks import inner_slices
from ._blockwise import LabelStats, nonfinite_values
from ._fragments import label_from_fragments
from ._params import LabelParams, check_label_dtype, max_label
from ._swap import LabelPlace
from ._tile_labels import (
    ExtendedTiles,
    labelling_margin,
    lattice_margin,
    tile_fragments,
)
from ._warnings import ResultStats

__all__ = [
    "CODES",
    "FRAGMENTS",
    "LABELS_IMAGE",
    "LabelsOnlyResult",
    "LabelsOnlyRun",
    "run_labels_only",
]

LABELS_IMAGE = "instances"
FRAGMENTS = "stitchsafe-fragments"
CODES = "stitchsafe-codes"


@dataclass(frozen=True)
class LabelsOnlyRun:
    """What a labels-only run writes, and where; checked once, when made.

    Attributes
    ----------
    group, image
        The zarr v3 group the label image goes into, and its path there: ``instances``, or
        ``""`` (the root) in a container the run makes.
    params
        The labelling parameters.
    attributes
        Stored with the label image (``attributes["stitchsafe"]``); ``"axes"`` names the
        spatial axes.
    label_dtype
        ``uint32`` or ``uint64``.
    previous
        The label image an interrupted run left (``--resume``) and its attributes, or None.
    check_previous
        Called with those attributes (the run fingerprint) before anything is reused.
    overwrite
        Replace an existing label image written by stitchsafe.
    physical
        Voxel size, units and translation of the volume, written into the label image's
        metadata; ``None``: voxel size 1, no unit.
    image
        Where the label image is written in place (without ``home``).
    home
        The raw image (path in ``group``) the labels belong to: the label image goes to
        ``<home>/labels/<LABELS_IMAGE>``, built in the bookkeeping folder and swapped in
        whole when complete (:class:`~stitchsafe.labels.LabelPlace`; ``image`` is then
        not used). ``previous`` is then the label image being built, or the complete one.
    pyramid
        With ``home``: write the label image's levels (as many as ``home`` has) before
        it is swapped in.
    """

    group: str
    params: LabelParams
    attributes: dict[str, Any] = field(hash=False)
    label_dtype: str = "uint32"
    previous: tuple[OutputSpec, dict[str, Any]] | None = field(default=None, hash=False)
    check_previous: Callable[[dict[str, Any]], None] | None = None
    overwrite: bool = False
    physical: PhysicalScale | None = None
    image: str = LABELS_IMAGE
    home: str | None = None
    pyramid: bool = False

    def __post_init__(self) -> None:
        check_label_dtype(self.label_dtype)


@dataclass(frozen=True)
class LabelsOnlyResult:
    """What :func:`run_labels_only` wrote."""

    spec: OutputSpec
    tiles: int
    objects: int
    device: str
    labels: LabelStats


@dataclass(frozen=True)
class _Scratch:
    """A labels-only run's label image, scratch arrays, done mask, tiles left (None: all),
    and the image (path in the group) whose bookkeeping holds them."""

    spec: OutputSpec
    book: str
    fragments: Any
    codes: Any
    done: DoneMask
    todo: Sequence[Tile] | None


def run_labels_only(
    volume: Any,
    model: Any,
    plan: Plan,
    run: LabelsOnlyRun,
    *,
    options: PipelineOptions,
    transform: Any = None,
) -> LabelsOnlyResult:
    """Compute ``plan``'s tiles and write only their instance labels to ``run.image``.

    Parameters
    ----------
    volume, model, plan
        As for :func:`stitchsafe.engine.run_plan`.
    run
        The output side: group, labelling parameters, attributes, resume.
    options
        How the tiles run (:class:`stitchsafe.engine.PipelineOptions`); its ``progress``
        also shows the labelling passes.
    transform
        Intensity normalisation computed once for the whole volume.
    """
    margin = _tile_margin(plan, run.params)
    attrs = {**run.attributes, "labels_only": True, "label_margin": list(margin)}
    place = None if run.home is None else LabelPlace(run.group, run.home, LABELS_IMAGE)
    if run.previous is None:
        block = input_tile_block(plan, volume)  # so that each input chunk is decoded once
        scratch = _create_scratch(plan, run, attrs, place, block)
    else:
        spec, stored = run.previous
        if run.check_previous is not None:
            run.check_previous(stored)
        if stored.get("complete"):
            # Nothing left to compute, and the scratch arrays are gone: keep the labels.
            objects = int(stored.get("objects", 0))
            empty = LabelStats(0, 0, 0, 0.0, ResultStats.from_dict(stored.get("content")))
            return LabelsOnlyResult(spec, 0, objects, str(options.device), empty)
        scratch = _reopen_scratch(spec, plan, options.batch_size, place)
    stats, nonfinite = _compute_tiles(volume, model, plan, run, scratch, margin, options, transform)
    label_stats = _with_nonfinite(_label(scratch, run.params, options.progress), nonfinite)
    _finish(scratch, attrs, label_stats.done_record(stats.seconds + label_stats.seconds))
    spec = _swap_in(scratch.spec, place, pyramid=run.pyramid, progress=options.progress)
    return LabelsOnlyResult(spec, stats.tiles, label_stats.objects, stats.device, label_stats)


def _label(scratch: _Scratch, params: LabelParams, progress: bool) -> LabelStats:
    """Label the scratch image from its fragments; an interruption leaves it incomplete."""
    spec = scratch.spec
    try:
        return label_from_fragments(
            scratch.fragments,
            scratch.codes,
            zarr.open_array(store=os.path.join(spec.group, *spec.array.split("/")), mode="r+"),
            params=params,
            progress=progress,
        )
    except KeyboardInterrupt as stop:
        stop.add_note(
            "Labelling stopped before it was complete: every tile is finished, and the "
            f"label image {spec.image} stays marked incomplete until a rerun with --resume "
            "labels it again from them."
        )
        raise


def _with_nonfinite(stats: LabelStats, nonfinite: int) -> LabelStats:
    """``stats`` with the NaN and infinite values counted in the tiles computed now."""
    if stats.content is None:
        return stats
    return replace(stats, content=replace(stats.content, nonfinite=nonfinite))


def _swap_in(
    spec: OutputSpec, place: LabelPlace | None, *, pyramid: bool, progress: bool
) -> OutputSpec:
    """The complete label image ``spec``, moved to ``place`` if it was built there (with
    its levels first, as many as the raw image's: labels and levels appear together)."""
    if place is None:
        return spec
    if pyramid:
        write_pyramid(spec, progress=progress, like=place.home)
    return place.swap_in()


def _finish(scratch: _Scratch, attrs: dict[str, Any], done: dict[str, Any]) -> None:
    """Remove the scratch arrays and mark the label image complete (``done``: what
    :meth:`~stitchsafe.labels.LabelStats.done_record` adds to its attributes)."""
    for name in (FRAGMENTS, CODES):
        place_remove(_scratch_path(scratch.spec.group, scratch.book, name))
    mark_complete(scratch.spec, {**attrs, **done})


def _tile_margin(plan: Plan, params: LabelParams) -> tuple[int, ...]:
    """The extra output per side each tile computes; StitchsafeError if the model does not
    accept the larger tiles."""
    margin = lattice_margin(plan, labelling_margin(params))
    tiles_read = tuple(r + 2 * m for r, m in zip(plan.read_shape, margin))
    if not plan.geometry.is_valid_input(tiles_read):
        raise StitchsafeError(
            f"labels-only tiles need an input of {tiles_read}, which the model does not "
            "accept; run without --no-embeddings."
        )
    return margin


def _create_scratch(
    plan: Plan,
    run: LabelsOnlyRun,
    attrs: dict[str, Any],
    place: LabelPlace | None,
    block: tuple[int, ...] | None,
) -> _Scratch:
    """A new label image (marked incomplete), its scratch arrays and done mask: in place,
    or (``place``) built in the bookkeeping folder, with its bookkeeping under the label
    image's final path; every tile to run, in blocks of ``block`` (``None``: C order)."""
    physical = run.physical or PhysicalScale.default(len(plan.volume_shape))
    layout = ImageLayout(
        shape=plan.volume_shape,
        chunks=plan.chunks,
        axes=run.attributes["axes"],
        dtype=run.label_dtype,
        attributes={**attrs, "complete": False},
        scale=physical.scale,
        units=physical.units,
        translation=physical.translation,
    )
    if place is None:
        spec = create_label_image(run.group, layout, image=run.image, overwrite=run.overwrite)
        book = spec.image
    else:  # old labels (refused without overwrite) stay until the new ones are complete
        place.prepare(overwrite=run.overwrite)
        spec = create_labels(run.group, layout, image=place.scratch, name=place.name)
        book = place.final
    done = DoneMask.create(spec.group, book, plan.grid_shape, block)
    return _Scratch(
        spec,
        book,
        _array(spec, book, FRAGMENTS, create=True, dtype=run.label_dtype),
        _array(spec, book, CODES, create=True),
        done,
        done.tiles(plan),
    )


def _reopen_scratch(
    spec: OutputSpec, plan: Plan, batch_size: int, place: LabelPlace | None
) -> _Scratch:
    """An interrupted run's scratch arrays and done mask, and the tiles it left (in batches
    of its order)."""
    book = spec.image if place is None else place.final
    fragments = _array(spec, book, FRAGMENTS, create=False)
    codes = _array(spec, book, CODES, create=False)
    done = DoneMask.open(spec.group, book, plan.grid_shape)
    return _Scratch(spec, book, fragments, codes, done, done.remaining(plan, batch_size))


def _scratch_path(group: str, book: str, name: str) -> str:
    """The scratch array ``name`` in the bookkeeping of the image ``book``, or in that
    label image where an interrupted run of an earlier version left it."""
    legacy = os.path.join(group, *book.split("/"), name)
    return legacy if place_exists(legacy) else bookkeeping_path(group, book, name)


def _array(spec: OutputSpec, book: str, name: str, *, create: bool, dtype: str = "uint32") -> Any:
    """The scratch array ``name`` of the label image; new (like level 0) or opened."""
    path = _scratch_path(spec.group, book, name)
    if not create:
        return zarr.open_array(store=path, mode="r+")
    out = zarr.open_array(store=os.path.join(spec.group, *spec.array.split("/")), mode="r")
    return zarr.create_array(
        store=path,
        shape=out.shape,
        chunks=out.chunks,
        shards=out.shards,
        dtype=dtype,
        fill_value=0,
        overwrite=True,
        compressors=out.compressors,
    )


@dataclass(frozen=True)
class _FragmentSink:
    """The pipeline's sink: each tile's output reduced to fragments and codes, written;
    the count of NaN or infinite values in each tile's own block appended to ``nonfinite``."""

    work: ExtendedTiles
    params: LabelParams
    label_dtype: str
    fragments: Any
    codes: Any
    nonfinite: list[int] = field(default_factory=list, compare=False)

    def __call__(self, batch: list[Tile], y: np.ndarray) -> None:
        limit = max_label(np.dtype(self.label_dtype))
        for tile, raw in zip(batch, y):
            data = raw[(slice(None), *tile.crop.to_slices())]
            window = self.work.window(tile)
            frags, voxel_codes, sizes = tile_fragments(data, window, tile.write, self.params)
            own = data[(slice(None), *inner_slices(tile.write, window))]
            self.nonfinite.append(nonfinite_values(own))  # list.append: thread-safe
            if sizes.size > limit:
                raise StitchsafeError(
                    f"block {tile.write} holds {sizes.size} separate pieces, more than "
                    f"{self.label_dtype} ids ({limit}); pass --label-dtype uint64 or use "
                    "smaller tiles."
                )
            self.fragments[tile.write.to_slices()] = frags.astype(self.label_dtype, copy=False)
            self.codes[tile.write.to_slices()] = voxel_codes


def _compute_tiles(
    volume: Any,
    model: Any,
    plan: Plan,
    run: LabelsOnlyRun,
    scratch: _Scratch,
    margin: tuple[int, ...],
    options: PipelineOptions,
    transform: Any,
) -> tuple[RunStats, int]:
    """Run the tiles left (with ``margin``) through the pipeline into the scratch arrays;
    also the count of NaN or infinite output values in the blocks computed."""
    work = ExtendedTiles(plan, margin, scratch.todo)
    sink = _FragmentSink(work, run.params, run.label_dtype, scratch.fragments, scratch.codes)
    try:
        stats = run_plan(
            volume,
            model,
            plan,
            None,
            options=options,
            transform=transform,
            tiles=work,
            on_done=scratch.done.mark,
            sink=sink,
        )
        return stats, sum(sink.nonfinite)
    finally:
        scratch.done.flush()  # what finished is kept, whatever stopped the run
