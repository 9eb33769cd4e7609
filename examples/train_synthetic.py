"""Train a model with default settings on synthetic cells and check it on held-out data.

A script, not a test: it prints the training time and AP@0.5 (matching at IoU > 0.5,
``TP / (TP + FP + FN)``) on a held-out synthetic volume of:

- ``stitchsafe_labels``: the instance labels ``predict`` writes with the model's metadata
  defaults (neighbour links below the threshold calibrated on the training data);
- ``foreground_components``: connected components of ``sigmoid(foreground) > 0.5``
  (merges touching cells: a floor for what the embeddings add);
- ``embedding_clusters``: inside each foreground component, greedy local mean-shift
  clustering of the embeddings with radius ``delta_d``;
- ``links_t*``: neighbour links at fixed thresholds, for comparison.

Usage::

    python examples/train_synthetic.py --workdir /tmp/train-synthetic [--iterations N]
    python examples/train_synthetic.py --model stitchsafe/models/weights/cells3d.pt --test-seed 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import zarr
from scipy import ndimage

import stitchsafe
from stitchsafe.labels import average_precision
from stitchsafe.models import load_model
from stitchsafe.training import synthetic_cells, train


def embedding_instances(
    emb: np.ndarray, fg: np.ndarray, *, radius: float, min_size: int
) -> np.ndarray:
    """Greedy local mean-shift inside each foreground component.

    Seeds are taken deepest-first (largest distance to the background), where embeddings
    are most typical of their object; each seed's cluster is the free voxels within
    ``radius`` of its mean-shifted centre, split into connected pieces.
    """
    comps, _ = ndimage.label(fg)
    depth = ndimage.distance_transform_edt(fg)
    out = np.zeros(fg.shape, np.uint32)
    next_id = 1
    for index, box in enumerate(ndimage.find_objects(comps), start=1):
        if box is None:
            continue
        mask = comps[box] == index
        e = emb[(slice(None), *box)][:, mask].T  # (voxels, E)
        order = np.argsort(-depth[box][mask], kind="stable")
        free = np.ones(len(e), bool)
        coords = np.argwhere(mask)
        for seed_at in order:
            if free.sum() < min_size:
                break
            if not free[seed_at]:
                continue
            centre = e[seed_at]
            for _ in range(5):
                near = free & (np.linalg.norm(e - centre, axis=1) < radius)
                centre = e[near].mean(0) if near.any() else centre
            near = free & (np.linalg.norm(e - centre, axis=1) < radius)
            near[seed_at] = True
            free &= ~near
            part = np.zeros(mask.shape, bool)
            part[tuple(coords[near].T)] = True
            pieces, m = ndimage.label(part)
            for j in range(1, m + 1):
                piece = pieces == j
                if piece.sum() >= max(min_size, 1):
                    out[box][piece] = next_id
                    next_id += 1
    return out


def neighbour_distances(emb: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Median embedding distance of face neighbours inside objects and across touching ones."""
    inside, across = [], []
    for a in range(labels.ndim):
        lo = [slice(None)] * labels.ndim
        hi = [slice(None)] * labels.ndim
        lo[a], hi[a] = slice(0, -1), slice(1, None)
        la, lb = labels[tuple(lo)], labels[tuple(hi)]
        d = np.sqrt(((emb[(slice(None), *lo)] - emb[(slice(None), *hi)]) ** 2).sum(0))
        inside.append(d[(la > 0) & (la == lb)])
        across.append(d[(la > 0) & (lb > 0) & (la != lb)])
    i, c = np.concatenate(inside), np.concatenate(across)
    return {
        "neighbour_distance_inside_median": round(float(np.median(i)), 3),
        "neighbour_distance_inside_p99": round(float(np.percentile(i, 99)), 3),
        "neighbour_distance_across_median": round(float(np.median(c)), 3) if c.size else None,
    }


def link_instances(
    emb: np.ndarray, fg: np.ndarray, *, threshold: float, min_size: int
) -> np.ndarray:
    """Components of face-adjacent foreground voxels whose embeddings are < threshold apart.

    The rule of :mod:`stitchsafe.labels`, written out here so the script stands alone.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    index = np.arange(fg.size).reshape(fg.shape)
    rows, cols = [], []
    for a in range(fg.ndim):
        lo = [slice(None)] * fg.ndim
        hi = [slice(None)] * fg.ndim
        lo[a], hi[a] = slice(0, -1), slice(1, None)
        d = np.sqrt(((emb[(slice(None), *lo)] - emb[(slice(None), *hi)]) ** 2).sum(0))
        link = fg[tuple(lo)] & fg[tuple(hi)] & (d < threshold)
        rows.append(index[tuple(lo)][link])
        cols.append(index[tuple(hi)][link])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(r.size, bool), (r, c)), shape=(fg.size, fg.size))
    _, comp = connected_components(graph, directed=False)
    comp = np.where(fg.ravel(), comp + 1, 0)
    sizes = np.bincount(comp)
    comp[sizes[comp] < max(min_size, 1)] = 0
    _, out = np.unique(comp, return_inverse=True)
    return out.reshape(fg.shape).astype(np.uint32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/train-synthetic")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--shape", default="48,128,128")
    parser.add_argument("--model", default=None, help="evaluate this model; do not train")
    parser.add_argument(
        "--test-seed", type=int, default=1, help="held-out volume's seed (training uses 0)"
    )
    args = parser.parse_args()
    if args.test_seed == 0:
        parser.error("--test-seed 0 is the training data, not held out")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(s) for s in args.shape.split(","))

    image, labels = synthetic_cells(shape, seed=0)
    test_image, test_labels = synthetic_cells(shape, seed=args.test_seed)
    zarr.create_array(
        str(work / "test.zarr"), data=test_image, chunks=(16, 64, 64)[-len(shape) :], overwrite=True
    )

    if args.model is None:
        kwargs = {} if args.iterations is None else {"iterations": args.iterations}
        start = time.perf_counter()
        result = train(image, labels, output=work / "model.pt", overwrite=True, **kwargs)
        seconds = time.perf_counter() - start
        model_path, meta = result.output, result.metadata
    else:
        model_path, seconds = args.model, float("nan")
        loaded = load_model(model_path)
        assert loaded.metadata is not None
        meta = loaded.metadata

    pred = stitchsafe.predict(
        model_path,
        work / "test.zarr",
        output=work / "pred.zarr",
        device="cpu",
        overwrite=True,
        progress=False,
    )
    out = np.asarray(zarr.open_array(str(Path(pred.output) / pred.embeddings), mode="r"))
    fg = 1 / (1 + np.exp(-out[meta["channel_roles"].index("foreground")])) > 0.5
    cc, _ = ndimage.label(fg)
    inst = embedding_instances(
        out[:-1], fg, radius=meta["loss"]["delta_d"], min_size=meta["labels"]["min_size"]
    )
    # The labels predict wrote with the model's metadata defaults (calibrated threshold);
    # the same rule computed here when this predict does not write labels.
    labels_path = getattr(pred, "labels", None)
    if labels_path:
        product = np.asarray(zarr.open_array(str(Path(pred.output) / labels_path), mode="r"))
    else:
        product = link_instances(
            out[:-1], fg, threshold=meta["labels"]["threshold"], min_size=meta["labels"]["min_size"]
        )
    by_threshold = {
        f"ap50_links_t{t}": round(
            average_precision(
                test_labels,
                link_instances(out[:-1], fg, threshold=t, min_size=meta["labels"]["min_size"]),
            ),
            4,
        )
        for t in (0.25, 0.5, 0.75, 1.5)
    }
    fg_iou = (fg & (test_labels > 0)).sum() / (fg | (test_labels > 0)).sum()
    summary = {
        "shape": list(shape),
        "test_seed": args.test_seed,
        "train_objects": int(labels.max()),
        "test_objects": int(test_labels.max()),
        "iterations": meta["training"]["iterations"],
        "window": meta["training"]["window"],
        "input_window": meta["training"]["input_window"],
        "train_seconds": round(seconds, 1),
        "final_loss": round(meta["training"]["final_loss"], 4),
        "foreground_iou": round(float(fg_iou), 4),
        "label_threshold": meta["labels"]["threshold"],
        "calibration_ap50_train": (meta["labels"].get("calibration") or {}).get("ap50"),
        "ap50_stitchsafe_labels": round(average_precision(test_labels, product), 4),
        "objects_found": int(product.max()),
        "ap50_foreground_components": round(average_precision(test_labels, cc), 4),
        "ap50_embedding_clusters": round(average_precision(test_labels, inst), 4),
        **by_threshold,
        **neighbour_distances(out[:-1], test_labels),
        "model": model_path,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
