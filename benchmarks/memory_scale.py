"""Peak resident memory of ``stitchsafe predict`` does not grow with the volume.

Two volumes of the same kind — a small one (``--small-gb``, default 0.5 GB) and a large
one (``--large-gb``, default 16 GB of uint16 input) — go through the real console script
(``stitchsafe predict``, one process each, the default threaded pipeline) with a tiny
stitch-safe U-Net, so that the run is bounded by reading, padding and writing rather than
by the network. The peak resident set size of each process is read from GNU time's
"Maximum resident set size", the baseline being the small run's peak measured in the same
invocation. Embeddings are written as float16 (one channel); no labels (their memory is
measured by ``labels_scale.py``).

The input is written chunk by chunk with a smooth pattern that differs from chunk to chunk
(so chunks are real data on disk, not fill values). Disk needed: about 1.2 x the input
size for the input and the same again for the output; both are removed afterwards.

Usage::

    python benchmarks/memory_scale.py [--large-gb 16] [--workdir DIR] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zarr

from stitchsafe.models import UNetConfig, build_unet, save_checkpoint, unet_metadata

CHUNK = (64, 256, 256)
TILE = "64,256,256"


def write_volume(path: str, gigabytes: float) -> tuple[int, ...]:
    """A uint16 zarr volume of about ``gigabytes`` GB, Z grown to reach the size."""
    yx = 2048
    z = max(CHUNK[0], round(gigabytes * 1e9 / (2 * yx * yx) / CHUNK[0]) * CHUNK[0])
    shape = (z, yx, yx)
    arr = zarr.create_array(path, shape=shape, chunks=CHUNK, dtype="uint16", overwrite=True)
    zz, yy, xx = np.meshgrid(*(np.arange(c, dtype=np.float32) for c in CHUNK), indexing="ij")

    def one(index: tuple[int, int, int]) -> None:
        phase = 0.37 * (index[0] * 31 + index[1] * 7 + index[2])
        block = 1000 + 800 * np.sin(zz / 9.0 + phase) * np.cos(yy / 13.0 - phase) * np.sin(xx / 7.0)
        sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, CHUNK))
        arr[sel] = block.astype(np.uint16)

    grid = [range(math.ceil(s / c)) for s, c in zip(shape, CHUNK)]
    indices = [(a, b, c) for a in grid[0] for b in grid[1] for c in grid[2]]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, indices))
    return shape


def run(model: str, volume: str, output: str) -> dict[str, Any]:
    cmd = [
        "/usr/bin/time", "-v", shutil.which("stitchsafe") or "stitchsafe", "predict",
        "--model", model, "--input", volume, "--output", output, "--tile-shape", TILE,
        "--device", "cpu", "--embeddings-dtype", "float16", "--no-labels", "--no-progress",
        "--json",
    ]  # fmt: skip
    tick = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    if proc.returncode != 0:
        raise SystemExit(f"predict failed:\n{proc.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
    report = json.loads(proc.stdout)
    return {
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "seconds": round(seconds, 1),
        **{"tiles": report["tiles"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-gb", type=float, default=0.5)
    parser.add_argument("--large-gb", type=float, default=16.0)
    parser.add_argument("--workdir", default=None, help="Where the volumes go (default: tmp).")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as root:
        cfg = UNetConfig(dims=3, pooling_factors=((2, 2, 2),), features=2, out_channels=1)
        model = os.path.join(root, "tiny.pt")
        save_checkpoint(build_unet(cfg, seed=0), model, metadata=unet_metadata(cfg))
        for name, gb in (("small", args.small_gb), ("large", args.large_gb)):
            volume, output = os.path.join(root, f"{name}.zarr"), os.path.join(root, "out.zarr")
            tick = time.perf_counter()
            shape = write_volume(volume, gb)
            written = time.perf_counter() - tick
            row = {
                "name": name,
                "shape": list(shape),
                "input_gb": round(math.prod(shape) * 2 / 1e9, 2),
                "write_input_s": round(written, 1),
                **run(model, volume, output),
            }
            rows.append(row)
            print(
                f"{name}: {row['input_gb']} GB input {tuple(shape)}, {row['tiles']} tiles, "
                f"peak RSS {row['peak_rss_mb']} MB, {row['seconds']} s",
                flush=True,
            )
            shutil.rmtree(volume)
            shutil.rmtree(output)
    ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    growth = rows[1]["input_gb"] / rows[0]["input_gb"]
    print(f"peak RSS large / small: {ratio:.2f} for {growth:.0f}x the volume")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": sys.version.split()[0],
        "rows": rows,
        "peak_ratio_large_over_small": round(ratio, 3),
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
