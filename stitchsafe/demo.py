"""``stitchsafe demo``: the whole job on a built-in sample and network, offline.

It synthesises a small 3-D nuclei-like volume, builds a small valid-conv U-Net with a
fixed seed (untrained: the demo shows exact stitching, not segmentation quality), runs
``predict`` tile by tile, and compares the stitched result with one whole-volume forward
pass and with a naive tiling whose tiles leave the period lattice.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StitchsafeError
from .geometry import Plan

DEMO_SHAPE = (40, 96, 96)
DEMO_TILE = (16, 32, 32)


def synthetic_nuclei(
    shape: tuple[int, ...] = DEMO_SHAPE, *, n_objects: int = 30, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Blob-like nuclei with Poisson-ish noise and their instance labels.

    Returns ``(image, labels)``: ``uint16`` intensities and ``uint32`` ids (0 = background).

    >>> img, lab = synthetic_nuclei((8, 16, 16), n_objects=3, seed=1)
    >>> img.shape, img.dtype, int(lab.max()) <= 3
    ((8, 16, 16), dtype('uint16'), True)
    """
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij")
    image = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint32)
    for i in range(1, n_objects + 1):
        centre = [rng.uniform(0, s) for s in shape]
        radii = [rng.uniform(3, max(4, s / 6)) for s in shape]
        d2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
        inside = d2 < 1.0
        labels[inside & (labels == 0)] = i
        image += rng.uniform(0.6, 1.0) * np.exp(-2.0 * d2)
    noisy = 100 + 800 * image + rng.normal(0, 20, shape)
    return np.clip(noisy, 0, 65535).astype(np.uint16), labels


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
        attributes={"source": "stitchsafe.demo.synthetic_nuclei"},
    )
    write_block(spec, Box.from_shape(image.shape), image[None])


def run_demo(
    output: str | os.PathLike[str], *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Build the sample and network under ``output``, predict, and measure exactness.

    Returns a JSON-ready summary (paths, tiles, seconds, deviations).
    """
    import torch
    import zarr

    from .api import predict
    from .engine import run_plan, whole_volume_forward
    from .geometry import make_plan
    from .io import open_volume, prepare_output
    from .model import load_model, save_checkpoint, unet_metadata
    from .normalize import compute_normalization
    from .unet import UNetConfig, build_unet

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
    image, _ = synthetic_nuclei()
    _write_sample(container, image)
    cfg = UNetConfig(
        dims=3, in_channels=1, out_channels=8, pooling_factors=((1, 2, 2), (2, 2, 2)), features=4
    )
    model_path = out / "demo-unet.pt"
    save_checkpoint(build_unet(cfg, seed=0), model_path, metadata=unet_metadata(cfg))

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
    stitched = np.asarray(zarr.open_array(os.fspath(container / result.embeddings), mode="r"))

    model = load_model(model_path, device="cpu")
    geometry = cfg.geometry()
    volume = open_volume(container, key="raw", spatial_dims=3)
    norm = compute_normalization(volume, method=result.normalization["method"])
    whole = whole_volume_forward(image[None], model, geometry, transform=norm)
    scale = float(np.abs(whole).max())
    dev = float(np.abs(stitched - whole).max())

    # A naive tiling: write boxes one voxel shorter than a period multiple, so tile
    # origins drift off the lattice (what tools that ignore the period do).
    naive_plan = make_plan(
        volume.shape, geometry, tile_shape=[t - 1 for t in DEMO_TILE], exact=False
    )
    naive_spec = prepare_output(
        os.fspath(container),
        image="naive-tiling",
        shape=volume.shape,
        channels=8,
        chunks=naive_plan.chunks,
        axes=("z", "y", "x"),
        overwrite=True,
        attributes={"note": "tiles off the period lattice, for comparison only"},
    )
    run_plan(volume, model, naive_plan, naive_spec, transform=norm, progress=False)
    volume.close()
    naive = np.asarray(zarr.open_array(os.fspath(container / naive_spec.array), mode="r"))
    naive_dev = float(np.abs(naive - whole).max())
    picture = out / "deviation.png"
    _save_pictures(picture, stitched, naive, whole, result.plan.plan, naive_plan)
    return {
        "output": result.output,
        "embeddings": result.embeddings,
        "model": os.fspath(model_path),
        "volume_shape": list(image.shape),
        "tile_shape": list(result.plan.plan.tile_shape),
        "tiles": result.tiles,
        "period": list(geometry.period),
        "seconds": round(seconds, 3),
        "max_abs_deviation": dev,
        "relative_deviation": dev / scale,
        "exact": dev <= 1e-4 * scale,
        "naive_relative_deviation": naive_dev / scale,
        "pictures": [os.fspath(picture)],
    }


def _save_pictures(
    path: Path,
    stitched: np.ndarray,
    naive: np.ndarray,
    whole: np.ndarray,
    plan: Plan,
    naive_plan: Plan,
) -> None:
    """Deviation maps of the middle z slice, with each tiling's tile borders drawn."""
    from .pictures import relative_log_deviation, save_deviation_maps

    z = stitched.shape[1] // 2

    def edges(p: Plan) -> list[list[int]]:
        return [list(range(w, v, w)) for w, v in zip(p.tile_shape[1:], p.volume_shape[1:])]

    save_deviation_maps(
        path,
        [
            (
                "stitchsafe: tiles on the period lattice",
                relative_log_deviation(stitched[:, z], whole[:, z]),
            ),
            ("naive: tiles off the lattice", relative_log_deviation(naive[:, z], whole[:, z])),
        ],
        tile_edges=[edges(plan), edges(naive_plan)],
        title=f"Deviation from one whole-volume pass (z = {z})",
    )
