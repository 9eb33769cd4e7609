"""Read amplification of the default plan, and ``predict`` against its compute and I/O limits.

Each tile reads its box with the halo; neighbouring boxes overlap and share the input's
storage chunks. Read box by box, a chunk is decoded once for every tile that touches it;
through the input chunk cache (``stitchsafe/io/_chunk_cache.py``) about once per run.
Measured in one run on one machine, for zarr v3 inputs (uint16, zstd) chunked
``64 x 256 x 256``, ``1 x 512 x 512`` and ``128^3``:

(a) read amplification: voxels decoded / voxels the tiles need (the volume), counted by
    wrapping zarr's real decoding codecs (``BytesCodec``, and ``V2Codec`` for zarr v2), for
    the read stage of the default plan (the bundled 3-D model's tiles in the order
    ``predict`` runs them, read with padding by two threads, as ``predict`` reads them):
    the cache off (``STITCHSAFE_CHUNK_CACHE_MB=0``, before), the default cache (after), and
    a cache smaller than a slab of the volume (``--small-cache-mb``: a stand-in for a
    volume whose planes of tiles outgrow the default cache), in the run's order (blocks of
    columns there) and in the grid's C order; with seconds, and the time of one
    whole-array read for scale;
(b) ``stitchsafe.predict`` end to end on the CPU (embeddings, no labels; default plan and
    model) on smaller volumes of the same chunkings, against min(compute limit, I/O
    limit): the compute limit is the model's tight-loop forward at the plan's read shape on
    a batch already in memory (the better of one stream and one stream per core), the I/O
    limit reading every tile's padded input and writing outputs of the right shape, no
    network (both from ``benchmarks/throughput.py``); with the input
    chunks decoded per chunk of the array in the whole run (normalisation and the input's
    identity included); and again without the pyramid (``pyramid=False``), which the I/O
    limit does not count, to show its share. Each predict run is measured ``--repeats``
    times, alternating which of the two runs first, against the compute limits measured
    just before and just after it (the machine's speed drifts on shared hosts); the
    figures are the medians of those ratios, with their spread. One untimed predict run
    comes first (the process's first run pays imports and first memory, as the compute
    limit's first forward is not timed either); every timed run writes a new output, the
    disk flushed before it.

Usage::

    python benchmarks/read_amplification.py            # about 8 minutes on 2 CPU cores
    python benchmarks/read_amplification.py --no-amplification \
        --predict-shape 128,1024,1024 --json-out benchmarks/results/end-to-end-large-cpu-2core.json

Prints a table and writes JSON (``--json-out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import stitchsafe  # isort: skip - first: it sets torch's CPU allocator (THP) as predict runs
import torch
import zarr
from zarr.codecs import BytesCodec
from zarr.codecs._v2 import V2Codec

from stitchsafe.engine import compute_normalization
from stitchsafe.geometry import batch_reads, blocked_order
from stitchsafe.io import TileSubset, input_tile_block, open_volume, read_padded
from stitchsafe.models import bundled_model, load_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import compute_limit, io_limit  # noqa: E402 - the same limits as there

CACHE_ENV = "STITCHSAFE_CHUNK_CACHE_MB"
CHUNKINGS = ((64, 256, 256), (1, 512, 512), (128, 128, 128))


class DecodeCounter:
    """Counts chunks and voxels of ``dtype`` decoded by zarr's codecs, by wrapping their
    decode step (the inputs are uint16; outputs, the done mask and pyramids are not)."""

    def __init__(self, dtype: str = "uint16") -> None:
        self.dtype = np.dtype(dtype)
        self.lock = threading.Lock()
        self.chunks = self.voxels = 0
        for codec in (BytesCodec, V2Codec):
            self._wrap(codec)

    def _wrap(self, codec: Any) -> None:
        original = codec._decode_single

        async def counted(obj: Any, chunk_bytes: Any, chunk_spec: Any) -> Any:
            if np.dtype(chunk_spec.dtype.to_native_dtype()) == self.dtype:
                with self.lock:
                    self.chunks += 1
                    self.voxels += math.prod(chunk_spec.shape)
            return await original(obj, chunk_bytes, chunk_spec)

        codec._decode_single = counted

    def reset(self) -> None:
        with self.lock:
            self.chunks = self.voxels = 0


def make_input(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
    """A uint16 zarr v3 array of smooth structure plus noise (compressible as images are)."""
    rng = np.random.default_rng(0)
    arr = zarr.create_array(path, shape=shape, chunks=chunks, dtype="uint16", overwrite=True)
    z = np.arange(shape[0], dtype=np.float32)[:, None, None]
    for y0 in range(0, shape[1], 256):
        y = np.arange(y0, min(y0 + 256, shape[1]), dtype=np.float32)[None, :, None]
        x = np.arange(shape[2], dtype=np.float32)[None, None, :]
        smooth = 400 + 300 * np.sin(z / 9) * np.cos(y / 13) * np.sin(x / 11)
        noise = rng.normal(0, 30, size=(shape[0], y.shape[1], shape[2]))
        arr[:, y0 : y0 + y.shape[1]] = np.clip(smooth + noise, 0, 65535).astype(np.uint16)


def tile_reads(
    src: Path, plan: Any, counter: DecodeCounter, cache_mb: str | None, order: str = "run"
) -> dict:
    """Amplification and seconds of reading every tile's padded box, as predict reads them:
    in the order predict runs them (``order="run"``: ``stitchsafe.io.input_tile_block``,
    blocks of columns when a plane of tiles outgrows the cache) or in the grid's C order."""
    if cache_mb is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = cache_mb
    volume = open_volume(src, spatial_dims=3)
    block = input_tile_block(plan, volume) if order == "run" else None
    tiles = TileSubset(plan, blocked_order(plan.grid_shape, block))
    counter.reset()
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for _ in pool.map(
            lambda t: read_padded(volume, batch_reads([t])[0], mode="reflect"), tiles
        ):
            pass
    seconds = time.perf_counter() - start
    volume.close()
    os.environ.pop(CACHE_ENV, None)
    needed = math.prod(plan.volume_shape)
    return {"amplification": counter.voxels / needed, "chunks": counter.chunks, "s": seconds}


def amplification(work: Path, shape: tuple[int, ...], small_mb: str, counter: Any) -> list:
    rows = []
    for chunks in CHUNKINGS:
        src = work / f"amp-{'x'.join(map(str, chunks))}.zarr"
        make_input(src, shape, chunks)
        plan = stitchsafe.plan(None, src).plan
        start = time.perf_counter()
        zarr.open_array(src, mode="r")[...]
        whole = time.perf_counter() - start
        row = {
            "chunks": list(chunks),
            "volume_shape": list(shape),
            "tile_shape": list(plan.tile_shape),
            "read_shape": list(plan.read_shape),
            "tiles": len(plan),
            "whole_array_read_s": whole,
            "before": tile_reads(src, plan, counter, "0"),
            "after": tile_reads(src, plan, counter, None),
            f"after_cache_{small_mb}mb": tile_reads(src, plan, counter, small_mb),
            f"after_cache_{small_mb}mb_c_order": tile_reads(src, plan, counter, small_mb, "c"),
        }
        rows.append(row)
        shutil.rmtree(src, ignore_errors=True)
        print(json.dumps(row), flush=True)
    return rows


def end_to_end(
    work: Path, shape: tuple[int, ...], seconds: float, counter: Any, repeats: int
) -> list:
    model = load_model(bundled_model(3))
    channels = int(model.metadata["channels_out"])
    cores = os.cpu_count() or 1
    rows = []
    warmed = False
    for chunks in CHUNKINGS:
        src = work / f"e2e-{'x'.join(map(str, chunks))}.zarr"
        make_input(src, shape, tuple(min(c, s) for c, s in zip(chunks, shape)))
        plan = stitchsafe.plan(None, src).plan
        if not warmed:  # untimed: the process's first run pays its imports and first pages
            _predict_speed(src, work / "out.zarr", shape, pyramid=True)
            warmed = True
        volume = open_volume(src, spatial_dims=3)
        norm = compute_normalization(volume, method="percentile")
        runs, limits = [], [_compute_limits(model, plan, seconds, cores)]
        decodes: list[int] = []
        for i in range(repeats):
            io = io_limit(volume, plan, os.fspath(work / "io.zarr"), channels, max(2, cores), norm)
            shutil.rmtree(work / "io.zarr")
            # alternate which runs first: the first run of a process pays its imports
            order = (True, False) if i % 2 == 0 else (False, True)
            speeds = {}
            for pyramid in order:
                counter.reset()
                speeds[pyramid] = _predict_speed(src, work / "out.zarr", shape, pyramid=pyramid)
                decodes.append(counter.chunks)
            # The limits measured before and after these runs: shared machines drift.
            limits.append(_compute_limits(model, plan, seconds, cores))
            one, many = (sum(v) / 2 for v in zip(*limits[-2:]))
            runs.append(
                {
                    "one": one,
                    "many": many,
                    "io": io,
                    "limit": min(max(one, many), io),
                    "with": speeds[True],
                    "without": speeds[False],
                }
            )
        volume.close()
        rows.append(_row(plan, chunks, shape, runs, limits, max(decodes)))
        shutil.rmtree(src, ignore_errors=True)
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _row(
    plan: Any,
    chunks: tuple[int, ...],
    shape: tuple[int, ...],
    runs: list,
    limits: list,
    decodes: float,
) -> dict[str, Any]:
    """One chunking's figures: each repeat's ratios to its own limits, and their medians."""
    with_ = [r["with"] / r["limit"] for r in runs]
    without = [r["without"] / r["limit"] for r in runs]
    full = len(plan) * math.prod(plan.read_shape)
    return {
        "chunks": list(chunks),
        "volume_shape": list(shape),
        "tiles": len(plan),
        "tile_shape": list(plan.tile_shape),
        "repeats": runs,
        "compute_limits_measured": limits,
        "compute_limit_one_stream": statistics.median(r["one"] for r in runs),
        "compute_limit_streams": statistics.median(r["many"] for r in runs),
        "io_limit": statistics.median(r["io"] for r in runs),
        "end_to_end": statistics.median(r["with"] for r in runs),
        "end_to_end_over_limit": statistics.median(with_),
        "end_to_end_over_limit_each": with_,
        "end_to_end_no_pyramid": statistics.median(r["without"] for r in runs),
        "end_to_end_no_pyramid_over_limit": statistics.median(without),
        "end_to_end_no_pyramid_over_limit_each": without,
        # The limits count every tile's whole write box at the full read box; tiles at
        # the volume's far edges keep less, and read less (Tile.least_read).
        "plan_kept_share": math.prod(shape) / (len(plan) * math.prod(plan.tile_shape)),
        "plan_read_share": sum(math.prod((t.least_read or t.read).shape) for t in plan) / full,
        # decodes per chunk of the array, the most of any predict run (its chunks may
        # reach past a small volume)
        "end_to_end_decodes_per_chunk": decodes
        / math.prod(-(-s // min(c, s)) for s, c in zip(shape, chunks)),
    }


def _predict_speed(src: Path, out: Path, shape: tuple[int, ...], *, pyramid: bool) -> float:
    """Voxels/s of ``stitchsafe.predict`` (embeddings only; the pyramid on or off), into a
    new output on a settled disk: the last run's output removed and the writes of what ran
    before flushed, outside the timing (they are not this run's work)."""
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    start = time.perf_counter()
    stitchsafe.predict(
        None, src, output=out, overwrite=True, progress=False, labels=False, pyramid=pyramid
    )
    return math.prod(shape) / (time.perf_counter() - start)


def _compute_limits(model: Any, plan: Any, seconds: float, cores: int) -> tuple[float, float]:
    """The compute limit with one stream, and with one stream per core (the disk flushed
    first: the writes of the runs before are not the forward's work)."""
    os.sync()
    cpu = torch.device("cpu")
    one = compute_limit(model, plan, cpu, 1, seconds, "fp32")
    return one, compute_limit(model, plan, cpu, 1, seconds, "fp32", streams=cores)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="128,1024,1024", help="volume for (a), Z,Y,X")
    ap.add_argument("--predict-shape", default="64,512,512", help="volume for (b), Z,Y,X")
    ap.add_argument("--small-cache-mb", default="128", help="the smaller cache in (a)")
    ap.add_argument("--seconds", type=float, default=6.0, help="compute-limit loop duration")
    ap.add_argument("--repeats", type=int, default=3, help="predict runs of each kind in (b)")
    ap.add_argument("--no-predict", action="store_true", help="(a) only")
    ap.add_argument("--no-amplification", action="store_true", help="(b) only")
    ap.add_argument("--workdir", default=None, help="where the zarr files go (default: tmp)")
    ap.add_argument("--json-out", default="benchmarks/results/read-amplification-cpu-2core.json")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="stitchsafe-reads-"))
    # End to end as a user's later runs: the model's geometry, checked by probing in the
    # untimed first run, is remembered (in a cache of the benchmark's own, not the user's).
    os.environ.setdefault("STITCHSAFE_CACHE_DIR", str(work / "cache"))
    counter = DecodeCounter()
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "zarr": zarr.__version__,
            "cpus": os.cpu_count(),
        },
        "amplification": []
        if args.no_amplification
        else amplification(
            work, tuple(int(v) for v in args.shape.split(",")), args.small_cache_mb, counter
        ),
    }
    if not args.no_predict:
        shape = tuple(int(v) for v in args.predict_shape.split(","))
        results["end_to_end"] = end_to_end(work, shape, args.seconds, counter, args.repeats)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    _report(results, args.small_cache_mb)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return results


def _report(r: dict[str, Any], small_mb: str) -> None:
    print(
        "\nchunks          tiles  before (s)     after (s)      small cache (s)  "
        "small, C order   whole read"
    )
    for row in r["amplification"]:
        small = [row[f"after_cache_{small_mb}mb"], row[f"after_cache_{small_mb}mb_c_order"]]
        cells = [row["before"], row["after"], *small]
        text = "  ".join(f"{c['amplification']:5.2f} ({c['s']:5.1f})" for c in cells)
        name = "x".join(map(str, row["chunks"]))
        print(f"{name:15} {row['tiles']:5}  {text}   {row['whole_array_read_s']:.1f} s")
    for row in r.get("end_to_end", []):
        name = "x".join(map(str, row["chunks"]))
        print(
            f"{name:15} predict {row['end_to_end'] / 1e6:.3f} M voxels/s; compute limit "
            f"{max(row['compute_limit_one_stream'], row['compute_limit_streams']) / 1e6:.3f}, "
            f"I/O limit {row['io_limit'] / 1e6:.2f}; ratio {row['end_to_end_over_limit']:.3f} "
            f"{_spread(row['end_to_end_over_limit_each'])} "
            f"({row['end_to_end_no_pyramid_over_limit']:.3f} "
            f"{_spread(row['end_to_end_no_pyramid_over_limit_each'])} without the pyramid; "
            f"kept share of the plan's boxes {row['plan_kept_share']:.3f}, read share "
            f"{row['plan_read_share']:.3f}); "
            f"decodes per chunk {row['end_to_end_decodes_per_chunk']:.2f}"
        )


def _spread(values: list[float]) -> str:
    return f"[{min(values):.3f}-{max(values):.3f}]"


if __name__ == "__main__":
    main()
