"""Reproduce Rumberger et al. (ICCV 2021) with stitchsafe: same-looking objects and depth.

A valid-conv U-Net with ``l`` pooling layers of factor ``f`` is equivariant to shifts by
the period ``P = f^l`` per axis, and only to those. So identical objects whose positions
are congruent modulo ``P`` get identical embeddings, and a network can tell apart at most
``prod(P) = f^(d*l)`` same-looking objects (``d`` spatial axes), however it is trained.

For depths ``l = 1, 2, 3`` (2-D, ``f = 2``, so ``P = 2, 4, 8``) this script trains the
built-in U-Net with ``stitchsafe.training`` on identical discs spaced ``n * P - 1`` apart
(every object at another phase), then embeds a fresh layout of the same discs and counts:

- ``phases``: distinct positions modulo ``P`` among the objects (the upper bound);
- ``same_phase_max``: the largest distance between the mean embeddings of two objects at
  the same phase (float rounding only: convolutions round differently at different
  offsets), and ``other_phase_min``: the smallest between objects at different phases;
- ``distinct``: groups of objects whose mean embeddings lie within 1 % of the embedding
  scale of each other — it must equal ``phases``, never more;
- ``separated``: groups left after joining objects closer than the labelling threshold
  (what the labels can tell apart);
- ``max_distance_nP``: the largest distance between the mean embeddings of discs spaced
  ``n * P`` apart (all congruent): zero up to float rounding.

It prints one JSON line per depth and saves ``same_looking.png`` (mean embedding of each
object, first two channels, coloured by phase). Takes about 5 minutes on 2 CPU cores.

Usage::

    python examples/paper_same_looking.py --workdir /tmp/paper [--iterations 1500] [--reuse]

``--reuse`` evaluates models already trained in the work folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from stitchsafe.engine import Normalization, whole_volume_forward
from stitchsafe.models import load_model, resolve_geometry
from stitchsafe.training import same_looking_objects, train

SHAPE = (160, 160)  # training layout
TEST_SHAPE = (240, 240)  # evaluation layouts: room for many objects away from the borders
RADIUS = 2.5
SPACING = 7  # = n * P - 1 for P = 2, 4, 8 (n = 4, 2, 1): every object at another phase
CONGRUENT = 8  # = n * P for P = 2, 4, 8: every object at the same phase


def object_means(emb: np.ndarray, labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mean embedding ``(N, E)`` of each kept object id (ids in ``keep``)."""
    flat = labels.ravel()
    sums = np.stack([np.bincount(flat, weights=e.ravel(), minlength=flat.max() + 1) for e in emb])
    counts = np.bincount(flat, minlength=flat.max() + 1)
    return (sums / np.maximum(counts, 1)).T[keep]


def interior_objects(labels: np.ndarray, margin: int) -> np.ndarray:
    """Ids of objects at least ``margin`` voxels from every border.

    With ``margin = halo + spacing`` an object's receptive field holds neither padding nor
    the end of the grid, so all kept objects see the same surroundings.
    """
    ids = []
    for i in range(1, int(labels.max()) + 1):
        where = np.argwhere(labels == i)
        if (
            where.size
            and (where.min(0) >= margin).all()
            and (where.max(0) < np.array(labels.shape) - margin).all()
        ):
            ids.append(i)
    return np.array(ids, int)


def groups(means: np.ndarray, radius: float) -> int:
    """Connected components of the graph joining objects closer than ``radius``."""
    from scipy.sparse.csgraph import connected_components

    d = np.linalg.norm(means[:, None] - means[None], axis=-1)
    return int(connected_components(d < radius, directed=False)[0])


def embed(model_path: Path, image: np.ndarray) -> tuple[np.ndarray, dict]:
    model = load_model(model_path, device="cpu")
    geometry, _ = resolve_geometry(model)
    meta = model.metadata or {}
    norm = Normalization.from_dict(meta["normalization"]) if meta.get("normalization") else None
    out = whole_volume_forward(image[None], model, geometry, transform=norm)
    roles = meta.get("channel_roles") or ["embedding"] * out.shape[0]
    return out[[i for i, r in enumerate(roles) if r == "embedding"]], meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--reuse", action="store_true", help="keep models already trained")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    train_image, train_labels = same_looking_objects(SHAPE, spacing=SPACING, radius=RADIUS)
    # A fresh layout: shifted, so the test objects sit elsewhere than the training ones.
    test_image, test_labels = same_looking_objects(
        TEST_SHAPE, spacing=SPACING, radius=RADIUS, margin=6
    )
    congruent_image, congruent_labels = same_looking_objects(
        TEST_SHAPE, spacing=CONGRUENT, radius=RADIUS, margin=5
    )
    rows, pictures = [], []
    for depth in (1, 2, 3):
        model_path = args.workdir / f"same_looking_d{depth}.pt"
        start = time.perf_counter()
        if not (args.reuse and model_path.exists()):
            train(
                train_image,
                train_labels,
                output=model_path,
                dims=2,
                pooling_factors=[(2, 2)] * depth,
                iterations=args.iterations,
                overwrite=True,
                progress=False,
                calibrate=False,
            )
        seconds = time.perf_counter() - start
        emb, meta = embed(model_path, test_image)
        period = meta["period"]
        halo = max(h for pair in meta["halo"] for h in pair)
        keep = interior_objects(test_labels, halo + SPACING + 1)
        means = object_means(emb, test_labels, keep)
        scale = float(np.abs(emb).max())
        centres = np.array([np.argwhere(test_labels == i).mean(0).round() for i in keep], int)
        phase_of = [tuple(c % p for c, p in zip(centre, period)) for centre in centres]
        phases = set(phase_of)
        same = np.array([[a == b for b in phase_of] for a in phase_of])
        dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
        off_diagonal = ~np.eye(len(phase_of), dtype=bool)
        emb_c, _ = embed(model_path, congruent_image)
        keep_c = interior_objects(congruent_labels, halo + CONGRUENT + 1)
        means_c = object_means(emb_c, congruent_labels, keep_c)
        max_c = float(np.linalg.norm(means_c - means_c[0], axis=1).max())
        threshold = float(meta["loss"]["delta_d"])
        row = {
            "depth": depth,
            "period": period,
            "bound_f^(d*l)": int(np.prod(period)),
            "objects": int(keep.size),
            "phases": len(phases),
            "same_phase_max": float(dist[same & off_diagonal].max(initial=0.0)),
            "other_phase_min": float(dist[~same].min()),
            "distinct": groups(means, 1e-2 * scale),
            "separated": groups(means, threshold),
            "separation_threshold": threshold,
            "max_distance_nP": max_c,
            "embedding_scale": scale,
            "train_seconds": round(seconds, 1) if seconds > 1 else None,
        }
        rows.append(row)
        pictures.append((depth, means, centres, period))
        print(json.dumps(row), flush=True)
    _picture(args.workdir / "same_looking.png", pictures)
    (args.workdir / "same_looking.json").write_text(json.dumps(rows, indent=2))
    print(f"figure: {args.workdir / 'same_looking.png'}")


def _picture(path: Path, panels: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (depth, means, centres, period) in zip(axes, panels):
        phase = (centres[:, 0] % period[0]) * period[1] + centres[:, 1] % period[1]
        ax.scatter(means[:, 0], means[:, 1], c=phase, cmap="tab20", s=18)
        ax.set_title(f"depth {depth}, P = {period[0]}: {len(set(phase))} phases", fontsize=10)
        ax.set_xlabel("embedding 0")
        ax.set_ylabel("embedding 1")
    fig.suptitle("Mean embedding of identical discs, coloured by position modulo P")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
