"""Quality and throughput of the instance labelling on synthetic volumes with known truth.

What is measured: the *labelling algorithm* (:mod:`stitchsafe.labels`), not a network.
No trained model exists yet, so the embeddings are built from the ground truth, "ideal
plus noise": every object gets a random centre in an 8-D embedding space, its voxels that
centre plus Gaussian noise (sigma per channel); a foreground channel holds logits +4 inside
objects and -4 outside, plus N(0, 1.5) noise (so ~0.4 % of background voxels turn into
1-voxel false objects, which ``min_size`` removes). Objects are balls (discs in 2-D) of
random radius; where two overlap the nearer centre wins, so many objects touch.

Variants:

``sharp``
    noise only: a boundary between touching objects is one voxel step from one centre to
    the other.
``blurred``
    the embedding field is also smoothed with a Gaussian of 1 voxel, as a network's
    output is at boundaries: a boundary becomes a ramp of small steps. Connected
    components with a distance threshold chain across such ramps and merge touching
    objects; this variant shows how much (an honest weak point of the method).

Reported per variant: mean AP at IoU 0.5 (``tp / (tp + fp + fn)``) and mean adapted Rand
error over the seeds, and the labelling throughput in voxels/s: blockwise on zarr (the
``segment`` path, I/O included), blockwise on in-memory arrays, and the whole array at
once for reference (same run, same machine), with the ratios. The blockwise labels are
checked to be identical to the whole-array labels.

The real nuclei volume (``data/nuclei``) needs embeddings from a trained model:
``benchmarks/nuclei.py`` trains one with ``stitchsafe train`` and scores the labels.

Usage::

    python benchmarks/labels_quality.py [--quick] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from typing import Any

import numpy as np
import zarr
from scipy import ndimage
from scipy.spatial import cKDTree

from stitchsafe.labels import LabelParams, adapted_rand_error, label_array, label_blocks, match

EMBEDDING_DIMS = 8
ROLES = ("embedding",) * EMBEDDING_DIMS + ("foreground",)


def touching_objects(
    shape: tuple[int, ...], n: int, radii: tuple[float, float], seed: int
) -> np.ndarray:
    """Ground truth: ``n`` balls of random radius; overlaps go to the nearer centre."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (n, len(shape))) * np.array(shape)
    radius = rng.uniform(*radii, n)
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"), -1)
    points = grid.reshape(-1, len(shape)).astype(np.float64)
    distance, nearest = cKDTree(centres).query(points, k=1)
    inside = distance < radius[nearest]
    gt = np.where(inside, nearest + 1, 0).astype(np.uint32).reshape(shape)
    # Objects cut into pieces by their neighbours become several ground-truth objects.
    out = np.zeros(shape, np.uint32)
    offset = 0
    for k in np.unique(gt)[1:]:
        parts, count = ndimage.label(gt == k)
        out[parts > 0] = parts[parts > 0] + offset
        offset += count
    return out


def embeddings_from(gt: np.ndarray, *, noise: float, blur: float, seed: int) -> np.ndarray:
    """ "Ideal plus noise" embeddings ``(8 + 1, *shape)`` of a ground truth."""
    rng = np.random.default_rng(seed + 1000)
    centres = rng.normal(0.0, 1.0, (int(gt.max()) + 1, EMBEDDING_DIMS))
    emb = np.empty((EMBEDDING_DIMS + 1, *gt.shape), np.float32)
    for c in range(EMBEDDING_DIMS):
        field = centres[gt, c] + rng.normal(0.0, noise, gt.shape)
        emb[c] = ndimage.gaussian_filter(field, blur) if blur else field
    emb[-1] = np.where(gt > 0, 4.0, -4.0) + rng.normal(0.0, 1.5, gt.shape)
    return emb


def _rate(voxels: int, seconds: float) -> float:
    return voxels / seconds if seconds > 0 else float("inf")


def run_case(
    shape: tuple[int, ...],
    block: tuple[int, ...],
    *,
    n: int,
    radii: tuple[float, float],
    noise: float,
    blur: float,
    seed: int,
    params: LabelParams,
    workdir: str,
) -> dict[str, Any]:
    gt = touching_objects(shape, n, radii, seed)
    emb = embeddings_from(gt, noise=noise, blur=blur, seed=seed)
    voxels = int(gt.size)

    t = time.perf_counter()
    whole = label_array(emb, params=params)
    t_whole = time.perf_counter() - t

    memory = np.zeros(shape, np.uint32)
    t = time.perf_counter()
    label_blocks(emb, memory, params=params, block_shape=block, progress=False)
    t_memory = time.perf_counter() - t

    group = zarr.open_group(os.path.join(workdir, f"case-{seed}-{blur}-{noise}.zarr"), mode="w")
    stored = group.create_array("emb", shape=emb.shape, chunks=(emb.shape[0], *block), dtype="f4")
    stored[...] = emb
    labels = group.create_array("labels", shape=shape, chunks=block, dtype="uint32")
    t = time.perf_counter()
    stats = label_blocks(stored, labels, params=params, progress=False)
    t_zarr = time.perf_counter() - t
    on_disk = labels[...]

    m = match(gt, whole, threshold=0.5)
    return {
        "shape": list(shape),
        "block": list(block),
        "seed": seed,
        "gt_objects": int(gt.max()),
        "objects": stats.objects,
        "ap50": m.ap,
        "precision50": m.precision,
        "recall50": m.recall,
        "adapted_rand_error": adapted_rand_error(gt, whole),
        "identical_to_whole_array": bool(
            np.array_equal(memory, whole) and np.array_equal(on_disk, whole)
        ),
        "voxels_per_s": {
            "whole_array": _rate(voxels, t_whole),
            "blockwise_memory": _rate(voxels, t_memory),
            "blockwise_zarr": _rate(voxels, t_zarr),
        },
        "blocks": stats.blocks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small volumes, one seed")
    parser.add_argument(
        "--json-out", default="benchmarks/results/labels_quality.json", help="JSON path"
    )
    args = parser.parse_args()

    if args.quick:
        configs = [("2-D", (96, 96), (32, 32), 25, (4.0, 9.0))]
        seeds = [0]
    else:
        # Blocks of 65 k (2-D) and 295 k (3-D) voxels: small next to the tiles predict
        # picks (about 2 M input voxels on a CPU, more on a GPU), so the per-block costs
        # (zarr calls, task overhead) weigh more here than they would in production.
        configs = [
            ("2-D", (1024, 1024), (256, 256), 1600, (6.0, 16.0)),
            ("3-D", (64, 192, 192), (32, 96, 96), 450, (4.0, 10.0)),
        ]
        seeds = [0, 1, 2]
    variants = [("sharp", 0.1, 0.0), ("sharp", 0.25, 0.0), ("blurred", 0.1, 1.0)]
    params = LabelParams(1.5, min_size=10, channel_roles=ROLES)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        label_array(np.zeros((len(ROLES), 4, 4), np.float32), params=params)  # imports
        for name, shape, block, n, radii in configs:
            for variant, noise, blur in variants:
                options = {"n": n, "radii": radii, "noise": noise, "blur": blur}
                cases = [
                    run_case(shape, block, seed=s, params=params, workdir=workdir, **options)
                    for s in seeds
                ]
                speed = {
                    k: float(np.mean([c["voxels_per_s"][k] for c in cases]))
                    for k in cases[0]["voxels_per_s"]
                }
                rows.append(
                    {
                        "volume": name,
                        "variant": variant,
                        "noise": noise,
                        "blur": blur,
                        "mean_ap50": float(np.mean([c["ap50"] for c in cases])),
                        "mean_adapted_rand_error": float(
                            np.mean([c["adapted_rand_error"] for c in cases])
                        ),
                        "identical_to_whole_array": all(
                            c["identical_to_whole_array"] for c in cases
                        ),
                        "voxels_per_s": speed,
                        "blockwise_zarr_over_whole": speed["blockwise_zarr"] / speed["whole_array"],
                        "blockwise_memory_over_whole": speed["blockwise_memory"]
                        / speed["whole_array"],
                        "cases": cases,
                    }
                )

    header = (
        f"{'volume':6} {'variant':8} {'noise':>5} {'AP@0.5':>7} {'ARE':>6} {'same':>5} "
        f"{'whole Mvox/s':>12} {'blocks mem':>10} {'blocks zarr':>11} {'zarr/whole':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        v = r["voxels_per_s"]
        print(
            f"{r['volume']:6} {r['variant']:8} {r['noise']:5.2f} {r['mean_ap50']:7.3f} "
            f"{r['mean_adapted_rand_error']:6.3f} {str(r['identical_to_whole_array']):>5} "
            f"{v['whole_array'] / 1e6:12.2f} {v['blockwise_memory'] / 1e6:10.2f} "
            f"{v['blockwise_zarr'] / 1e6:11.2f} {r['blockwise_zarr_over_whole']:10.2f}"
        )
    result = {
        "benchmark": "labels_quality",
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "params": params.to_dict(),
        "embedding": "ideal plus noise from the ground truth (no trained model yet)",
        "real_nuclei": "not evaluated: needs a trained model (later issue)",
        "rows": rows,
    }
    with open(args.json_out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
