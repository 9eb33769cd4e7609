"""How many files a ~1000-tile run writes, with and without sharding, and what a viewer reads.

Outputs are stored as one zarr v3 shard per tile write box, holding bounded inner chunks
(:class:`stitchsafe.io.ChunkPolicy`). In one run this compares three layouts of the same
output:

- **tile chunks** (the baseline, stitchsafe's layout before sharding): one chunk per tile,
  every channel; as many files as tiles, but a chunk is as large as a tile;
- **bounded chunks, unsharded**: the same bounded inner chunks stored one file each;
- **sharded** (the default): the bounded inner chunks, one shard file per tile.

Two parts:

1. **A GPU-sized plan, by arithmetic**: 1000 tiles of 256^3 voxels and 16 float32
   channels (a 2560^3 volume, 1 TiB of embeddings): files and bytes per stored object.
2. **Real writes, small tiles**: a 1000-tile plan (10 x 10 x 10 tiles of 16 x 32 x 32
   voxels, 2 float32 channels) written tile by tile through :func:`stitchsafe.io.write_block`
   into each layout, with the chunk policy scaled down to the small tiles (inner chunks of
   8^3 voxels, 32 per channel per tile; a 256^3 tile holds 64 of 64^3 per channel).
   Reported: files written, bytes on disk, write seconds, and the bytes read and seconds
   taken to read one z-plane of one channel (what a viewer fetches), each also as a
   ratio to the baseline. Every layout reads back equal to the data. Inner chunks this
   small (2 KiB) exaggerate zarr's cost per chunk; part 3 measures speed at real sizes.
3. **Speed at real chunk sizes**: 4 tiles of 128^3 voxels and 8 float32 channels (64 MiB
   each), written with the default policy (inner chunks of 64^3 voxels, 1 MiB) and as
   tile chunks, alternating, 5 times; median seconds to write them and to read one
   z-plane of one channel, and the ratios sharded / tile chunks.

Usage::

    python benchmarks/files.py [--json-out PATH]
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

from stitchsafe.geometry import make_plan, unet_geometry
from stitchsafe.io import ChunkPolicy, ImageLayout, create_output, write_block

# A policy that never bounds: one chunk per tile, every channel (the layout before sharding).
TILE_CHUNKS = ChunkPolicy(target_voxels=1 << 62, max_bytes=1 << 62)


def gpu_plan() -> dict[str, Any]:
    """Part 1: the layouts of a 1000-tile GPU-sized plan, by arithmetic only."""
    plan = make_plan((2560,) * 3, unet_geometry([(2, 2, 2)] * 4), tile_shape=(256,) * 3)
    rows = {}
    for name, policy in (
        ("tile_chunks", TILE_CHUNKS),
        ("bounded_unsharded", ChunkPolicy(sharded=False)),
        ("sharded", ChunkPolicy()),
    ):
        s = policy.storage(plan.chunks, channels=16, dtype="float32")
        chunks_per_tile = 16 * int(np.prod(plan.chunks)) // int(np.prod(s.chunks))
        files = len(plan) * (1 if s.shards is not None else chunks_per_tile)
        rows[name] = {
            "chunks": list(s.chunks),
            "shards": None if s.shards is None else list(s.shards),
            "chunk_bytes": s.chunk_bytes,
            "files": files,
        }
    return {"tiles": len(plan), "tile_shape": list(plan.chunks), "channels": 16, "layouts": rows}


def _files(path: str) -> tuple[int, int]:
    """(number of files, bytes on disk) under ``path``."""
    count = size = 0
    for root, _, names in os.walk(path):
        for name in names:
            count += 1
            size += os.path.getsize(os.path.join(root, name))
    return count, size


def write_layout(root: str, name: str, policy: ChunkPolicy, data: np.ndarray) -> dict[str, Any]:
    """Part 2 for one layout: write every tile, count files, read one plane back."""
    tile = (16, 32, 32)
    plan = make_plan(data.shape[1:], unet_geometry([(2, 2, 2)]), tile_shape=tile)
    layout = ImageLayout(
        shape=plan.volume_shape, chunks=plan.chunks, axes="zyx", channels=2, chunking=policy
    )
    spec = create_output(os.path.join(root, f"{name}.zarr"), layout)
    tick = time.perf_counter()
    for t in plan:
        write_block(spec, t.write, data[(slice(None), *t.write.to_slices())])
    write = time.perf_counter() - tick
    files, size = _files(os.path.join(spec.group, *spec.array.split("/")))
    arr = zarr.open_array(os.path.join(spec.group, spec.array), mode="r")
    plane = data.shape[1] // 2
    tick = time.perf_counter()
    got = arr[0, plane]
    read = time.perf_counter() - tick
    np.testing.assert_array_equal(got, data[0, plane])
    np.testing.assert_array_equal(arr[...], data)
    chunk_bytes = int(np.prod(arr.chunks)) * 4
    # A plane of one channel decodes every chunk it crosses, whole.
    crossed = int(np.prod([-(-s // c) for s, c in zip(arr.shape[2:], arr.chunks[2:])]))
    return {
        "tiles": len(plan),
        "chunks": list(arr.chunks),
        "shards": None if arr.shards is None else list(arr.shards),
        "chunk_bytes": chunk_bytes,
        "files": files,
        "stored_bytes": size,
        "write_s": round(write, 3),
        "plane_read_bytes": crossed * chunk_bytes,
        "plane_read_s": round(read, 4),
    }


def real_writes(root: str) -> dict[str, Any]:
    """Part 2: the three layouts of a 1000-tile plan, written for real."""
    data = np.random.default_rng(0).standard_normal((2, 160, 320, 320)).astype(np.float32)
    scaled = {"target_voxels": 8**3}  # 32 inner chunks per channel per 16 x 32 x 32 tile
    rows = {
        "tile_chunks": write_layout(root, "tile_chunks", TILE_CHUNKS, data),
        "bounded_unsharded": write_layout(
            root, "bounded_unsharded", ChunkPolicy(**scaled, sharded=False), data
        ),
        "sharded": write_layout(root, "sharded", ChunkPolicy(**scaled), data),
    }
    base = rows["tile_chunks"]
    for row in rows.values():
        for key in ("files", "write_s", "plane_read_bytes", "plane_read_s"):
            row[f"{key}_over_tile_chunks"] = round(row[key] / base[key], 3)
    return {"volume": list(data.shape), "layouts": rows}


def _timed_layout(root: str, policy: ChunkPolicy, data: np.ndarray) -> tuple[float, float]:
    """Part 3 for one layout: seconds to write 4 tiles, and to read one plane back."""
    tile = (128, 128, 128)
    plan = make_plan(data.shape[1:], unet_geometry([(2, 2, 2)]), tile_shape=tile)
    layout = ImageLayout(
        shape=plan.volume_shape, chunks=tile, axes="zyx", channels=data.shape[0], chunking=policy
    )
    spec = create_output(os.path.join(root, "timed.zarr"), layout, overwrite=True)
    tick = time.perf_counter()
    for t in plan:
        write_block(spec, t.write, data[(slice(None), *t.write.to_slices())])
    write = time.perf_counter() - tick
    arr = zarr.open_array(os.path.join(spec.group, spec.array), mode="r")
    tick = time.perf_counter()
    got = arr[0, 70]
    read = time.perf_counter() - tick
    np.testing.assert_array_equal(got, data[0, 70])
    return write, read


def real_sizes(root: str, repeats: int = 5) -> dict[str, Any]:
    """Part 3: write and plane-read speed at the default policy's chunk sizes."""
    data = np.random.default_rng(0).standard_normal((8, 128, 256, 256)).astype(np.float32)
    times: dict[str, list[tuple[float, float]]] = {"tile_chunks": [], "sharded": []}
    for _ in range(repeats):
        for name, policy in (("tile_chunks", TILE_CHUNKS), ("sharded", ChunkPolicy())):
            times[name].append(_timed_layout(root, policy, data))
    rows = {
        name: {
            "write_s": round(float(np.median([w for w, _ in t])), 3),
            "plane_read_s": round(float(np.median([r for _, r in t])), 4),
        }
        for name, t in times.items()
    }
    for key in ("write_s", "plane_read_s"):
        rows["sharded"][f"{key}_over_tile_chunks"] = round(
            rows["sharded"][key] / rows["tile_chunks"][key], 3
        )
    return {"volume": list(data.shape), "tiles": 4, "repeats": repeats, "layouts": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    gpu = gpu_plan()
    print(f"1. GPU-sized plan: {gpu['tiles']} tiles of {gpu['tile_shape']} x 16 float32")
    for name, row in gpu["layouts"].items():
        print(
            f"   {name:<18} chunks {row['chunks']}, shards {row['shards']}: "
            f"{row['files']:>9,} files, {row['chunk_bytes'] / 2**20:,.0f} MiB per chunk"
        )
    with tempfile.TemporaryDirectory() as root:
        real = real_writes(root)
        sizes = real_sizes(root)
    print(f"2. Real writes: {real['layouts']['sharded']['tiles']} tiles, volume {real['volume']}")
    for name, row in real["layouts"].items():
        print(
            f"   {name:<18} {row['files']:>6,} files ({row['files_over_tile_chunks']:.2f} x), "
            f"chunk {row['chunk_bytes'] / 1024:.0f} KiB, write {row['write_s']:.2f} s "
            f"({row['write_s_over_tile_chunks']:.2f} x), one plane of one channel reads "
            f"{row['plane_read_bytes'] / 1024:.0f} KiB "
            f"({row['plane_read_bytes_over_tile_chunks']:.3f} x) in {row['plane_read_s']:.3f} s "
            f"({row['plane_read_s_over_tile_chunks']:.2f} x)"
        )
    timed = sizes["layouts"]
    print(
        f"3. Real chunk sizes: 4 tiles of 128^3 x 8 float32, median of {sizes['repeats']}: "
        f"write {timed['tile_chunks']['write_s']:.2f} s as tile chunks, "
        f"{timed['sharded']['write_s']:.2f} s sharded "
        f"({timed['sharded']['write_s_over_tile_chunks']:.2f} x); one plane of one channel "
        f"{timed['tile_chunks']['plane_read_s']:.3f} s vs {timed['sharded']['plane_read_s']:.3f} s "
        f"({timed['sharded']['plane_read_s_over_tile_chunks']:.3f} x)"
    )
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "gpu_plan": gpu,
        "real_writes": real,
        "real_sizes": sizes,
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
