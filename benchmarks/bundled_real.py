"""The bundled models on real nuclei they never saw: AP@0.5 in 3-D and in 2-D.

The data is ``data/nuclei`` (a confocal stack of mouse-tissue nuclei, 60 x 256 x 256, with
reference instance labels; see its README). Its half ``x >= 128`` is the held-out part (the
same split as ``benchmarks/nuclei.py``: a model may learn from ``x < 128`` only):

- 3-D: ``stitchsafe predict`` without ``--model`` (the bundled 3-D model, its stored
  labelling defaults, no flags) on the held-out half, scored against its reference labels.
- 2-D: the same on single optical sections of the held-out half (z = 25, 30, ..., 50,
  inside the depth the reference labels cover), each a 2-D image for the bundled 2-D
  model; AP@0.5 pooled over all sections' objects (an object cut by the section is an
  object of that section) and per section.

Reported (one JSON object, also written to ``--json-out``): AP@0.5, adapted Rand error,
objects in the reference and found, and the fraction of voxels labelled foreground.

``--shrink-2d F`` (a diagnosis, not how the README's figures are made): each section is
shrunk by ``F`` (linear interpolation) before ``predict`` and its labels are scaled back up
(nearest neighbour) to be scored, to see how a 2-D model does on nuclei ``F`` times
smaller than these, e.g. nearer the size of the cells it was trained on.

Usage::

    python benchmarks/bundled_real.py --workdir DIR [--json-out PATH] [--model-2d M] [--model-3d M]
        [--shrink-2d F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr
from scipy import ndimage

import stitchsafe
from stitchsafe.labels import adapted_rand_error, average_precision

DATA = Path(__file__).resolve().parent.parent / "data" / "nuclei"
SPLIT = 128
# Optical sections inside the labelled depth (reference labels cover z = 20..57 only).
SECTIONS = range(25, 55, 5)


def _predict(model: Path | None, image: np.ndarray, work: Path, name: str) -> np.ndarray:
    """The labels ``predict`` writes for ``image`` (stored defaults, no flags)."""
    tifffile.imwrite(work / f"{name}.tif", image)
    result = stitchsafe.predict(
        model, work / f"{name}.tif", output=work / f"{name}.zarr", device="cpu",
        overwrite=True, progress=False,
    )  # fmt: skip
    assert result.labels is not None
    return np.asarray(zarr.open_array(str(Path(result.output) / result.labels), mode="r"))


def _predict_2d(model: Path | None, section: np.ndarray, work: Path, name: str, f: float) -> Any:
    """The labels of ``section``, predicted at ``1 / f`` of its size and scaled back up."""
    if f == 1:
        return _predict(model, section, work, name)
    small = ndimage.zoom(section.astype(np.float32), 1 / f, order=1)
    labels = _predict(model, small, work, name)
    return ndimage.zoom(labels, np.divide(section.shape, labels.shape), order=0)


def _score(truth: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "objects_true": int(len(np.unique(truth)) - 1),
        "objects_found": int(len(np.unique(labels)) - (labels == 0).any()),
        "ap50": round(average_precision(truth, labels), 4),
        "adapted_rand_error": round(adapted_rand_error(truth, labels), 4),
        "foreground_fraction": round(float((labels > 0).mean()), 4),
    }


def _offset(labels: np.ndarray, start: int) -> np.ndarray:
    """``labels`` with ids moved past ``start`` (so sections pool without clashes)."""
    return np.where(labels > 0, labels.astype(np.int64) + start, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--model-2d", type=Path, default=None, help="default: the bundled one")
    parser.add_argument("--model-3d", type=Path, default=None, help="default: the bundled one")
    parser.add_argument(
        "--shrink-2d", type=float, default=1.0, help="shrink each 2-D section by this first"
    )
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    image = tifffile.imread(DATA / "nuclei.tif")[..., SPLIT:]
    truth = tifffile.imread(DATA / "nuclei_label.tif")[..., SPLIT:]

    summary: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "held_out": f"x >= {SPLIT} of data/nuclei, {list(image.shape)}",
        "models": {"2d": str(args.model_2d or "bundled"), "3d": str(args.model_3d or "bundled")},
        "shrink_2d": args.shrink_2d,
    }
    summary["3d"] = _score(truth, _predict(args.model_3d, image, work, "real3d"))
    pooled_truth, pooled_labels, sections = [], [], {}
    for z in SECTIONS:
        labels = _predict_2d(args.model_2d, image[z], work, f"real2d_z{z}", args.shrink_2d)
        sections[str(z)] = _score(truth[z], labels)
        pooled_truth.append(_offset(truth[z], 10_000 * z))
        pooled_labels.append(_offset(labels, 10_000 * z))
    summary["2d"] = _score(np.stack(pooled_truth), np.stack(pooled_labels))
    summary["2d"]["sections"] = sections
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
