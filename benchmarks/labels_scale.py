"""Blockwise labels at scale: many objects, and memory that does not grow with the volume.

1. **Many objects.** A 3-D random foreground (20 % of voxels, below the percolation
   threshold) holds hundreds of thousands of small clusters, most of them cut by block
   faces. Constant embeddings make the links plain foreground adjacency, so the result
   must be ``scipy.ndimage.label``'s up to a bijection of ids; checked.
2. **Bounded memory.** Volumes of growing size with the same block shape and few objects
   (cubes of 24 voxels, cut by the 32 x 128 x 128 blocks): the traced peak stays about
   the same while the volume grows, because the labelling holds one block per worker
   plus tables with one entry per fragment, never the volume.

Embeddings and labels live in zarr arrays on disk, as in ``stitchsafe segment``. Peak
memory is measured with ``tracemalloc`` (numpy reports its buffers to it) during the
labelling only; throughput is measured in a separate, untraced run.

Usage::

    python benchmarks/labels_scale.py [--quick] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import tracemalloc
from typing import Any

import numpy as np
import zarr
from scipy import ndimage

from stitchsafe.labels import LabelParams, label_blocks

BLOCK = (32, 128, 128)
PARAMS = LabelParams(1.0, channel_roles=("embedding", "foreground"))


def _store(workdir: str, name: str, emb: np.ndarray, block: tuple[int, ...]) -> tuple[Any, Any]:
    group = zarr.open_group(os.path.join(workdir, name), mode="w")
    stored = group.create_array("emb", shape=emb.shape, chunks=(2, *block), dtype="float32")
    stored[...] = emb
    labels = group.create_array("labels", shape=emb.shape[1:], chunks=block, dtype="uint32")
    return stored, labels


def _measure(stored: Any, labels: Any) -> dict[str, Any]:
    start = time.perf_counter()
    stats = label_blocks(stored, labels, params=PARAMS, progress=False)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    label_blocks(stored, labels, params=PARAMS, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    voxels = int(np.prod(labels.shape))
    return {
        "shape": list(labels.shape),
        "voxels": voxels,
        "blocks": stats.blocks,
        "objects": stats.objects,
        "fragments": stats.fragments,
        "seconds": seconds,
        "voxels_per_s": voxels / seconds,
        "traced_peak_mb": peak / 1e6,
        "embeddings_mb": stored.nbytes / 1e6,
        "labels_mb": labels.nbytes / 1e6,
    }


def many_objects(shape: tuple[int, int, int], workdir: str) -> dict[str, Any]:
    fg = np.random.default_rng(0).random(shape) < 0.2
    reference, n = ndimage.label(fg)
    emb = np.zeros((2, *shape), np.float32)
    emb[1] = np.where(fg, 4.0, -4.0)
    stored, labels = _store(workdir, "many.zarr", emb, BLOCK)
    del emb, fg
    row = _measure(stored, labels)
    out = labels[...]
    pairs = np.unique(out.astype(np.int64) * (n + 1) + reference)
    row["correct"] = bool(row["objects"] == n and len(pairs) == n + 1)
    return row


def cubes(shape: tuple[int, int, int], workdir: str) -> dict[str, Any]:
    grid = np.meshgrid(*(np.arange(s) // 24 for s in shape), indexing="ij")
    index = (grid[0] * 1000 + grid[1]) * 1000 + grid[2]
    emb = np.stack([index.astype(np.float32) * 10.0, np.full(shape, 4.0, np.float32)])
    del grid, index
    stored, labels = _store(workdir, f"cubes-{shape[0]}.zarr", emb, BLOCK)
    del emb
    return _measure(stored, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller volumes")
    parser.add_argument(
        "--json-out", default="benchmarks/results/labels_scale.json", help="JSON path"
    )
    args = parser.parse_args()
    big = (64, 256, 256) if args.quick else (128, 256, 256)
    growing = [(64, 128, 128), (64, 256, 256)] + ([] if args.quick else [(128, 256, 256)])
    with tempfile.TemporaryDirectory() as workdir:
        warm = np.zeros((4, 4, 4), np.uint32)  # imports and thread pool, before measuring
        label_blocks(
            warm[None].repeat(2, 0), warm, params=PARAMS, block_shape=(2,) * 3, progress=False
        )
        many = many_objects(big, workdir)
        bounded = [cubes(s, workdir) for s in growing]

    def show(title: str, r: dict[str, Any]) -> None:
        print(
            f"{title:14} {'x'.join(map(str, r['shape'])):>12} {r['objects']:>8} "
            f"{r['fragments']:>9} {r['blocks']:>6} {r['voxels_per_s'] / 1e6:8.2f} "
            f"{r['traced_peak_mb']:9.1f} {r['embeddings_mb'] + r['labels_mb']:9.1f}"
        )

    print(
        f"{'case':14} {'shape':>12} {'objects':>8} {'fragments':>9} {'blocks':>6} "
        f"{'Mvox/s':>8} {'peak MB':>9} {'data MB':>9}"
    )
    show("many objects", many)
    for r in bounded:
        show("few objects", r)
    print(f"\nmany objects: labels equal scipy.ndimage.label up to a bijection: {many['correct']}")
    result = {
        "benchmark": "labels_scale",
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "block": list(BLOCK),
        "many_objects": many,
        "bounded_memory": bounded,
    }
    with open(args.json_out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
