"""Peak resident memory of the pyramid pass does not grow with the volume.

The embeddings image that ``memory_scale.py``'s large run writes — ``Z x 2048 x 2048``,
one float16 channel, tiles of 64 x 256 x 256 (one shard of 64^3 inner chunks per tile) —
is written directly (no network: level 0 is all the pass reads), at a small size and at
a large one (``--small-z``, ``--large-z``; default 240 and 1920, 8x apart, the large one
16 GB like ``memory_scale.py``'s large input). :func:`stitchsafe.io.write_pyramid` then
runs in a fresh process for each, under GNU time; its "Maximum resident set size" is the
peak. A process that imports the same modules and opens level 0, but writes nothing, gives
the baseline; the pass's own memory is the difference, reported per block (one stored
object of a level: one tile's shard) and as the large / small ratio (flat memory: ~1).

Disk needed: about the large image's size (compressed float16), removed afterwards.

Usage::

    python benchmarks/pyramid_memory.py [--small-z 240] [--large-z 1920] [--workdir DIR]
        [--json-out PATH]
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

from stitchsafe.geometry import Box
from stitchsafe.io import ImageLayout, OutputSpec, create_output, write_block

TILE = (64, 256, 256)
YX = 2048

PASS = (
    "import sys; from stitchsafe.io import OutputSpec, write_pyramid; "
    "p = write_pyramid(OutputSpec(sys.argv[1], 'embeddings', 'embeddings/0')); "
    "print(len(p.levels))"
)
BASELINE = (
    "import sys, zarr; from stitchsafe.io import OutputSpec, write_pyramid; "
    "a = zarr.open_array(sys.argv[1] + '/embeddings/0', mode='r'); print(a.shape)"
)


def write_level0(group: str, z: int) -> OutputSpec:
    """A float16 one-channel embeddings image of ``z x 2048 x 2048``, tile by tile, each
    tile a smooth pattern of its own (real data on disk, not fill values)."""
    layout = ImageLayout(shape=(z, YX, YX), chunks=TILE, axes="zyx", channels=1, dtype="float16")
    spec = create_output(group, layout, overwrite=True)
    zz, yy, xx = np.meshgrid(*(np.arange(t, dtype=np.float32) for t in TILE), indexing="ij")
    base = np.sin(zz / 9.0) * np.cos(yy / 13.0) * np.sin(xx / 7.0)

    def one(index: tuple[int, int, int]) -> None:
        begin = tuple(i * t for i, t in zip(index, TILE))
        box = Box(begin, tuple(min(b + t, n) for b, t, n in zip(begin, TILE, (z, YX, YX))))
        phase = 0.37 * (index[0] * 31 + index[1] * 7 + index[2])
        block = (base * math.cos(phase) + phase)[box.shift([-b for b in begin]).to_slices()]
        write_block(spec, box, block[None].astype(np.float16))

    grid = [range(math.ceil(n / t)) for n, t in zip((z, YX, YX), TILE)]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, [(a, b, c) for a in grid[0] for b in grid[1] for c in grid[2]]))
    return spec


def peak_rss(code: str, group: str) -> tuple[float, float, str]:
    """Peak RSS (MB) and seconds of ``python -c code group``, and its stdout."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", code, group]
    tick = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    if proc.returncode != 0:
        raise SystemExit(f"failed:\n{proc.stderr[-3000:]}")
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
    return kb / 1024, seconds, proc.stdout.strip()


def measure(root: str, name: str, z: int) -> dict[str, Any]:
    group = os.path.join(root, f"{name}.zarr")
    tick = time.perf_counter()
    write_level0(group, z)
    written = time.perf_counter() - tick
    baseline, _, _ = peak_rss(BASELINE, group)
    peak, seconds, levels = peak_rss(PASS, group)
    block_mb = math.prod(TILE) * 2 / 2**20  # one shard of a level: one tile, float16
    row = {
        "name": name,
        "shape": [z, YX, YX],
        "level0_gb": round(z * YX * YX * 2 / 1e9, 2),
        "write_level0_s": round(written, 1),
        "levels": int(levels),
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(peak, 1),
        "pass_mb": round(peak - baseline, 1),
        "block_mb": round(block_mb, 1),
        "pass_over_block": round((peak - baseline) / block_mb, 2),
        "seconds": round(seconds, 1),
    }
    shutil.rmtree(group)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-z", type=int, default=240)
    parser.add_argument("--large-z", type=int, default=1920)
    parser.add_argument("--workdir", default=None, help="Where the images go (default: tmp).")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as root:
        for name, z in (("small", args.small_z), ("large", args.large_z)):
            row = measure(root, name, z)
            rows.append(row)
            print(
                f"{name}: level 0 {row['level0_gb']} GB {tuple(row['shape'])}, "
                f"{row['levels']} levels in {row['seconds']} s; peak RSS {row['peak_rss_mb']} "
                f"MB (baseline {row['baseline_rss_mb']} MB): the pass {row['pass_mb']} MB = "
                f"{row['pass_over_block']} blocks of {row['block_mb']} MB",
                flush=True,
            )
    ratio = rows[1]["pass_mb"] / rows[0]["pass_mb"]
    growth = rows[1]["level0_gb"] / rows[0]["level0_gb"]
    print(f"pyramid pass memory large / small: {ratio:.2f} for {growth:.0f}x the volume")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": sys.version.split()[0],
        "rows": rows,
        "pass_ratio_large_over_small": round(ratio, 3),
        "peak_ratio_large_over_small": round(rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 3),
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
