"""Transparent huge pages for torch's CPU tensors: `stitchsafe predict` with and without.

``stitchsafe`` sets ``THP_MEM_ALLOC_ENABLE=1`` when it is imported (before torch), so that
torch's CPU allocator backs large tensors with transparent huge pages. This script runs
the installed console script ``stitchsafe predict`` (bundled 3-D model, embeddings only)
on a synthetic uint16 zarr volume, alternately with the variable set to ``0`` (the
baseline: torch's default) and ``1``, each in a fresh process, and reports each run's
wall time, user and system CPU seconds and minor page faults (``resource.getrusage`` of
the children), and the ratio of the medians. Baseline and candidate are measured in the
same run, interleaved, because the machines are shared and their speed drifts.

Usage::

    python benchmarks/allocation.py [--shape 64,512,512] [--repeats 3] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from read_amplification import make_input  # the same synthetic input as there

CHUNKS = (64, 256, 256)


def one_run(src: Path, out: Path, thp: str) -> dict:
    """Wall seconds, CPU seconds and page faults of one `stitchsafe predict` process."""
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": thp}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        ["stitchsafe", "predict", "--input", str(src), "--output", str(out), "--overwrite",
         "--no-labels", "--quiet", "--device", "cpu"],
        check=True, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "thp": thp,
        "wall_s": round(wall, 3),
        "user_s": round(after.ru_utime - before.ru_utime, 3),
        "system_s": round(after.ru_stime - before.ru_stime, 3),
        "minor_faults": after.ru_minflt - before.ru_minflt,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,512,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory(prefix="stitchsafe-alloc-") as tmp:
        src, out = Path(tmp) / "in.zarr", Path(tmp) / "out.zarr"
        make_input(src, shape, tuple(min(c, n) for c, n in zip(CHUNKS, shape)))
        runs = []
        for _ in range(args.repeats):
            for thp in ("0", "1"):
                runs.append(one_run(src, out, thp))
                print(json.dumps(runs[-1]), flush=True)
    median = {
        thp: {k: statistics.median(r[k] for r in runs if r["thp"] == thp)
              for k in ("wall_s", "user_s", "system_s", "minor_faults")}
        for thp in ("0", "1")
    }  # fmt: skip
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "volume": list(shape),
        "chunks": list(CHUNKS),
        "runs": runs,
        "median": median,
        "speedup_wall": round(median["0"]["wall_s"] / median["1"]["wall_s"], 3),
    }
    print(json.dumps({k: summary[k] for k in ("median", "speedup_wall")}, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
