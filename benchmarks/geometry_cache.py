"""What remembering a model's geometry saves: ``stitchsafe.load_model`` cold and warm.

The benchmarks' reference network (a 32-feature, depth-3 3-D U-Net, ``throughput.py``) is
saved once; it is loaded with the geometry cache off (every run probes), then twice with
a fresh cache folder (the first probes and keeps the verdict, the second reads it). The
same machine and run for all three, so only the ratios mean much.

Usage::

    python benchmarks/geometry_cache.py    # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import stitchsafe  # isort: skip - first: it sets torch's CPU allocator (THP)
import torch

from stitchsafe.models import CACHE_ENV, UNetConfig, build_unet, save_checkpoint, unet_metadata

sys.path.insert(0, str(Path(__file__).parent))
from throughput import MODELS  # noqa: E402 - the benchmark's own sibling


def timed_load(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    model = stitchsafe.load_model(path)
    return time.perf_counter() - start, " ".join(model.loaded.probe_log)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="reference")
    ap.add_argument("--json-out", default="benchmarks/results/geometry-cache-cpu-2core.json")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="stitchsafe-geometry-cache-"))
    cfg = UNetConfig(**MODELS[args.model])
    path = work / "model.pt"
    save_checkpoint(build_unet(cfg, seed=0), path, metadata=unet_metadata(cfg))
    os.environ[CACHE_ENV] = "off"
    off, _ = timed_load(path)
    os.environ[CACHE_ENV] = str(work / "cache")
    first, first_log = timed_load(path)
    second, second_log = timed_load(path)
    assert "remembered in" in second_log and "remembered in" not in first_log
    r = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
        },
        "model": args.model,
        "load_s_cache_off": off,
        "load_s_first_run": first,
        "load_s_remembered": second,
        "speedup": off / second,
    }
    print(
        f"load_model, {args.model} network: cache off {off:.2f} s, first run {first:.2f} s, "
        f"remembered {second:.3f} s ({off / second:.0f} x faster)"
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    main()
