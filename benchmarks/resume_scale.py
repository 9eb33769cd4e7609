"""How long ``--resume`` takes to find the unfinished tiles of a very large run.

A run's done-mask is a ``uint8`` zarr array with one entry per tile (chunks of 64**3
tiles). For grids of 1 M and 8 M tiles with a random half marked done, this measures, in
one run:

- **read**: reading the whole mask array, the baseline (it cannot be done with less I/O);
- **remaining**: ``DoneMask.open`` + ``remaining(plan)`` — what ``--resume`` does before
  the first tile runs — and fetching the first 1000 Tiles of the result;
- **marking**: ``mark`` + ``flush`` of 10,000 finished tiles (what a run does as it goes);

and reports them in seconds and as ratios to the baseline, with the traced peak memory of
the ``remaining`` step (8 bytes per unfinished tile: the Tiles themselves are made on
demand, never all at once).

Usage::

    python benchmarks/resume_scale.py [--json-out PATH]
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

from stitchsafe.geometry import make_plan, unet_geometry
from stitchsafe.io import DONE, DoneMask


def measure(grid: tuple[int, ...], root: str) -> dict[str, Any]:
    geometry = unet_geometry([(2, 2, 2)] * 2)
    tile = tuple(2 * p for p in geometry.period)
    plan = make_plan(tuple(g * t for g, t in zip(grid, tile)), geometry, tile_shape=tile)
    assert plan.grid_shape == grid
    group, image = os.path.join(root, f"out-{len(plan)}.zarr"), "embeddings"
    mask = DoneMask.create(group, image, grid)
    rng = np.random.default_rng(0)
    flags = (rng.random(grid) < 0.5).astype(np.uint8)
    mask.array[...] = flags
    unfinished = int((flags == 0).sum())
    path = os.path.join(group, image, DONE)

    tick = time.perf_counter()
    np.asarray(zarr.open_array(store=path, mode="r")[...])
    read = time.perf_counter() - tick

    tracemalloc.start()
    tick = time.perf_counter()
    todo = DoneMask.open(group, image, grid).remaining(plan)
    first = [t.index for t in todo[:1000]]
    remaining = time.perf_counter() - tick
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(todo) == unfinished and len(first) == 1000
    assert all(flags[i] == 0 for i in first)

    opened = DoneMask.open(group, image, grid)
    tiles = list(todo[:10_000])
    tick = time.perf_counter()
    opened.mark(tiles)
    opened.flush()
    marking = time.perf_counter() - tick
    assert np.asarray(opened.array[...]).ravel()[todo.indices[:10_000]].all()
    return {
        "tiles": len(plan),
        "unfinished": unfinished,
        "read_mask_s": round(read, 4),
        "remaining_s": round(remaining, 4),
        "remaining_over_read": round(remaining / read, 2),
        "remaining_peak_mb": round(peak / 2**20, 1),
        "mark_10000_s": round(marking, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for grid in ((100, 100, 100), (200, 200, 200)):
            row = measure(grid, root)
            rows.append(row)
            print(
                f"{row['tiles']:>9,} tiles ({row['unfinished']:,} unfinished): read mask "
                f"{row['read_mask_s']:.3f} s, find remaining {row['remaining_s']:.3f} s "
                f"({row['remaining_over_read']:.2f} x read, peak {row['remaining_peak_mb']} MB),"
                f" mark 10,000 done {row['mark_10000_s']:.3f} s"
            )
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "rows": rows}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
