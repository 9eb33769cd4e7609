"""Where ``stitchsafe predict``'s time goes: a sampling profile of every thread.

``predict`` runs on several threads at once (the caller's, readers, compute streams,
writers, zarr's event loop, the pyramid's pool), so a profiler of one thread (cProfile)
misses most of it. This samples every thread's Python stack every ``--interval`` seconds
and counts, per thread group (threads named alike), the time each function was on the
stack (inclusive) and at its top (leaf), leaving out threads that only wait. The first
run pays one-off costs (cuDNN's autotuning, the model's geometry check); later runs in
the same process show the steady state. The geometry cache is off unless
``STITCHSAFE_CACHE_DIR`` is set, so every run checks the model as a first run does.

Usage::

    python benchmarks/stage_profile.py                                  # bundled 3-D model, CPU
    python benchmarks/stage_profile.py --model reference --device cuda --shape 320,320,320 \\
        --precision bf16 --embeddings-dtype float16 --runs 2

Prints the profile of each run and writes JSON (``--json-out``).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import stitchsafe  # isort: skip - first: it sets torch's CPU allocator (THP)
import torch

from stitchsafe.models import CACHE_ENV, UNetConfig, build_unet, save_checkpoint, unet_metadata

sys.path.insert(0, str(Path(__file__).parent))
from read_amplification import make_input  # noqa: E402 - the benchmarks' own siblings
from throughput import MODELS  # noqa: E402

# Frames a thread sits in while it waits for work (a pool's queue, the event loop, a lock).
IDLE = {"_worker", "select", "wait", "_wait_for_tstate_lock", "get", "poll", "_bootstrap"}
# Frames under every pool thread or event loop: on every stack, so they say nothing.
PLUMBING = ("threading.py:", "concurrent/futures/thread.py:", "asyncio/")


def _where(frame: FrameType) -> str:
    """``package/file.py:function``, the path cut after site-packages/, stitchsafe/ or the
    standard library's folder."""
    name = frame.f_code.co_filename
    if "/lib/python3" in name and "site-packages/" not in name:
        name = name.split("/lib/python3", 1)[1].split("/", 1)[-1]
    for cut in ("site-packages/", "stitchsafe/"):
        if cut in name:
            name = name.split(cut, 1)[1]
            break
    else:
        if os.path.isabs(name) and name.startswith(os.getcwd() + os.sep):
            name = os.path.relpath(name)
    return f"{name}:{frame.f_code.co_name}"


def _group(name: str) -> str:
    """A thread's group: its name without the pool's numbering."""
    return name.split("_")[0].rstrip("0123456789-") or name


class Sampler:
    """Samples every other thread's stack in a daemon thread while the block runs."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.inclusive: collections.Counter[tuple[str, str]] = collections.Counter()
        self.leaf: collections.Counter[tuple[str, str]] = collections.Counter()
        self.busy: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            names = {t.ident: _group(t.name) for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                group = names.get(ident, "?")
                if ident == me or (group != "MainThread" and frame.f_code.co_name in IDLE):
                    continue
                self.busy[group] += 1
                self.leaf[(group, _where(frame))] += 1
                seen = set()
                while frame is not None:
                    seen.add(_where(frame))
                    frame = frame.f_back
                for where in seen:
                    if not where.startswith(PLUMBING):
                        self.inclusive[(group, where)] += 1

    def report(self, top: int, floor: float) -> dict[str, Any]:
        """Seconds per thread group and function (inclusive and leaf), above ``floor``."""
        out: dict[str, Any] = {}
        for group, n in self.busy.most_common():
            keep = max(1, int(floor * n))

            def rows(counter: collections.Counter, g: str = group, k: int = keep) -> list:
                found = [(w, c) for (gg, w), c in counter.most_common() if gg == g and c >= k]
                return [[w, round(c * self.interval, 3)] for w, c in found[:top]]

            out[group] = {
                "busy_s": round(n * self.interval, 3),
                "inclusive_s": rows(self.inclusive),
                "leaf_s": rows(self.leaf),
            }
        return out


def _print(title: str, run: dict[str, Any]) -> None:
    print(f"\n=== {title}: {run['wall_s']:.2f} s, {run['voxels_per_s'] / 1e6:.3f} M voxels/s")
    for group, g in run["threads"].items():
        print(f"  [{group}] busy {g['busy_s']:.2f} s")
        for where, s in g["inclusive_s"]:
            print(f"    {s:8.2f} s  {where}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["bundled", *sorted(MODELS)], default="bundled")
    ap.add_argument("--shape", default="64,512,512", help="volume (Z,Y,X), chunked 64x256x256")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--embeddings-dtype", default="float32")
    ap.add_argument("--tile-shape", default=None, help="write box; default: stitchsafe's")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.005, help="seconds between samples")
    ap.add_argument("--top", type=int, default=25, help="functions shown per thread group")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault(CACHE_ENV, "off")

    work = Path(tempfile.mkdtemp(prefix="stitchsafe-profile-"))
    shape = tuple(int(v) for v in args.shape.split(","))
    model: Any = None
    if args.model != "bundled":
        cfg = UNetConfig(**MODELS[args.model])
        model = work / "model.pt"
        save_checkpoint(build_unet(cfg, seed=0), model, metadata=unet_metadata(cfg))
    src = work / "input.zarr"
    make_input(src, shape, tuple(min(c, s) for c, s in zip((64, 256, 256), shape)))
    tile = None if args.tile_shape is None else tuple(int(v) for v in args.tile_shape.split(","))
    runs = []
    for i in range(args.runs):
        with Sampler(args.interval) as sampler:
            start = time.perf_counter()
            stitchsafe.predict(
                model,
                src,
                output=work / "out.zarr",
                tile_shape=tile,
                device=args.device,
                precision=args.precision,
                embeddings_dtype=args.embeddings_dtype,
                overwrite=True,
                progress=False,
                labels=False,
            )
            wall = time.perf_counter() - start
        run = {
            "wall_s": wall,
            "voxels_per_s": math.prod(shape) / wall,
            "threads": sampler.report(args.top, floor=0.02),
        }
        runs.append(run)
        _print(f"run {i + 1} of {args.runs}", run)
    result = {
        "machine": {
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "device": args.device,
            "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "",
        },
        "settings": {k: v for k, v in vars(args).items() if k != "json_out"},
        "runs": runs,
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
