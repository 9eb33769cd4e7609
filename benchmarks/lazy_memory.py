"""Peak memory of ``stitchsafe.predict_lazy`` does not grow with the volume.

A 2-D float32 image is written as zarr at a small and a large size (``--small-y`` and
``--large-y`` rows of ``--x`` columns; default 1024 and 8192 rows of 2048, 8x apart).
In a fresh process for each, the bundled 2-D model's lazy result is reduced block by
block (the sum of each channel, computed with dask's threaded scheduler), so that no
more than a few tiles' blocks exist at once; the process's peak resident set size
(``ru_maxrss``) is the figure. A process that imports the same modules, plans the same
run and opens the input but computes nothing gives the baseline; the blockwise compute's
own memory is the difference, reported as the large / small ratio (flat memory: ~1),
beside the size of the result the large run produced (what holding it would take).

Usage::

    python benchmarks/lazy_memory.py [--small-y 1024] [--large-y 8192] [--x 2048]
        [--tile 256] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import zarr

CHILD = """
import resource, sys, time
import stitchsafe
lazy = stitchsafe.predict_lazy(None, sys.argv[1], tile_shape=int(sys.argv[2]), device="cpu")
tick = time.perf_counter()
if sys.argv[3] == "compute":
    sums = lazy.embeddings.sum(axis=(1, 2)).compute(scheduler="threads")
seconds = time.perf_counter() - tick
nbytes = lazy.embeddings.nbytes
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, seconds, nbytes)
"""


def write_image(path: str, rows: int, cols: int) -> None:
    """A smooth random float32 image, written in row bands (never whole in memory)."""
    arr = zarr.create_array(path, shape=(rows, cols), chunks=(256, 256), dtype="float32")
    rng = np.random.default_rng(0)
    for r in range(0, rows, 256):
        band = rng.random((min(256, rows - r), cols), dtype=np.float32)
        arr[r : r + band.shape[0]] = band


def peak(image: str, tile: int, mode: str) -> tuple[float, float, int]:
    """Peak RSS (MB), compute seconds and result bytes of one child process."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, image, str(tile), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    kb, seconds, nbytes = out.stdout.split()[-3:]
    return int(kb) / 1024, float(seconds), int(nbytes)


def measure(root: str, rows: int, cols: int, tile: int) -> dict[str, Any]:
    image = os.path.join(root, f"img-{rows}.zarr")
    write_image(image, rows, cols)
    base, _, _ = peak(image, tile, "plan")
    total, seconds, nbytes = peak(image, tile, "compute")
    return {
        "shape": [rows, cols],
        "tiles": -(-rows // tile) * -(-cols // tile),
        "baseline_mb": round(base, 1),
        "peak_mb": round(total, 1),
        "compute_mb": round(total - base, 1),
        "result_mb": round(nbytes / 2**20, 1),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small-y", type=int, default=1024)
    parser.add_argument("--large-y", type=int, default=8192)
    parser.add_argument("--x", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        small = measure(root, args.small_y, args.x, args.tile)
        large = measure(root, args.large_y, args.x, args.tile)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "when": time.strftime("%Y-%m-%d"),
        "small": small,
        "large": large,
        "compute_ratio_large_over_small": round(large["compute_mb"] / small["compute_mb"], 2),
        "volume_ratio": round(args.large_y / args.small_y, 2),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
