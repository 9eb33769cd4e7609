"""Labels-only runs: instance labels written, embeddings never (``predict --no-embeddings``).

Writing the embeddings (``C`` float channels per voxel) is the slowest part of a run on a
GPU. When only the instance labels are wanted, each tile is computed with a few voxels of
extra output on the period lattice (:mod:`stitchsafe.tile_labels`), labelled while it is
in memory, and reduced to block-local fragment ids and one ``uint32`` code per voxel,
written to two scratch arrays beside the labels. Three passes over those — fragment
tables, links across block faces, relabelling (and growth) — then give the labels that
:func:`stitchsafe.labelling.write_labels` would derive from a full run's embeddings,
identical voxel for voxel. The scratch arrays are removed when the labels are complete.

Layout: a stand-alone OME-Zarr 0.5 label image ``<group>/instances`` (``multiscales`` and
``image-label`` metadata, so napari opens it as labels), chunked by the tile write box,
with the run's attributes and its done mask, so ``--resume`` works as for embeddings.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .blockwise import FaceLinks, LabelStats, _plane, _run, block_boxes, merge_and_relabel
from .errors import StitchsafeError
from .geometry import Box, Plan, Tile
from .instances import LabelParams, _first_voxel_order, max_label
from .io import OutputSpec, mark_complete, prepare_label_image
from .tile_labels import (
    ExtendedTiles,
    grow_by_codes,
    labelling_margin,
    lattice_margin,
    tile_fragments,
)

__all__ = ["LABELS_IMAGE", "LabelsOnlyResult", "run_labels_only"]

LABELS_IMAGE = "instances"
FRAGMENTS = "stitchsafe-fragments"
CODES = "stitchsafe-codes"


@dataclass(frozen=True)
class LabelsOnlyResult:
    """What :func:`run_labels_only` wrote."""

    spec: OutputSpec
    tiles: int
    objects: int
    device: str
    labels: LabelStats


def _array(spec: OutputSpec, name: str, *, create: bool, dtype: str = "uint32") -> Any:
    import zarr

    path = os.path.join(spec.group, *spec.image.split("/"), name)
    if not create:
        return zarr.open_array(store=path, mode="r+")
    out = zarr.open_array(store=os.path.join(spec.group, *spec.array.split("/")), mode="r")
    return zarr.create_array(
        store=path,
        shape=out.shape,
        chunks=out.chunks,
        dtype=dtype,
        fill_value=0,
        overwrite=True,
        compressors=out.compressors,
    )


def run_labels_only(
    volume: Any,
    model: Any,
    plan: Plan,
    *,
    group: str,
    params: LabelParams,
    label_dtype: str,
    attributes: dict[str, Any],
    previous: tuple[OutputSpec, dict[str, Any]] | None,
    check_previous: Callable[[dict[str, Any]], None],
    transform: Any,
    pad_mode: str,
    batch_size: int,
    device: Any,
    precision: str,
    overwrite: bool,
    progress: bool,
) -> LabelsOnlyResult:
    """Compute ``plan``'s tiles and write only their instance labels to ``group/instances``.

    ``previous`` is the label image an interrupted run left (``--resume``); its attributes
    go through ``check_previous`` (the run fingerprint) before anything is reused.
    """
    from .engine import run_plan
    from .resume import DoneMask

    margin = lattice_margin(plan, labelling_margin(params))
    tiles_read = tuple(r + 2 * m for r, m in zip(plan.read_shape, margin))
    if not plan.geometry.is_valid_input(tiles_read):
        raise StitchsafeError(
            f"labels-only tiles need an input of {tiles_read}, which the model does not "
            "accept; run without --no-embeddings."
        )
    attrs = {**attributes, "labels_only": True, "label_margin": list(margin)}
    if previous is None:
        spec = prepare_label_image(
            group,
            image=LABELS_IMAGE,
            shape=plan.volume_shape,
            chunks=plan.chunks,
            dtype=label_dtype,
            axes=attributes["axes"],
            overwrite=overwrite,
            attributes={**attrs, "complete": False},
        )
        fragments = _array(spec, FRAGMENTS, create=True, dtype=label_dtype)
        codes = _array(spec, CODES, create=True)
        done = DoneMask.create(spec.group, spec.image, plan.grid_shape)
        todo = None
    else:
        spec, stored = previous
        check_previous(stored)
        if stored.get("complete"):
            # Nothing left to compute, and the scratch arrays are gone: keep the labels.
            return LabelsOnlyResult(
                spec, 0, int(stored.get("objects", 0)), str(device), LabelStats(0, 0, 0, 0.0)
            )
        fragments = _array(spec, FRAGMENTS, create=False)
        codes = _array(spec, CODES, create=False)
        done = DoneMask.open(spec.group, spec.image, plan.grid_shape)
        todo = done.remaining(plan)
    work = ExtendedTiles(plan, margin, todo)
    local_limit = max_label(np.dtype(label_dtype))

    def sink(batch: list[Tile], y: np.ndarray) -> None:
        for tile, raw in zip(batch, y):
            data = raw[(slice(None), *tile.crop.to_slices())]
            frags, voxel_codes, sizes = tile_fragments(data, work.window(tile), tile.write, params)
            if sizes.size > local_limit:
                raise StitchsafeError(
                    f"block {tile.write} holds {sizes.size} separate pieces, more than "
                    f"{label_dtype} ids ({local_limit}); pass --label-dtype uint64 or use "
                    "smaller tiles."
                )
            fragments[tile.write.to_slices()] = frags.astype(label_dtype, copy=False)
            codes[tile.write.to_slices()] = voxel_codes

    try:
        stats = run_plan(
            volume,
            model,
            plan,
            None,
            transform=transform,
            pad_mode=pad_mode,
            batch_size=batch_size,
            device=device,
            precision=precision,
            tiles=work,
            on_done=done.mark,
            progress=progress,
            sink=sink,
        )
    finally:
        done.flush()  # what finished is kept, whatever stopped the run
    out = _array(spec, "0", create=False)
    label_stats = label_from_fragments(fragments, codes, out, params=params, progress=progress)
    for name in (FRAGMENTS, CODES):
        shutil.rmtree(os.path.join(spec.group, *spec.image.split("/"), name), ignore_errors=True)
    mark_complete(
        spec,
        {
            **attrs,
            "complete": True,
            "objects": label_stats.objects,
            "seconds": round(stats.seconds + label_stats.seconds, 3),
        },
    )
    return LabelsOnlyResult(spec, stats.tiles, label_stats.objects, stats.device, label_stats)


def label_from_fragments(
    fragments: Any,
    codes: Any,
    out: Any,
    *,
    params: LabelParams,
    num_workers: int | None = None,
    progress: bool = True,
) -> LabelStats:
    """Merge block-local ``fragments`` across faces and relabel (and grow) into ``out``.

    The passes of :func:`stitchsafe.blockwise.label_blocks` after its components pass,
    reading the links and growth order from ``codes`` instead of embeddings. All three
    arrays share the block grid (``out``'s chunks).
    """
    start = time.perf_counter()
    shape = tuple(int(s) for s in out.shape)
    block = tuple(int(c) for c in out.chunks)
    boxes = block_boxes(shape, block)
    run = functools.partial(_run, num_workers=num_workers, progress=progress)

    def tables(i: int) -> tuple[np.ndarray, np.ndarray]:
        box = boxes[i]
        flat = np.asarray(fragments[box.to_slices()]).reshape(-1).astype(np.int64)
        count = int(flat.max()) if flat.size else 0
        if count == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        # label_block numbers fragments by first voxel, so this only finds those voxels.
        flat, first_local = _first_voxel_order(flat, count)
        sizes = np.bincount(flat, minlength=count + 1)[1:].astype(np.int64)
        coords = np.unravel_index(first_local, box.shape)
        first = np.ravel_multi_index(tuple(c + b for c, b in zip(coords, box.begin)), shape)
        return sizes, first.astype(np.int64)

    found_tables = run(tables, len(boxes), desc="labels: fragments")

    def face_links(i: int) -> FaceLinks:
        box = boxes[i]

        def linked(axis: int, hi_box: Box, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            slab = _plane(box, axis, box.end[axis] - 1)
            bits = (np.asarray(codes[slab.to_slices()]).squeeze(axis) >> (1 + axis)) & 1
            return (bits > 0) & (lo > 0) & (hi > 0)

        return linked

    def grow(labels: np.ndarray, window: Box) -> np.ndarray:
        return grow_by_codes(labels, np.asarray(codes[window.to_slices()]), params.grow)

    objects, count = merge_and_relabel(
        fragments,
        out,
        tables=found_tables,
        boxes=boxes,
        block=block,
        params=params,
        limit=max_label(np.dtype(out.dtype)),
        run=run,
        face_links=face_links,
        grow=grow,
    )
    return LabelStats(
        objects=objects,
        fragments=count,
        blocks=len(boxes),
        seconds=time.perf_counter() - start,
    )
