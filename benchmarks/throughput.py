"""Throughput of ``stitchsafe predict`` against its compute limit, its I/O limit and MONAI.

Everything is measured in one run on one machine (machines are shared and noisy, so only
ratios within a run mean anything):

(a) compute limit: the model's tight-loop forward at the plan's tile read shape, batches
    already on the device; output voxels/s counts the kept write box only;
(b) I/O limit: reading every tile's padded input and writing outputs of the right shape,
    chunk-aligned, with the same thread pool but no model;
(c) ``stitchsafe.predict`` end to end (normalisation, planning, reads, forward, writes);
(d) MONAI ``sliding_window_inference`` with a same-padded twin of the network (gaussian
    blending, overlap 0.25 and 0.5), the volume already in memory, and its deviation from
    one whole-volume pass of that twin (its seams);
(e) with ``--labels``: instance labels end to end, written with the embeddings (predict,
    then the blockwise labelling) and without them (``--no-embeddings``), and whether the
    two label images are identical.

Usage::

    python benchmarks/throughput.py                      # small model, sized for 2 CPU cores
    python benchmarks/throughput.py --model reference --device cuda --shape 320,320,320

Prints a table of output voxels/s and ratios and writes JSON (``--json-out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import stitchsafe  # isort: skip - first: it sets torch's CPU allocator (THP) as predict runs
import torch
import zarr

from stitchsafe.engine import compute_normalization, resolve_device
from stitchsafe.geometry import Box, batch_reads
from stitchsafe.io import open_volume, prepare_output, read_padded, write_block
from stitchsafe.models import UNetConfig, build_unet, load_model, save_checkpoint, unet_metadata

MODELS = {
    # Issue 5's reference: depth 3, factor 2, 32 base features doubling, 16 output channels.
    "reference": dict(dims=3, pooling_factors=((2, 2, 2),) * 3, features=32, out_channels=16),
    # Small enough that a 2-core CPU finishes the whole benchmark in a few minutes.
    "small": dict(dims=3, pooling_factors=((1, 2, 2), (2, 2, 2)), features=8, out_channels=8),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compute_limit(
    model: Any,
    plan: Any,
    device: torch.device,
    batch: int,
    seconds: float,
    precision: str,
    streams: int = 1,
) -> float:
    """Kept output voxels/s of back-to-back forwards on device-resident batches.

    With ``streams > 1`` (CPU), that many threads run forwards side by side, torch using
    ``cores // streams`` threads in each: the other way to spend the cores.
    """
    import threading

    from stitchsafe.engine import forward_context

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as predict does for its fixed tile shape
    x = torch.randn((batch, plan.geometry.channels_in, *plan.read_shape), device=device)
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, previous // streams))
    counts, ends = [0] * streams, [0.0] * streams

    def loop(i: int, until: float) -> None:
        with forward_context(precision, device):
            while time.perf_counter() < until or counts[i] < 2:
                model(x)
                counts[i] += 1
            _sync(device)
        ends[i] = time.perf_counter()

    try:
        with forward_context(precision, device):
            model(x)  # warm-up (allocator, cudnn autotune)
            _sync(device)
        start = time.perf_counter()
        threads = [threading.Thread(target=loop, args=(i, start + seconds)) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        torch.set_num_threads(previous)
    # Each stream's rate over its own time: a stream that finished its last forward early
    # does not wait, in the figure, for the one still in its last forward.
    rates = [n / (end - start) for n, end in zip(counts, ends)]
    return sum(rates) * batch * math.prod(plan.tile_shape)


def io_limit(
    volume: Any,
    plan: Any,
    out_group: str,
    channels: int,
    workers: int,
    transform: Any,
    dtype: str = "float32",
) -> float:
    """Output voxels/s of reading every padded tile input and writing its output chunk."""
    import dask

    spec = prepare_output(
        out_group,
        image="io-only",
        shape=volume.shape,
        channels=channels,
        chunks=plan.chunks,
        axes=("z", "y", "x"),
        dtype=dtype,
        overwrite=True,
    )
    rng = np.random.default_rng(0)
    block = rng.normal(size=(channels, *plan.tile_shape)).astype(dtype)

    def one(tile: Any) -> None:
        read_padded(volume, batch_reads([tile])[0], transform=transform)  # as predict reads it
        write_block(
            spec, tile.write, block[(slice(None), *Box.from_shape(tile.write.shape).to_slices())]
        )

    start = time.perf_counter()
    dask.compute(
        *[dask.delayed(one, pure=False)(t) for t in plan], scheduler="threads", num_workers=workers
    )
    return math.prod(volume.shape) / (time.perf_counter() - start)


def monai_runs(
    volume: np.ndarray, cfg: UNetConfig, roi: tuple[int, ...], batch: int, device: torch.device
) -> list[dict[str, Any]]:
    """MONAI sliding window with a same-padded twin; speed and seam error at two overlaps."""
    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        return [{"skipped": "monai is not installed (pip install --no-deps monai)"}]
    twin_cfg = UNetConfig(**{**cfg.__dict__, "padding": "same", "extra": {}})
    twin = build_unet(twin_cfg, seed=0).to(device)
    x = torch.from_numpy(volume[None, None].astype(np.float32)).to(device)
    # whole-volume reference of the twin (same padding needs sizes divisible by the period)
    period = twin_cfg.geometry().period
    pad = [(-s) % p for s, p in zip(volume.shape, period)]
    xp = torch.nn.functional.pad(x, [v for p in reversed(pad) for v in (0, p)], mode="reflect")
    with torch.inference_mode():
        whole = twin(xp)[(..., *(slice(0, s) for s in volume.shape))]
    scale = float(whole.abs().max())
    out = []
    for overlap in (0.25, 0.5):
        with torch.inference_mode():
            sliding_window_inference(x, roi, batch, twin, overlap=overlap, mode="gaussian")
            _sync(device)
            start = time.perf_counter()
            y = sliding_window_inference(x, roi, batch, twin, overlap=overlap, mode="gaussian")
            _sync(device)
            seconds = time.perf_counter() - start
        out.append(
            {
                "overlap": overlap,
                "roi": list(roi),
                "voxels_per_s": math.prod(volume.shape) / seconds,
                "seam_error_relative": float((y - whole).abs().max()) / scale,
            }
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="small")
    ap.add_argument("--shape", default="48,256,256", help="synthetic volume shape (Z,Y,X)")
    ap.add_argument("--tile-shape", default=None, help="write box; default: stitchsafe's")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=10.0, help="tight-loop duration")
    ap.add_argument("--workdir", default=None, help="where the zarr files go (default: tmp)")
    ap.add_argument("--json-out", default="benchmarks/results/throughput.json")
    ap.add_argument("--no-monai", action="store_true")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--embeddings-dtype", choices=["float32", "float16"], default="float32")
    ap.add_argument("--labels", action="store_true", help="also measure (e), labels end to end")
    ap.add_argument(
        "--label-threshold",
        type=float,
        default=None,
        help="embedding distance for (e); default: the median face-neighbour distance",
    )
    ap.add_argument(
        "--schedulers",
        default="threads",
        help="comma-separated --scheduler values to run (c) with, e.g. threads,processes:2",
    )
    args = ap.parse_args(argv)
    # End to end as a first run: the model's geometry checked by probing, not remembered.
    os.environ.setdefault("STITCHSAFE_CACHE_DIR", "off")

    device = resolve_device(args.device)
    shape = tuple(int(v) for v in args.shape.split(","))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="stitchsafe-bench-"))
    cfg = UNetConfig(**MODELS[args.model])
    model_path = work / "model.pt"
    save_checkpoint(build_unet(cfg, seed=0), model_path, metadata=unet_metadata(cfg))
    rng = np.random.default_rng(0)
    data = (rng.random(shape, dtype=np.float32) * 1000).astype(np.uint16)
    src = work / "input.zarr"
    arr = zarr.create_array(
        src, shape=shape, chunks=(min(64, shape[0]), 128, 128), dtype="uint16", overwrite=True
    )
    arr[...] = data

    tile = None if args.tile_shape is None else tuple(int(v) for v in args.tile_shape.split(","))
    p = stitchsafe.plan(model_path, src, tile_shape=tile, device=str(device)).plan
    volume = open_volume(src, spatial_dims=3)
    norm = compute_normalization(volume, method="percentile")
    model = load_model(model_path).to(device)
    workers = max(2, os.cpu_count() or 1)

    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or "cpu",
        },
        "model": args.model,
        "volume_shape": list(shape),
        "tile_shape": list(p.tile_shape),
        "read_shape": list(p.read_shape),
        "tiles": len(p),
        "batch_size": args.batch_size,
        "halo_overhead": p.halo_overhead,
    }
    results["precision"] = args.precision
    results["embeddings_dtype"] = args.embeddings_dtype
    results["compute_limit_one_stream"] = compute_limit(
        model, p, device, args.batch_size, args.seconds, args.precision
    )
    results["compute_limit"] = results["compute_limit_one_stream"]
    if device.type == "cpu" and (os.cpu_count() or 1) > 1:
        # On the CPU the model's own speed is the better of the two ways to use the cores.
        streams = os.cpu_count() or 1
        results["compute_limit_streams"] = compute_limit(
            model, p, device, args.batch_size, args.seconds, args.precision, streams=streams
        )
        results["compute_limit"] = max(results["compute_limit"], results["compute_limit_streams"])
    results["io_limit"] = io_limit(
        volume,
        p,
        os.fspath(work / "out.zarr"),
        cfg.out_channels,
        workers,
        norm,
        args.embeddings_dtype,
    )
    limit = min(results["compute_limit"], results["io_limit"])
    results["end_to_end_by_scheduler"] = {}
    for scheduler in args.schedulers.split(","):
        start = time.perf_counter()
        stitchsafe.predict(
            model_path,
            src,
            output=work / "out.zarr",
            tile_shape=p.tile_shape,
            batch_size=args.batch_size,
            device=str(device),
            precision=args.precision,
            embeddings_dtype=args.embeddings_dtype,
            overwrite=True,
            progress=False,
            scheduler=scheduler,
            **_no_labels(),
        )
        speed = math.prod(shape) / (time.perf_counter() - start)
        results["end_to_end_by_scheduler"][scheduler] = {
            "voxels_per_s": speed,
            "over_limit": speed / limit,
        }
    first = args.schedulers.split(",")[0]
    results["end_to_end"] = results["end_to_end_by_scheduler"][first]["voxels_per_s"]
    results["end_to_end_over_limit"] = results["end_to_end"] / limit
    if args.labels:
        results["labels"] = label_runs(
            model_path, src, work, p, args.batch_size, device, args.precision, args.label_threshold
        )
    if not args.no_monai:
        roi = tuple(min(s, r) for s, r in zip(shape, p.read_shape))
        results["monai"] = monai_runs(
            data.astype(np.float32) / 1000.0, cfg, roi, args.batch_size, device
        )
    volume.close()
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    _report(results)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return results


def label_runs(
    model_path: Path,
    src: Path,
    work: Path,
    p: Any,
    batch_size: int,
    device: torch.device,
    precision: str,
    threshold: float | None,
) -> dict[str, Any]:
    """(e): labels with the embeddings written, and labels only; the same labels?"""
    shape = p.volume_shape
    if threshold is None:
        # The median distance between face-neighbours' embeddings: objects of a few voxels.
        emb = np.asarray(zarr.open_array(work / "out.zarr" / "embeddings" / "0", mode="r")[:, :8])
        threshold = float(np.median(np.sqrt(((emb[:, :, :, 1:] - emb[:, :, :, :-1]) ** 2).sum(0))))
    out: dict[str, Any] = {"threshold": threshold}
    labels = {}
    for name, extra in (("with_embeddings", {}), ("labels_only", {"embeddings": False})):
        start = time.perf_counter()
        r = stitchsafe.predict(
            model_path,
            src,
            output=work / f"{name}.zarr",
            tile_shape=p.tile_shape,
            batch_size=batch_size,
            device=str(device),
            precision=precision,
            overwrite=True,
            progress=False,
            threshold=threshold,
            min_size=1,
            **extra,
        )
        seconds = time.perf_counter() - start
        assert r.labels is not None
        labels[name] = np.asarray(zarr.open_array(work / f"{name}.zarr" / r.labels, mode="r"))
        out[name] = {
            "seconds": seconds,
            "voxels_per_s": math.prod(shape) / seconds,
            "objects": r.objects,
        }
    out["identical"] = bool(np.array_equal(labels["with_embeddings"], labels["labels_only"]))
    # Labels-only tiles are larger (a margin for the labelling), which changes the embeddings
    # by float rounding: links within that noise of the threshold may flip.
    from stitchsafe.labels import match

    same = match(labels["with_embeddings"], labels["labels_only"], threshold=0.999).tp
    out["objects_differing"] = int(out["with_embeddings"]["objects"] - same)
    out["speedup"] = out["with_embeddings"]["seconds"] / out["labels_only"]["seconds"]
    return out


def _no_labels() -> dict[str, Any]:
    """Skip instance labels where predict offers them: this measures the embeddings path."""
    import inspect

    return {"labels": False} if "labels" in inspect.signature(stitchsafe.predict).parameters else {}


def _report(r: dict[str, Any]) -> None:
    e2e = r["end_to_end"]
    rows = [
        ("(a) compute limit (tight loop)", r["compute_limit"]),
        ("    one stream, all cores", r.get("compute_limit_one_stream", r["compute_limit"])),
    ]
    if "compute_limit_streams" in r:
        rows.append(("    one stream per core", r["compute_limit_streams"]))
    rows += [
        ("(b) I/O limit (read + write)", r["io_limit"]),
    ]
    for name, run in r.get("end_to_end_by_scheduler", {"threads": {"voxels_per_s": e2e}}).items():
        rows.append((f"(c) stitchsafe predict, {name}", run["voxels_per_s"]))
    for m in r.get("monai", []):
        if "voxels_per_s" in m:
            rows.append((f"(d) MONAI sliding window, overlap {m['overlap']}", m["voxels_per_s"]))
    if "labels" in r:
        lab = r["labels"]
        rows.append(("(e) labels, embeddings written too", lab["with_embeddings"]["voxels_per_s"]))
        rows.append(("    labels only (--no-embeddings)", lab["labels_only"]["voxels_per_s"]))
    print(
        f"machine: {r['machine']['device_name']} ({r['machine']['device']}), "
        f"torch {r['machine']['torch']}, {r['machine']['cpus']} CPUs"
    )
    print(
        f"model {r['model']}, volume {r['volume_shape']}, tiles {r['tiles']} of "
        f"{r['tile_shape']} (read {r['read_shape']}), halo overhead {r['halo_overhead']:.2f}"
    )
    print(f"{'':40s} {'M voxels/s':>11s} {'x e2e':>7s}")
    for name, v in rows:
        print(f"{name:40s} {v / 1e6:11.3f} {v / e2e:7.2f}")
    for name, run in r.get("end_to_end_by_scheduler", {}).items():
        print(f"end to end ({name}) / min(compute, I/O) = {run['over_limit']:.2f}")
    if "labels" in r:
        lab = r["labels"]
        print(
            f"labels only is {lab['speedup']:.2f} x as fast as labels with embeddings; "
            f"identical labels: {lab['identical']} ({lab['objects_differing']} of "
            f"{lab['with_embeddings']['objects']} objects differ; threshold "
            f"{lab['threshold']:.3g})"
        )
    for m in r.get("monai", []):
        if "seam_error_relative" in m:
            print(
                f"MONAI overlap {m['overlap']}: max seam error {m['seam_error_relative']:.3g} "
                "of max |output| (stitchsafe: exact)"
            )


if __name__ == "__main__":
    main()
