"""Retrain the bundled models on randomised synthetic cells and real nuclei (``data/nuclei``).

``2d``: the 2-D model bundled before (``stitchsafe train`` from scratch on seed 0 of
:func:`stitchsafe.training.synthetic_cells`, 512 x 512; only with ``--only``). The bundled
2-D model is now ``2d-deep-real2``, the last of five runs described below.

``3d``: the earlier bundled 3-D model (trained on synthetic cells alone; read from the git
history at ``BASE_REVISION`` and checked by SHA-256) is fine-tuned (``stitchsafe train
--init``) on one composite training image built here and written as TIFF files:

- synthetic blocks of :func:`stitchsafe.training.synthetic_cells`, each with its own
  randomly drawn look: object radius (from the default 4-8 up to about 30 voxels, as large
  as real nuclei), density and touching, photon count (shot noise), read noise, optical
  blur, rim contrast, z-anisotropy, plus a background offset and gradient, a
  multiplicative texture and a gamma drawn here; the first block keeps the default look,
  so the small default cells stay known;
- the real half ``x < 128`` of ``data/nuclei`` (confocal nuclei with reference labels;
  ``x >= 128`` is held out and scored by ``benchmarks/bundled_real.py``), twice.

Every block is normalised on its own (percentiles 1 and 99.8 to 0 and 1, as ``predict``
normalises each image it is given), and blocks are laid side by side with a background
gap, so one image holds them all. The fine-tuned weights are then averaged half and half
with the starting model's (:func:`stitchsafe.training.average_weights`) and the labelling
defaults measured again on the default-look block and the real half
(:func:`stitchsafe.training.recalibrate`). Deterministic: the same data every run.

``2d-composite`` (only with ``--only``): the same recipe in 2-D (24 randomised blocks and
the 44 labelled optical sections of the real half), tried and not bundled: it scored worse
than the bundled 2-D model on real and on synthetic cells.

``2d-deep`` (only with ``--only``): a depth-3 2-D net (field of view about +-44 px, as
large as a real nucleus) from random weights, ``separated`` target, on 24 synthetic blocks
of which the first 8 keep the default look, plus the 44 real sections; tried and not
bundled (0.32 real, 0.58 synthetic). ``2d-deep-long``: the same, 20000 iterations (0.59
real, 0.72 synthetic; not bundled either); ``2d-deep-longer``: that model continued for
16000 iterations at learning rate 0.001 (run ``2d-deep-long`` first; 0.61 real, 0.85
synthetic); ``2d-deep-batch``: that one continued for 6000 iterations with batches of 4 at
learning rate 0.0005 (41 minutes on one core; 0.57 real, 0.903 synthetic; bundled until
the next runs). ``2d-deep-real``: that one continued for 6000 iterations at learning rate
0.00025 on the same image plus the 44 real sections twice more, each time with a new
look (a dimming field, gamma, noise: :func:`_real_blocks_relooked`; 32 minutes); and
``2d-deep-real2``: that one for 6000 more (35 minutes): the bundled 2-D model.
``2d-deep-fine`` and ``2d-deep-fine2`` are the same two runs without the new looks (tried,
not bundled). After each of these four the labelling defaults are chosen by a rule on
training data only (:func:`_choose_labelling`: the best AP@0.5 on the real training
sections among the settings that keep 0.9 on the default-look synthetic cells of seed 0).
Without ``--only`` the script runs ``2d-deep-long``, ``2d-deep-longer``,
``2d-deep-batch``, ``2d-deep-real`` and ``2d-deep-real2`` in turn, then ``3d``.

Usage::

    python examples/train_bundled_models.py --workdir /tmp/bundled [--only NAME]

with NAME one of 2d, 3d, 2d-composite, 2d-deep, 2d-deep-long, 2d-deep-longer, 2d-deep-batch,
2d-deep-fine, 2d-deep-fine2, 2d-deep-real, 2d-deep-real2.

Then copy ``WORKDIR/cells2d-deep-real2.pt`` to ``stitchsafe/models/weights/cells2d.pt`` and
``WORKDIR/cells3d.pt`` into ``stitchsafe/models/weights/``.
Each checkpoint records its exact command (``load_model(path).metadata["training"]``).
Measured times: data about 1 minute; the bundled 2-D model's five runs 54, 43, 41, 32 and
35 minutes on one CPU core (about 3.4 hours), plus about a minute for each labelling
choice; ``2d`` 4.3 minutes on 2 CPU cores; ``3d`` fine-tuning 34 minutes plus about 3
for averaging and recalibration, and ``2d-composite`` 34 minutes, each on one low-priority
torch thread of a 2-core CPU busy with other work (so slower than an idle core).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
import zarr

import stitchsafe
from stitchsafe.labels import average_precision, label_array, resolve_label_params
from stitchsafe.training import (
    SEED_FOREGROUND,
    average_weights,
    label_candidates,
    recalibrate,
    set_labelling_defaults,
    smooth_field,
    synthetic_cells,
)

REPO = Path(__file__).resolve().parent.parent
NUCLEI = REPO / "data" / "nuclei"
SPLIT = 128  # training may use x < SPLIT of data/nuclei only
GAP = 16  # background between blocks
# Weight of the fine-tuned model when averaged with its base checkpoint (3-D only).
AVERAGE = {"3d": 0.5}
# The checkpoints fine-tuned here: the bundled models trained on synthetic cells alone (the
# earlier version of this script), read from the git history, checked by SHA-256.
BASE_REVISION = "d29ade7"
BASE_SHA256 = {
    "2d": "09ddfc2d7dabd328a5d6e5e2b3a667f183776f3b457fefe9ca3aa4605de78d44",
    "3d": "98905bb3741d5af3823d48003a50e0653efcbf4309d289a649ab07b87bc93a14",
}

DEEP = ["--depth", "3", "--foreground-target", "separated"]  # the 2d-deep nets


def _continued(lr: str, seed: str | None = None) -> list[str]:
    """Flags of a 6000-iteration continuation of a 2d-deep net, batches of 4."""
    flags = [*DEEP, "--iterations", "6000", "--window", "128,128", "--lr", lr]
    return [*flags, "--batch-size", "4", *(["--seed", seed] if seed else [])]


# name -> (synthetic block shape, number of randomised synthetic blocks, extra `stitchsafe
# train` flags). 0 blocks: trained from scratch on seed 0 of `synthetic_cells` alone (the
# bundled 2-D model). "2d-composite" is the 2-D recipe that was tried and not bundled: it
# lost on both real and synthetic cells (see the README, "Bundled models").
MODELS = {
    "2d": ((512, 512), 0, []),
    "3d": ((48, 256, 128), 4, ["--foreground-target", "separated", "--iterations", "400"]),
    "2d-composite": ((256, 256), 24, ["--iterations", "1000", "--window", "96,96"]),
    # Tried, not bundled: a depth-3 net from random weights (see the README).
    "2d-deep": ((256, 256), 24, [*DEEP, "--iterations", "4000", "--window", "128,128"]),
    # The same net and data, five times longer (54 minutes on one core).
    "2d-deep-long": ((256, 256), 24, [*DEEP, "--iterations", "20000", "--window", "128,128"]),
    # ... then continued from it for 16000 more at half the learning rate (43 minutes).
    "2d-deep-longer": (
        (256, 256),
        24,
        [*DEEP, "--iterations", "16000", "--window", "128,128", "--lr", "0.001"],
    ),
    # ... then from that for 6000 more, batches of 4 at lr 0.0005 (the 2-D model until
    # the next runs).
    "2d-deep-batch": ((256, 256), 24, _continued("0.0005")),
    # ... then 6000 more at lr 0.00025 on the same data (seed 1), or with the real
    # sections twice more, each time with a new look (_real_blocks_relooked); then 6000
    # more of each from there (seed 2).
    "2d-deep-fine": ((256, 256), 24, _continued("0.00025", "1")),
    "2d-deep-real": ((256, 256), 24, _continued("0.00025", "1")),
    "2d-deep-fine2": ((256, 256), 24, _continued("0.00025", "2")),
    "2d-deep-real2": ((256, 256), 24, _continued("0.00025", "2")),
}
# Continued from another model of this script (its checkpoint in the work folder first).
CONTINUES = {
    "2d-deep-real2": "2d-deep-real",
    "2d-deep-fine2": "2d-deep-fine",
    "2d-deep-real": "2d-deep-batch",
    "2d-deep-longer": "2d-deep-long",
    "2d-deep-batch": "2d-deep-longer",
    "2d-deep-fine": "2d-deep-batch",
}
# The depth-3 2-D nets: 8 synthetic blocks with the default look (the others are
# randomised; other models have 1), trained from random weights (or continued from one
# another) although their data has randomised blocks.
DEEP_2D = {name for name in MODELS if name.startswith("2d-deep")}
DEFAULT_LOOKS = dict.fromkeys(DEEP_2D, 8)
FROM_SCRATCH = DEEP_2D
# What runs without --only: the bundled 3-D model and the five runs of the bundled 2-D one.
BUNDLED = ("3d", "2d-deep-long", "2d-deep-longer", "2d-deep-batch", "2d-deep-real", "2d-deep-real2")


def _normalised(image: np.ndarray) -> np.ndarray:
    """``image`` as float32 with its percentiles 1 and 99.8 at 0 and 1."""
    lo, hi = np.percentile(image, [1.0, 99.8])
    return ((image.astype(np.float32) - lo) / max(float(hi - lo), 1e-6)).astype(np.float32)


def _look(rng: np.random.Generator, dims: int) -> dict:
    """Random ``synthetic_cells`` keywords: size, density, noise, blur, anisotropy."""
    r_lo = float(rng.uniform(4.0, 20.0))
    r_hi = r_lo * float(rng.uniform(1.2, 2.0))
    spacing = (float(rng.uniform(1.0, 2.2)), 1.0, 1.0) if dims == 3 else (1.0, 1.0)
    return {
        "radius": (r_lo, r_hi),
        "touching": float(rng.uniform(0.7, 1.0)),
        "photons": float(math.exp(rng.uniform(math.log(40), math.log(2000)))),
        "read_noise": float(rng.uniform(1.0, 15.0)),
        "blur": float(rng.uniform(0.5, 3.0)),
        "rim_contrast": float(rng.uniform(0.1, 0.6)),
        "spacing": spacing,
        "density": float(rng.uniform(0.5, 2.5)),
    }


def _synthetic_block(
    shape: tuple[int, ...], index: int, defaults: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Block ``index`` with its labels, normalised: the first ``defaults`` blocks have the
    default look (seed 0, then seeds 20, 21, ...: seed 1 is the held-out test)."""
    if index < defaults:
        image, labels = synthetic_cells(shape, seed=0 if index == 0 else 19 + index)
        return _normalised(image), labels
    rng = np.random.default_rng(1000 + index)
    look = _look(rng, len(shape))
    density = look.pop("density")
    extent = np.prod(np.array(shape) * np.array(look["spacing"]))
    mean_r = sum(look["radius"]) / 2
    volume = (math.pi if len(shape) == 2 else 4 / 3 * math.pi) * mean_r ** len(shape)
    n_cells = max(1, round(float(extent) / 4 / volume * density))
    image, labels = synthetic_cells(shape, n_cells=n_cells, seed=100 + index, **look)
    img = _normalised(image)
    sigma = float(rng.uniform(2.0, 5.0))
    img *= 1.0 + float(rng.uniform(0.0, 0.3)) * smooth_field(shape, sigma=sigma, seed=index)
    field = smooth_field(shape, sigma=max(shape) / 3, seed=index + 500)
    img += float(rng.uniform(0.0, 0.4)) * (1.0 + 0.5 * field)
    img = np.clip(img, 0.0, None) ** float(rng.uniform(0.7, 1.4))
    return _normalised(img), labels


REAL_LOOKS = {"2d-deep-real": 2, "2d-deep-real2": 2}


def _relooked(image: np.ndarray, seed: int) -> np.ndarray:
    """``image`` (normalised) with another look: a dimming field, gamma, noise."""
    rng = np.random.default_rng(seed)
    field = smooth_field(image.shape, sigma=max(image.shape) / 3, seed=seed)
    img = image * np.clip(1.0 + float(rng.uniform(0.2, 0.5)) * field, 0.2, None)
    img = np.clip(img, 0.0, None) ** float(rng.uniform(0.6, 1.6))
    img = img + rng.normal(0.0, float(rng.uniform(0.01, 0.08)), img.shape)
    return _normalised(img)


def _real_blocks_relooked(dims: int, looks: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 2-D real sections again, ``looks`` times, each section with its own new look."""
    blocks = _real_blocks(dims)
    return [
        (_relooked(img, 3000 + 100 * k + i), lab)
        for k in range(looks)
        for i, (img, lab) in enumerate(blocks)
    ]


def _real_blocks(dims: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The training half of ``data/nuclei``: the whole 3-D half, or its 2-D sections."""
    image = tifffile.imread(NUCLEI / "nuclei.tif")[..., :SPLIT]
    labels = tifffile.imread(NUCLEI / "nuclei_label.tif")[..., :SPLIT]
    if dims == 3:  # twice: as much weight as two synthetic blocks
        return [(_normalised(image), labels)] * 2
    return [(_normalised(image[z]), labels[z]) for z in range(16, 60)]


def _lay_side_by_side(
    blocks: list[tuple[np.ndarray, np.ndarray]], row_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One image (rows of blocks along the last axis, a gap between) and its labels."""
    depth = max(b.shape[0] for b, _ in blocks) if blocks[0][0].ndim == 3 else None
    height = max(b.shape[-2] for b, _ in blocks)
    rows: list[list[tuple[np.ndarray, np.ndarray]]] = [[]]
    for block in blocks:
        if sum(b.shape[-1] + GAP for b, _ in rows[-1]) + block[0].shape[-1] > row_width:
            rows.append([])
        rows[-1].append(block)
    rows_img, rows_lab, offset = [], [], 0
    for row in rows:
        imgs, labs = [], []
        for img, lab in row:
            pad = [(0, GAP + height - img.shape[-2]), (0, GAP)]
            if depth is not None:
                pad = [(0, depth - img.shape[0]), *pad]
            imgs.append(np.pad(img, pad, constant_values=np.nan))
            lab = np.where(lab > 0, lab.astype(np.int64) + offset, 0)
            offset = int(lab.max()) if lab.max() > 0 else offset
            labs.append(np.pad(lab, pad))
        rows_img.append(np.concatenate(imgs, axis=-1))
        rows_lab.append(np.concatenate(labs, axis=-1))
    width = max(r.shape[-1] for r in rows_img)
    pad_w = [(0, 0)] * (rows_img[0].ndim - 1)
    image = np.concatenate(
        [np.pad(r, [*pad_w, (0, width - r.shape[-1])], constant_values=np.nan) for r in rows_img],
        axis=-2,
    )
    labels = np.concatenate(
        [np.pad(r, [*pad_w, (0, width - r.shape[-1])]) for r in rows_lab], axis=-2
    )
    gap = np.isnan(image)
    image[gap] = np.random.default_rng(7).normal(0.02, 0.01, int(gap.sum()))
    return image.astype(np.float32), labels.astype(np.uint32)


def build(name: str, workdir: Path) -> tuple[str, str]:
    """Write model ``name``'s training image and labels; return their file names."""
    shape, count, _ = MODELS[name]
    dims = len(shape)
    if count == 0:
        image, labels = synthetic_cells(shape, seed=0)
    else:
        defaults = DEFAULT_LOOKS.get(name, 1)
        blocks = [_synthetic_block(shape, i, defaults) for i in range(count)] + _real_blocks(dims)
        blocks += _real_blocks_relooked(dims, REAL_LOOKS.get(name, 0))
        image, labels = _lay_side_by_side(blocks, row_width=2304 if dims == 2 else 10**6)
    img, lbl = f"cells{name}.tif", f"cells{name}_labels.tif"
    tifffile.imwrite(workdir / img, image)
    tifffile.imwrite(workdir / lbl, labels)
    print(f"{name}: training image {image.shape}, {int(labels.max())} objects", flush=True)
    return img, lbl


def _average_and_recalibrate(name: str, workdir: Path) -> None:
    """Average the fine-tuned weights with the base checkpoint's, then measure the labelling
    defaults again on training data: the default-look synthetic block and the real half.

    The fine-tuned 3-D model alone gained on real nuclei but lost on the small default
    cells; the average kept most of both (see the README, "Bundled models").
    """
    out = workdir / f"cells{name}.pt"
    average_weights(out, workdir / f"base{name}.pt", weight=AVERAGE[name], output=out)
    shape = MODELS[name][0]
    blocks = [_synthetic_block(shape, 0), *_real_blocks(len(shape))[:1]]
    image, labels = _lay_side_by_side(blocks, row_width=10**6)
    recalibrate(out, image, labels)
    print(f"averaged {out.name} with base{name}.pt ({AVERAGE[name]}) and recalibrated", flush=True)


# Models whose labelling defaults are chosen by a rule (_choose_labelling) after training.
CHOOSE_LABELLING = {"2d-deep-fine", "2d-deep-fine2", "2d-deep-real", "2d-deep-real2"}
SYNTHETIC_FLOOR = 0.9  # the AP@0.5 promised on the default-look synthetic cells
SELECTION_SECTIONS = range(25, 55, 5)  # the sections benchmarks/bundled_real.py scores


def _embeddings(model: stitchsafe.Model, image: np.ndarray, work: Path, name: str) -> np.ndarray:
    """``predict``'s embeddings of ``image`` (no labels), read back whole."""
    tifffile.imwrite(work / f"{name}.tif", image)
    result = stitchsafe.predict(
        model, work / f"{name}.tif", output=work / f"{name}.zarr", device="cpu",
        overwrite=True, progress=False, labels=False, pyramid=False,
    )  # fmt: skip
    return np.asarray(zarr.open_array(str(Path(result.output) / result.embeddings), mode="r"))


def _pooled_ap(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """AP@0.5 over the objects of every (truth, labels) pair together."""
    truth = [np.where(t > 0, t.astype(np.int64) + 100_000 * i, 0) for i, (t, _) in enumerate(pairs)]
    found = [np.where(f > 0, f.astype(np.int64) + 100_000 * i, 0) for i, (_, f) in enumerate(pairs)]
    return average_precision(np.stack(truth), np.stack(found))


def _choose_labelling(name: str, workdir: Path) -> None:
    """Store the labelling defaults that label the real training sections best among those
    that keep the synthetic promise: AP@0.5 >= ``SYNTHETIC_FLOOR`` on the default-look
    synthetic cells of seed 0 (training data; seed 1 is the held-out test). Candidates:
    :func:`label_candidates`, the seeded ones also with a seed foreground cut of 0.95.
    Only training data is scored: sections ``SELECTION_SECTIONS`` of the half ``x < 128``.
    """
    out = workdir / f"cells{name}.pt"
    model = stitchsafe.load_model(out)  # loaded once for the seven predictions
    meta = model.metadata
    work = workdir / f"choose-{name}"
    work.mkdir(exist_ok=True)
    syn_image, syn_truth = synthetic_cells((512, 512), seed=0)
    synthetic = [(syn_truth, _embeddings(model, syn_image, work, "synthetic"))]
    image = tifffile.imread(NUCLEI / "nuclei.tif")[..., :SPLIT]
    truth = tifffile.imread(NUCLEI / "nuclei_label.tif")[..., :SPLIT]
    real = [(truth[z], _embeddings(model, image[z], work, f"z{z}")) for z in SELECTION_SECTIONS]
    candidates = [c for c in label_candidates(meta["loss"]["delta_d"]) if "seed_threshold" in c]
    cut = SEED_FOREGROUND  # each seeded candidate once more with a seed cut of 0.95
    candidates += [
        {**c, "seed_foreground_threshold": 0.95}
        for c in candidates
        if c["seed_foreground_threshold"] == cut
    ]
    scored = []
    for c in candidates:
        params = resolve_label_params(
            {**meta["labels"], **c}, meta["channel_roles"], channels=meta["channels_out"]
        )
        aps = [_pooled_ap([(t, label_array(e, params=params)) for t, e in pairs])
               for pairs in (synthetic, real)]  # fmt: skip
        scored.append({**c, "ap50_synthetic": round(aps[0], 4), "ap50_real": round(aps[1], 4)})
    kept = [c for c in scored if c["ap50_synthetic"] >= SYNTHETIC_FLOOR] or scored
    best = max(kept, key=lambda c: (c["ap50_real"], c["ap50_synthetic"]))
    params = {
        k: best[k] for k in ("threshold", "seed_threshold", "seed_foreground_threshold", "grow")
    }
    rule = (
        f"best AP@0.5 on the real training sections z {list(SELECTION_SECTIONS)} of x < {SPLIT}"
        f" among the candidates with AP@0.5 >= {SYNTHETIC_FLOOR} on synthetic_cells seed 0"
    )
    set_labelling_defaults(out, params, calibration={"rule": rule, "candidates": scored})
    print(f"{out.name}: labelling {params} ({best['ap50_real']} real, "
          f"{best['ap50_synthetic']} synthetic)", flush=True)  # fmt: skip


def _base_checkpoint(name: str, workdir: Path) -> str:
    """Write the checkpoint to fine-tune (``base2d.pt``, ``base3d.pt``); return its name."""
    name = name.split("-")[0]
    path = f"stitchsafe/models/weights/cells{name}.pt"
    data = subprocess.run(
        ["git", "show", f"{BASE_REVISION}:{path}"], cwd=REPO, check=True, capture_output=True
    ).stdout
    if hashlib.sha256(data).hexdigest() != BASE_SHA256[name]:
        raise SystemExit(f"{path} at {BASE_REVISION} is not the expected checkpoint.")
    (workdir / f"base{name}.pt").write_bytes(data)
    return f"base{name}.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--only", choices=sorted(MODELS))
    parser.add_argument("--build-only", action="store_true", help="write the data, train nothing")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for name, (_, count, flags) in MODELS.items():
        if (args.only or name) != name or (not args.only and name not in BUNDLED):
            continue
        img, lbl = build(name, args.workdir)
        if args.build_only:
            continue
        # Relative names, run inside the work folder: the recorded command is portable.
        tuned = count and name not in FROM_SCRATCH
        init = ["--init", _base_checkpoint(name, args.workdir)] if tuned else []
        if name in CONTINUES:
            init = ["--init", f"cells{CONTINUES[name]}.pt"]
        quiet = ["--no-progress"] if count else []  # as the recorded commands have it
        command = [
            "stitchsafe", "train", "--image", img, "--labels", lbl, *init,
            "--output", f"cells{name}.pt", "--overwrite", *quiet, *flags,
        ]  # fmt: skip
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True, stdout=sys.stdout, cwd=args.workdir)
        if name in AVERAGE:
            _average_and_recalibrate(name, args.workdir)
        if name in CHOOSE_LABELLING:
            _choose_labelling(name, args.workdir)


if __name__ == "__main__":
    main()
