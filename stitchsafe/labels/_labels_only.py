"""Labels-only runs: instance labels written, embeddings never (``predict --no-embeddings``).

Writing the embeddings (``C`` float channels per voxel) is the slowest part of a run on a
GPU. When only the instance labels are wanted, each tile is computed with a few voxels of
extra output on the period lattice (:mod:`stitchsafe.labels`), labelled while it is
in memory, and reduced to block-local fragment ids and one ``uint32`` code per voxel in
two scratch arrays (in the bookkeeping folder: :func:`stitchsafe.io.bookkeeping_path`).
Three passes over those — fragment tables, links across block faces, relabelling (and
growth) — give the labels :func:`stitchsafe.labels.write_labels` would derive from a full
run's embeddings, identical voxel for voxel. The scratch arrays go when the labels are done.

Layout: a stand-alone OME-Zarr 0.5 label image ``<group>/instances`` (``multiscales`` and
``image-label`` metadata, so napari opens it as labels), one shard (or chunk) per tile
write box, with the run's attributes and its done mask, so ``--resume`` works as for embeddings.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from ..engine import PipelineOptions, RunStats, run_plan
from ..errors import StitchsafeError
from ..geometry import Box, Plan, Tile
from ..io import (
    DoneMask,
    ImageLayout,
    OutputSpec,
    PhysicalScale,
    bookkeeping_path,
    create_label_image,
    mark_complete,
    storage_shape,
)
from ._blocks import BlockGrid, BlockRunner, block_runner, face_plane
from ._blockwise import LabelStats
from ._instances import first_voxel_order
from ._merge import FaceLinks, merge_and_relabel
from ._params import LabelParams, check_label_dtype, max_label
from ._tile_labels import (
    ExtendedTiles,
    grow_by_codes,
    labelling_margin,
    lattice_margin,
    tile_fragments,
)

__all__ = [
    "CODES",
    "FRAGMENTS",
    "LABELS_IMAGE",
    "CodeBlocks",
    "LabelsOnlyResult",
    "LabelsOnlyRun",
    "label_from_fragments",
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
    group
        The zarr v3 group the label image ``instances`` goes into.
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
    """

    group: str
    params: LabelParams
    attributes: dict[str, Any] = field(hash=False)
    label_dtype: str = "uint32"
    previous: tuple[OutputSpec, dict[str, Any]] | None = field(default=None, hash=False)
    check_previous: Callable[[dict[str, Any]], None] | None = None
    overwrite: bool = False
    physical: PhysicalScale | None = None

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
    """A labels-only run's label image, its two scratch arrays, its done mask, the tiles
    left to compute (None: all)."""

    spec: OutputSpec
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
    """Compute ``plan``'s tiles and write only their instance labels to ``group/instances``.

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
    if run.previous is None:
        scratch = _create_scratch(plan, run, attrs)
    else:
        spec, stored = run.previous
        if run.check_previous is not None:
            run.check_previous(stored)
        if stored.get("complete"):
            # Nothing left to compute, and the scratch arrays are gone: keep the labels.
            objects = int(stored.get("objects", 0))
            empty = LabelStats(0, 0, 0, 0.0)
            return LabelsOnlyResult(spec, 0, objects, str(options.device), empty)
        scratch = _reopen_scratch(spec, plan, options.batch_size)
    stats = _compute_tiles(volume, model, plan, run, scratch, margin, options, transform)
    spec = scratch.spec
    try:
        label_stats = label_from_fragments(
            scratch.fragments,
            scratch.codes,
            _array(spec, "0", create=False),
            params=run.params,
            progress=options.progress,
        )
    except KeyboardInterrupt as stop:
        stop.add_note(
            "Labelling stopped before it was complete: every tile is finished, and the "
            f"label image {spec.image} stays marked incomplete until a rerun with --resume "
            "labels it again from them."
        )
        raise
    _finish(spec, attrs, stats.seconds + label_stats.seconds, label_stats.objects)
    return LabelsOnlyResult(spec, stats.tiles, label_stats.objects, stats.device, label_stats)


def _finish(spec: OutputSpec, attrs: dict[str, Any], seconds: float, objects: int) -> None:
    """Remove the scratch arrays and mark the label image complete."""
    for name in (FRAGMENTS, CODES):
        shutil.rmtree(_scratch_path(spec, name), ignore_errors=True)
    mark_complete(
        spec, {**attrs, "complete": True, "objects": objects, "seconds": round(seconds, 3)}
    )


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


def _create_scratch(plan: Plan, run: LabelsOnlyRun, attrs: dict[str, Any]) -> _Scratch:
    """A new label image (marked incomplete), its scratch arrays and done mask."""
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
    spec = create_label_image(run.group, layout, image=LABELS_IMAGE, overwrite=run.overwrite)
    return _Scratch(
        spec,
        _array(spec, FRAGMENTS, create=True, dtype=run.label_dtype),
        _array(spec, CODES, create=True),
        DoneMask.create(spec.group, spec.image, plan.grid_shape),
        None,
    )


def _reopen_scratch(spec: OutputSpec, plan: Plan, batch_size: int) -> _Scratch:
    """An interrupted run's scratch arrays and done mask, and the tiles it left (in batches)."""
    fragments = _array(spec, FRAGMENTS, create=False)
    codes = _array(spec, CODES, create=False)
    done = DoneMask.open(spec.group, spec.image, plan.grid_shape)
    return _Scratch(spec, fragments, codes, done, done.remaining(plan, batch_size))


def _scratch_path(spec: OutputSpec, name: str) -> str:
    """The scratch array ``name``: in the bookkeeping folder, or in the label image where
    an interrupted run of an earlier version left it."""
    legacy = os.path.join(spec.group, *spec.image.split("/"), name)
    return legacy if os.path.exists(legacy) else bookkeeping_path(spec.group, spec.image, name)


def _array(spec: OutputSpec, name: str, *, create: bool, dtype: str = "uint32") -> Any:
    """The scratch array ``name`` of the label image; new (like level 0) or opened."""
    path = _scratch_path(spec, name)
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
    """The pipeline's sink: each tile's output reduced to fragments and codes, written."""

    work: ExtendedTiles
    params: LabelParams
    label_dtype: str
    fragments: Any
    codes: Any

    def __call__(self, batch: list[Tile], y: np.ndarray) -> None:
        limit = max_label(np.dtype(self.label_dtype))
        for tile, raw in zip(batch, y):
            data = raw[(slice(None), *tile.crop.to_slices())]
            window = self.work.window(tile)
            frags, voxel_codes, sizes = tile_fragments(data, window, tile.write, self.params)
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
) -> RunStats:
    """Run the tiles left (with ``margin``) through the pipeline into the scratch arrays."""
    work = ExtendedTiles(plan, margin, scratch.todo)
    sink = _FragmentSink(work, run.params, run.label_dtype, scratch.fragments, scratch.codes)
    try:
        return run_plan(
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
    finally:
        scratch.done.flush()  # what finished is kept, whatever stopped the run


@dataclass(frozen=True)
class CodeBlocks:
    """A labels-only run's voxel codes read block by block: the links across a block's
    faces and the growth of a window's labels (:mod:`stitchsafe.labels`)."""

    codes: Any
    grid: BlockGrid
    grow_steps: int

    def face_links(self, i: int) -> FaceLinks:
        """Which pairs across block ``i``'s faces are linked: its link bits."""
        box = self.grid.boxes[i]

        def linked(axis: int, hi_box: Box, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            slab = face_plane(box, axis, box.end[axis] - 1)
            bits = (np.asarray(self.codes[slab.to_slices()]).squeeze(axis) >> (1 + axis)) & 1
            return (bits > 0) & (lo > 0) & (hi > 0)

        return linked

    def grow(self, labels: np.ndarray, window: Box) -> np.ndarray:
        """``labels`` of ``window`` grown in the growth order of its codes."""
        return grow_by_codes(labels, np.asarray(self.codes[window.to_slices()]), self.grow_steps)


def label_from_fragments(
    fragments: Any,
    codes: Any,
    out: Any,
    *,
    params: LabelParams,
    runner: BlockRunner | None = None,
    **run: Any,
) -> LabelStats:
    """Merge block-local ``fragments`` across faces and relabel (and grow) into ``out``.

    The passes of :func:`stitchsafe.labels.label_blocks` after its components pass,
    reading the links and growth order from ``codes`` instead of embeddings. All three
    arrays share the block grid (``out``'s shards, or chunks). ``runner`` and the keywords
    ``num_workers`` and ``progress`` are those of :class:`~stitchsafe.labels.BlockRunner`.
    """
    start = time.perf_counter()
    runner = block_runner(runner, run, "label_from_fragments")
    grid = BlockGrid(tuple(out.shape), storage_shape(out) or tuple(out.shape))
    table = functools.partial(_fragment_table, fragments, grid)
    tables = runner(table, len(grid), "labels: fragments")
    objects, count = merge_and_relabel(
        fragments,
        out,
        tables,
        grid=grid,
        params=params,
        limit=max_label(np.dtype(out.dtype)),
        runner=runner,
        source=CodeBlocks(codes, grid, params.grow),
    )
    return LabelStats(
        objects=objects,
        fragments=count,
        blocks=len(grid),
        seconds=time.perf_counter() - start,
    )


def _fragment_table(fragments: Any, grid: BlockGrid, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Block ``i``'s fragment sizes and global first voxels, from its local ids."""
    box = grid.boxes[i]
    flat = np.asarray(fragments[box.to_slices()]).reshape(-1).astype(np.int64)
    count = int(flat.max()) if flat.size else 0
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # label_block numbers fragments by first voxel, so this only finds those voxels.
    flat, first_local = first_voxel_order(flat, count)
    sizes = np.bincount(flat, minlength=count + 1)[1:].astype(np.int64)
    return sizes, grid.global_index(i, first_local)
