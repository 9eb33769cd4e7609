"""Reproduce Rumberger et al. (ICCV 2021) with stitchsafe: when tile-and-stitch is seamless.

The paper's conditions for seamless tile-and-stitch with a valid-conv U-Net of period
``P``: tiles on the ``P``-lattice of one global grid, each tile's kept output ``n * P``
long (the raw output's remainder ``r`` cropped, never stitched), and a training output
window strictly larger than ``P``. This script trains small 2-D U-Nets with
``stitchsafe.training`` on synthetic cells and measures, on a held-out image, the deviation
of stitched embeddings from one whole-image pass (relative to ``max |output|``) and what
it does to the instance labels (AP@0.5 against the ground truth):

- ``lattice``: stitchsafe's plan (exact);
- ``remainder``: a depth-4 network (raw outputs ``16 n + 4``) whose whole raw tile
  outputs are stitched, remainder included;
- ``off_lattice``: tiles one voxel shorter than a period multiple, so their origins drift
  off the lattice;
- ``window_equals_period``: a network trained with the rule deliberately broken (output
  window = ``P``; ``stitchsafe train`` refuses this, so the script bypasses the check), for
  which we also report how much the embedding of one object varies with the position
  modulo ``P`` (``phase_spread``: the largest over the smallest mean distance between
  neighbouring voxels of one object, grouped by the lower voxel's position modulo ``P``).

Prints one JSON object and saves ``tile_and_stitch.png`` (log10 deviation maps) and
``tile_and_stitch_labels.png`` (labels of stitched embeddings, seams visible). About 5
minutes on 2 CPU cores.

Usage::

    python examples/paper_tile_and_stitch.py --workdir /tmp/paper [--iterations 2000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import zarr

import stitchsafe
import stitchsafe.training as training
from stitchsafe.engine import Normalization, run_plan, whole_volume_forward
from stitchsafe.geometry import make_plan
from stitchsafe.io import open_volume, prepare_output
from stitchsafe.labels import LabelParams, average_precision, label_array, resolve_label_params
from stitchsafe.models import load_model, resolve_geometry
from stitchsafe.reports import relative_log_deviation, save_deviation_maps, save_label_overlay
from stitchsafe.training import synthetic_cells

SHAPE = (256, 256)


def train_model(
    path: Path, image: np.ndarray, labels: np.ndarray, reuse: bool, **kwargs: Any
) -> Path:
    if not (reuse and path.exists()):
        training.train(image, labels, output=path, overwrite=True, progress=False, **kwargs)
    return path


def tiled(
    model_path: Path, image_path: Path, tile: tuple[int, ...], work: Path, norm: Normalization
) -> np.ndarray:
    """Stitched output of an arbitrary (possibly wrong) tiling, for comparison."""
    model = load_model(model_path, device="cpu")
    geometry, _ = resolve_geometry(model)
    volume = open_volume(image_path, spatial_dims=2)
    plan = make_plan(volume.shape, geometry, tile_shape=tile, exact=False)
    spec = prepare_output(
        str(work / f"{model_path.stem}-{'x'.join(map(str, tile))}.zarr"),
        shape=volume.shape,
        channels=geometry.channels_out,
        chunks=plan.chunks,
        axes=("y", "x"),
        overwrite=True,
    )
    run_plan(volume, model, plan, spec, transform=norm, progress=False)
    volume.close()
    return np.asarray(zarr.open_array(f"{spec.group}/{spec.array}", mode="r"))


def whole(model_path: Path, image: np.ndarray, norm: Normalization) -> np.ndarray:
    """The oracle: one forward pass over the whole image, normalised as predict did."""
    model = load_model(model_path, device="cpu")
    geometry, _ = resolve_geometry(model)
    return whole_volume_forward(image[None], model, geometry, transform=norm)


def params_of(model_path: Path, channels: int) -> LabelParams:
    meta = load_model(model_path).metadata or {}
    defaults = {k: v for k, v in meta["labels"].items() if k != "calibration"}
    return resolve_label_params(defaults, meta["channel_roles"], channels=channels)


def phase_spread(emb: np.ndarray, truth: np.ndarray, period: int) -> float:
    """Largest / smallest mean neighbour distance inside objects, by x modulo the period."""
    d = np.sqrt(((emb[:, :, 1:] - emb[:, :, :-1]) ** 2).sum(0))
    same = (truth[:, 1:] == truth[:, :-1]) & (truth[:, 1:] > 0)
    phase = np.broadcast_to(np.arange(truth.shape[1] - 1) % period, same.shape)
    means = [d[same & (phase == p)].mean() for p in range(period)]
    return float(max(means) / min(means))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--reuse", action="store_true", help="keep models already trained")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    image, labels = synthetic_cells(SHAPE, seed=0)
    test, truth = synthetic_cells(SHAPE, seed=1)
    test_path = work / "test.zarr"
    zarr.create_array(test_path, data=test, chunks=(64, 64), overwrite=True)

    common = {"iterations": args.iterations, "dims": 2, "reuse": args.reuse}
    good = train_model(work / "window_4P.pt", image, labels, depth=2, **common)
    deep = train_model(work / "depth4.pt", image, labels, depth=4, **common)
    # Break the rule on purpose: an output window of exactly one period. The check is
    # switched off where training looks it up (a private module: this is the one place that
    # must get past it).
    with mock.patch(
        "stitchsafe.training._setup.check_training_window",
        lambda window, geometry: tuple(int(w) for w in window),
    ):
        bad = train_model(work / "window_P.pt", image, labels, depth=2, window=4, **common)

    report: dict[str, Any] = {}
    maps, overlays = [], []
    for name, model in (("window_4P", good), ("window_P", bad), ("depth4", deep)):
        geometry, _ = resolve_geometry(load_model(model))
        lattice = tuple(8 * p for p in geometry.period)
        r = stitchsafe.predict(
            model,
            test_path,
            output=work / f"{name}.zarr",
            tile_shape=lattice,
            device="cpu",
            overwrite=True,
            progress=False,
            labels=False,
        )
        norm = Normalization.from_dict(r.normalization)
        ref = whole(model, test, norm)
        scale = float(np.abs(ref).max())
        params = params_of(model, ref.shape[0])
        emb_channels = list(params.embedding_channels(ref.shape[0]))
        entry: dict[str, Any] = {
            "period": list(geometry.period),
            "raw_output_remainder": list(geometry.remainder),
            "ap50_whole": round(average_precision(truth, label_array(ref, params=params)), 4),
            "phase_spread": round(phase_spread(ref[emb_channels], truth, geometry.period[1]), 3),
        }
        tilings: dict[str, tuple[int, ...]] = {"lattice": lattice}
        if any(geometry.remainder):
            tilings["remainder"] = geometry.output_shape(geometry.input_for_output(lattice))
        tilings["off_lattice"] = tuple(t - 1 for t in lattice)
        for tiling, tile in tilings.items():
            if tiling == "lattice":
                out = np.asarray(zarr.open_array(f"{r.output}/{r.embeddings}", mode="r"))
            else:
                out = tiled(model, test_path, tile, work, norm)
            lab = label_array(out, params=params)
            entry[tiling] = {
                "tile": list(tile),
                "relative_deviation": float(np.abs(out - ref).max() / scale),
                "ap50": round(average_precision(truth, lab), 4),
            }
            if name != "window_P":
                maps.append((f"{name}, {tiling}", relative_log_deviation(out, ref)))
            if tiling != "lattice" and name == "depth4":
                overlays.append((f"{name}, {tiling} (tiles {tile[0]})", lab))
        report[name] = entry
        print(json.dumps({name: entry}), flush=True)
    save_deviation_maps(
        work / "tile_and_stitch.png",
        maps,
        title="log10 |stitched - whole| / max|whole| on a held-out image",
    )
    save_label_overlay(
        work / "tile_and_stitch_labels.png",
        test,
        [("ground truth", truth), *overlays],
        title="Labels of wrongly stitched embeddings: seams where tiles meet",
    )
    (work / "tile_and_stitch.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
