"""``stitchsafe demo``: the whole job on a built-in sample and the bundled model, offline.

It synthesises a small 3-D volume of touching, noisy nuclei-like cells with known instance
labels (held out: a seed the bundled model never saw), runs ``predict`` tile by tile with
the bundled 3-D model (:mod:`stitchsafe.models`), writes OME-Zarr embeddings and labels,
scores the labels against the ground truth (AP@0.5), and compares the stitched embeddings
with one whole-volume forward pass and with a naive tiling whose tiles leave the period
lattice. Two PNG pictures show a slice with the labels overlaid and both deviation maps.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from .engine import Normalization, run_plan, whole_volume_forward
from .errors import StitchsafeError
from .geometry import Box, ModelGeometry, Plan
from .io import open_volume, prepare_output, write_block
from .labels import average_precision, match
from .models import bundled_model, load_model, resolve_geometry
from .prediction import PredictResult, predict
from .progress import Steps, plural, showing_stages
from .reports import (
    EXACT_RTOL,
    matched_objects,
    naive_tiling,
    save_deviation_picture,
    save_matched_labels,
)
from .training import synthetic_cells

__all__ = ["DEMO_SEED", "DEMO_SHAPE", "DEMO_TILE", "describe_demo", "run_demo"]

DEMO_SHAPE = (32, 96, 96)
DEMO_TILE = (16, 32, 32)
DEMO_SEED = 7  # the bundled models were trained on seed 0
# A nominal voxel size: the synthetic cells' radii (4 to 8 voxels) are those of nuclei
# at 1 micrometer per voxel. Written into the sample, so every output carries it.
DEMO_VOXEL_SIZE = (1.0, 1.0, 1.0)
DEMO_UNIT = "micrometer"
# The demo's steps, each announced as it starts (the first ones print nothing else).
_STEPS = (
    "making the sample",
    "predicting with the bundled 3-D model",
    "one whole-volume pass and a naive tiling, for comparison",
    "drawing the pictures",
)


@dataclass(frozen=True)
class _Comparison:
    """The stitched embeddings next to one whole-volume pass and a naive tiling."""

    stitched: np.ndarray
    whole: np.ndarray
    naive: np.ndarray
    naive_plan: Plan
    geometry: ModelGeometry

    @property
    def scale(self) -> float:
        return float(np.abs(self.whole).max())

    @property
    def deviation(self) -> float:
        return float(np.abs(self.stitched - self.whole).max())

    @property
    def naive_deviation(self) -> float:
        return float(np.abs(self.naive - self.whole).max())


def run_demo(
    output: str | os.PathLike[str], *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Build the sample under ``output``, predict with the bundled 3-D model, measure.

    Returns a JSON-ready summary (paths, tiles, seconds, objects, AP@0.5, deviations).
    With ``progress``, each step says when it starts (a line in the log or on the
    terminal) and the long ones show their own progress.
    """
    out, container = _prepare_folder(Path(output), overwrite)
    with showing_stages(progress), Steps(_STEPS, desc="demo", enabled=progress) as steps:
        steps.start(0)
        torch.manual_seed(0)
        image, truth = synthetic_cells(DEMO_SHAPE, seed=DEMO_SEED)
        _write_sample(container, image)
        steps.start(1)
        start = time.perf_counter()
        result = predict(
            bundled_model(3),
            container,
            input_key="raw",
            tile_shape=DEMO_TILE,
            device="cpu",
            overwrite=True,
            progress=progress,
        )
        seconds = time.perf_counter() - start
        assert result.labels is not None and result.embeddings is not None
        labels = np.asarray(zarr.open_array(os.fspath(container / result.labels), mode="r"))
        ap50 = average_precision(truth, labels)
        steps.start(2)
        comparison = _compare(container, image, result, progress=progress)
        steps.start(3)
        pictures = _pictures(out, image, (truth, labels), comparison, result)
    return _summary(result, image, truth, seconds, ap50, comparison, pictures)


def _prepare_folder(out: Path, overwrite: bool) -> tuple[Path, Path]:
    """The demo folder and its sample container, refusing to replace one unasked."""
    container = out / "sample.zarr"
    if container.exists() and not overwrite:
        raise StitchsafeError(
            f"{container} already exists; pass --overwrite to replace the demo outputs, or "
            "choose another --output folder."
        )
    if container.exists():
        shutil.rmtree(container)
    out.mkdir(parents=True, exist_ok=True)
    return out, container


def _write_sample(group: Path, image: np.ndarray) -> None:
    spec = prepare_output(
        os.fspath(group),
        image="raw",
        shape=image.shape,
        channels=1,
        chunks=tuple(min(s, 64) for s in image.shape),
        dtype="uint16",
        axes=("z", "y", "x"),
        overwrite=True,
        attributes={"source": f"stitchsafe.training.synthetic_cells(seed={DEMO_SEED})"},
        scale=DEMO_VOXEL_SIZE,
        units=(DEMO_UNIT,) * 3,
    )
    write_block(spec, Box.from_shape(image.shape), image[None])


def _compare(
    container: Path, image: np.ndarray, result: PredictResult, *, progress: bool
) -> _Comparison:
    """One whole-volume pass and a naive tiling, with predict's own normalisation."""
    assert result.embeddings is not None
    stitched = np.asarray(zarr.open_array(os.fspath(container / result.embeddings), mode="r"))
    model = load_model(result.plan.model_path, device="cpu")
    geometry, _ = resolve_geometry(model)
    norm = Normalization.from_dict(result.normalization)  # exactly what predict applied
    whole = whole_volume_forward(image[None], model, geometry, transform=norm)
    volume = open_volume(container, key="raw", spatial_dims=3)
    # A naive tiling: write boxes one voxel shorter than a period multiple, so tile
    # origins drift off the lattice (what tools that ignore the period do).
    naive_plan = naive_tiling(volume.shape, geometry, DEMO_TILE)
    naive_spec = prepare_output(
        os.fspath(container),
        image="naive-tiling",
        shape=volume.shape,
        channels=geometry.channels_out,
        chunks=naive_plan.chunks,
        axes=("z", "y", "x"),
        overwrite=True,
        attributes={"note": "tiles off the period lattice, for comparison only"},
    )
    run_plan(volume, model, naive_plan, naive_spec, transform=norm, progress=progress)
    volume.close()
    naive = np.asarray(zarr.open_array(os.fspath(container / naive_spec.array), mode="r"))
    return _Comparison(stitched, whole, naive, naive_plan, geometry)


def _pictures(
    out: Path,
    image: np.ndarray,
    objects: tuple[np.ndarray, np.ndarray],
    comparison: _Comparison,
    result: PredictResult,
) -> list[str]:
    """``labels.png`` (a slice, truth and labels, matched) and ``deviation.png`` (both
    tilings)."""
    deviation_png, labels_png = out / "deviation.png", out / "labels.png"
    c = comparison
    save_deviation_picture(
        deviation_png,
        c.stitched,
        c.naive,
        c.whole,
        result.plan.plan,
        c.naive_plan,
        z=c.stitched.shape[1] // 2,
    )
    truth, labels = objects
    z = image.shape[0] // 2
    scores = match(truth, labels)  # in 3-D, as the colours below
    physical = result.plan.physical
    save_matched_labels(
        labels_png,
        image[z],
        truth[z],
        labels[z],
        matches=matched_objects(truth, labels),
        captions=(
            f"ground truth: {plural(int(truth.max()), 'object')}, {scores.fn} missed",
            f"bundled 3-D model: {plural(scores.tp + scores.fp, 'object')}, "
            f"{plural(scores.fp, 'false positive')}",
        ),
        pixel=(1.0, None) if physical is None else (physical.scale[-1], physical.units[-1]),
        title=f"Instance labels, slice z = {z} of the 3-D sample: AP@0.5 {scores.ap:.2f} "
        "(objects matched in 3-D)",
    )
    return [os.fspath(labels_png), os.fspath(deviation_png)]


def _summary(
    result: PredictResult,
    image: np.ndarray,
    truth: np.ndarray,
    seconds: float,
    ap50: float,
    comparison: _Comparison,
    pictures: list[str],
) -> dict[str, Any]:
    """The JSON-ready summary ``stitchsafe demo --json`` prints."""
    dev, scale = comparison.deviation, comparison.scale
    return {
        "output": result.output,
        "embeddings": result.embeddings,
        "labels": result.labels,
        "model": result.plan.model_path,
        "volume_shape": list(image.shape),
        "tile_shape": list(result.plan.plan.tile_shape),
        "tiles": result.tiles,
        "period": list(comparison.geometry.period),
        "seconds": round(seconds, 3),
        "objects": int(result.objects or 0),
        "true_objects": int(truth.max()),
        "ap50": round(ap50, 4),
        "max_abs_deviation": dev,
        "relative_deviation": dev / scale,
        "exact": dev <= EXACT_RTOL * scale,
        "naive_relative_deviation": comparison.naive_deviation / scale,
        "pictures": pictures,
        "warnings": list(result.warnings),  # a result that looks wrong (none expected)
    }


def describe_demo(summary: dict[str, Any]) -> str:
    """The demo's summary as the few lines ``stitchsafe demo`` prints."""
    return (
        f"stitchsafe demo: {plural(summary['tiles'], 'tile')} of {summary['tile_shape']} over a "
        f"{summary['volume_shape']} sample in {summary['seconds']:.1f} s "
        f"(bundled 3-D model)\n"
        f"  objects found: {summary['objects']} (ground truth {summary['true_objects']}); "
        f"AP@0.5 = {summary['ap50']:.3f}\n"
        f"  embeddings: {summary['output']}/{summary['embeddings']}\n"
        f"  labels:     {summary['output']}/{summary['labels']}\n"
        f"  max |stitched - whole-volume| = {summary['max_abs_deviation']:.3g} "
        f"(relative {summary['relative_deviation']:.3g}; exact: {summary['exact']})\n"
        f"  naive tiling (tiles off the period lattice): relative deviation "
        f"{summary['naive_relative_deviation']:.3g}\n"
        f"  pictures: {', '.join(summary['pictures'])}\n"
        # The container's root lists raw (with its labels) and the embeddings.
        f"  look:     napari --plugin napari-ome-zarr {summary['output']}"
    )
