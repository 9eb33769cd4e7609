"""``stitchsafe demo``: the whole job on a built-in sample and the bundled model, offline.

It synthesises a small 3-D volume of touching, noisy nuclei-like cells with known instance
labels (held out: a seed the bundled model never saw), runs ``predict`` tile by tile with
the bundled 3-D model (:mod:`stitchsafe.bundled`), writes OME-Zarr embeddings and labels,
scores the labels against the ground truth (AP@0.5), and compares the stitched embeddings
with one whole-volume forward pass and with a naive tiling whose tiles leave the period
lattice. Two PNG pictures show a slice with the labels overlaid and both deviation maps.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StitchsafeError

DEMO_SHAPE = (32, 96, 96)
DEMO_TILE = (16, 32, 32)
DEMO_SEED = 7  # the bundled models were trained on seed 0


def _write_sample(group: Path, image: np.ndarray) -> None:
    from .geometry import Box
    from .io import prepare_output, write_block

    spec = prepare_output(
        os.fspath(group),
        image="raw",
        shape=image.shape,
        channels=1,
        chunks=tuple(min(s, 64) for s in image.shape),
        dtype="uint16",
        axes=("z", "y", "x"),
        overwrite=True,
        attributes={"source": f"stitchsafe.synthetic.synthetic_cells(seed={DEMO_SEED})"},
    )
    write_block(spec, Box.from_shape(image.shape), image[None])


def run_demo(
    output: str | os.PathLike[str], *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Build the sample under ``output``, predict with the bundled 3-D model, measure.

    Returns a JSON-ready summary (paths, tiles, seconds, objects, AP@0.5, deviations).
    """
    import torch
    import zarr

    from .api import predict
    from .bundled import bundled_model
    from .check import EXACT_RTOL, naive_tiling, save_deviation_picture
    from .engine import run_plan, whole_volume_forward
    from .io import open_volume, prepare_output
    from .metrics import average_precision
    from .model import load_model, resolve_geometry
    from .normalize import Normalization
    from .synthetic import synthetic_cells

    out = Path(output)
    container = out / "sample.zarr"
    if container.exists() and not overwrite:
        raise StitchsafeError(
            f"{container} already exists; pass --overwrite to replace the demo outputs, or "
            "choose another --output folder."
        )
    if container.exists():
        shutil.rmtree(container)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    image, truth = synthetic_cells(DEMO_SHAPE, seed=DEMO_SEED)
    _write_sample(container, image)
    model_path = bundled_model(3)

    start = time.perf_counter()
    result = predict(
        model_path,
        container,
        input_key="raw",
        tile_shape=DEMO_TILE,
        device="cpu",
        overwrite=True,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    assert result.labels is not None and result.embeddings is not None
    stitched = np.asarray(zarr.open_array(os.fspath(container / result.embeddings), mode="r"))
    labels = np.asarray(zarr.open_array(os.fspath(container / result.labels), mode="r"))
    ap50 = average_precision(truth, labels)

    model = load_model(model_path, device="cpu")
    geometry, _ = resolve_geometry(model)
    volume = open_volume(container, key="raw", spatial_dims=3)
    norm = Normalization.from_dict(result.normalization)  # exactly what predict applied
    whole = whole_volume_forward(image[None], model, geometry, transform=norm)
    scale = float(np.abs(whole).max())
    dev = float(np.abs(stitched - whole).max())

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
    run_plan(volume, model, naive_plan, naive_spec, transform=norm, progress=False)
    volume.close()
    naive = np.asarray(zarr.open_array(os.fspath(container / naive_spec.array), mode="r"))
    naive_dev = float(np.abs(naive - whole).max())
    deviation_png, labels_png = out / "deviation.png", out / "labels.png"
    save_deviation_picture(
        deviation_png,
        stitched,
        naive,
        whole,
        result.plan.plan,
        naive_plan,
        z=stitched.shape[1] // 2,
    )
    _save_overlay(labels_png, image, truth, labels, ap50)
    return {
        "output": result.output,
        "embeddings": result.embeddings,
        "labels": result.labels,
        "model": os.fspath(model_path),
        "volume_shape": list(image.shape),
        "tile_shape": list(result.plan.plan.tile_shape),
        "tiles": result.tiles,
        "period": list(geometry.period),
        "seconds": round(seconds, 3),
        "objects": int(result.objects or 0),
        "true_objects": int(truth.max()),
        "ap50": round(ap50, 4),
        "max_abs_deviation": dev,
        "relative_deviation": dev / scale,
        "exact": dev <= EXACT_RTOL * scale,
        "naive_relative_deviation": naive_dev / scale,
        "pictures": [os.fspath(labels_png), os.fspath(deviation_png)],
    }


def _save_overlay(
    path: Path, image: np.ndarray, truth: np.ndarray, labels: np.ndarray, ap50: float
) -> None:
    from .pictures import save_label_overlay

    z = image.shape[0] // 2
    save_label_overlay(
        path,
        image[z],
        [
            ("ground truth", truth[z]),
            (f"stitchsafe, bundled 3-D model (AP@0.5 {ap50:.2f})", labels[z]),
        ],
        title=f"Instance labels, slice z = {z} of the 3-D sample",
    )
