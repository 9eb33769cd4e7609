"""Train with default settings on part of the real nuclei volume and score the rest.

The data is ``data/nuclei`` (a confocal stack of mouse-tissue nuclei, 60 x 256 x 256, with
reference instance labels; see its README). The volume is split along x: ``stitchsafe
train`` (no tuning flags, exactly as a user would run it) learns from ``x < 128`` and the
model is evaluated on ``x >= 128`` with ``stitchsafe predict`` (labels with the model's
calibrated defaults). Objects cut by the split appear, cut, on both sides.

Reported (one JSON object, also written to ``--json-out``): training time, AP@0.5 and
adapted Rand error on the held-out half (and on the training half, for reference), object
counts, the labelling parameters the training calibrated, and the labelling throughput of
``stitchsafe segment`` on the held-out half (voxels/s).

Usage::

    python benchmarks/nuclei.py --workdir /tmp/nuclei [--json-out PATH] [--iterations N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import tifffile
import zarr

import stitchsafe
from stitchsafe.labels import adapted_rand_error, average_precision
from stitchsafe.models import load_model

DATA = Path(__file__).resolve().parent.parent / "data" / "nuclei"
SPLIT = 128


def _labels(result: stitchsafe.PredictResult) -> np.ndarray:
    assert result.labels is not None
    return np.asarray(zarr.open_array(str(Path(result.output) / result.labels), mode="r"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--iterations", type=int, default=None, help="default: train's own")
    parser.add_argument("--reuse", action="store_true", help="evaluate WORKDIR/nuclei.pt again")
    parser.add_argument(
        "--foreground-target", choices=["labels", "separated"], default=None,
        help="passed to train (default: train's own)",
    )  # fmt: skip
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    image = tifffile.imread(DATA / "nuclei.tif")
    truth = tifffile.imread(DATA / "nuclei_label.tif")
    parts = {"train": np.s_[..., :SPLIT], "test": np.s_[..., SPLIT:]}
    for name, region in parts.items():
        tifffile.imwrite(work / f"{name}.tif", image[region])
        tifffile.imwrite(work / f"{name}_labels.tif", truth[region])

    command = ["stitchsafe", "train", "--image", "train.tif", "--labels", "train_labels.tif"]
    command += ["--output", "nuclei.pt", "--overwrite", "--no-progress", "--json"]
    if args.iterations:
        command += ["--iterations", str(args.iterations)]
    if args.foreground_target:
        command += ["--foreground-target", args.foreground_target]
    if not (args.reuse and (work / "nuclei.pt").exists()):
        subprocess.run(command, cwd=work, capture_output=True, text=True, check=True)
    meta = load_model(work / "nuclei.pt").metadata or {}
    training = meta.get("training", {})

    summary: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "volume": list(image.shape),
        "split": f"train x < {SPLIT}, test x >= {SPLIT}",
        "command": " ".join(command),
        "train_seconds": training.get("seconds"),
        "iterations": training.get("iterations"),
        "label_params": {k: v for k, v in meta.get("labels", {}).items() if k != "calibration"},
        "calibration_ap50": (meta.get("labels", {}).get("calibration") or {}).get("ap50"),
    }
    for name, region in parts.items():
        result = stitchsafe.predict(
            work / "nuclei.pt",
            work / f"{name}.tif",
            output=work / f"{name}.zarr",
            device="cpu",
            overwrite=True,
            progress=False,
        )
        labels, gt = _labels(result), truth[region]
        summary[name] = {
            "objects_true": int(len(np.unique(gt)) - 1),
            "objects_found": int(result.objects or 0),
            "ap50": round(average_precision(gt, labels), 4),
            "adapted_rand_error": round(adapted_rand_error(gt, labels), 4),
            "predict_seconds": round(result.seconds, 1),
        }
    start = time.perf_counter()
    seg = stitchsafe.segment(work / "test.zarr", overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    voxels = int(np.prod(truth[parts["test"]].shape))
    summary["segment"] = {"seconds": round(seconds, 2), "voxels_per_s": round(voxels / seconds)}
    summary["segment"]["objects"] = seg.objects
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
