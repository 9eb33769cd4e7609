"""Train the built-in valid-conv U-Net so that its embeddings stitch exactly.

:func:`train` draws crops at every phase with an output window larger than the period
(:mod:`stitchsafe.training_data` enforces the paper's rule), normalises intensities once
with statistics of the whole training image (as :func:`stitchsafe.normalize.compute_normalization`
does at prediction), never per crop, minimises the discriminative loss plus a foreground
term (:mod:`stitchsafe.losses`), measures the instance-labelling threshold that works best on
the training data, and writes a stitchsafe checkpoint whose metadata ``predict`` needs no
flags beside.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .errors import StitchsafeError
from .geometry import ModelGeometry, normalize_pooling_factors
from .training_data import (
    ArrayVolume,
    augment,
    augmentations,
    check_training_window,
    contact_voxels,
    default_min_size,
    describe_source,
    infer_dims,
    load_training_data,
    sample_origin,
)

if TYPE_CHECKING:
    from .losses import DiscriminativeLoss
    from .volume import Volume

__all__ = [
    "DEFAULTS",
    "TrainResult",
    "calibrate_labels",
    "check_training_window",
    "label_candidates",
    "recalibrate",
    "train",
]

Shape = tuple[int, ...]
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Defaults:
    """Architecture, window and length used when ``train`` gets no tuning arguments."""

    pooling_factors: tuple[Shape, ...]
    features: int
    window: Shape
    iterations: int


# Small and fast on 2 CPU cores (about 0.03 s per 2-D and 0.5 s per 3-D iteration);
# anisotropic first level in 3-D because microscopy z-steps are often coarser than the
# pixel size. 2-D iterations are cheap, and many more of them pay off.
DEFAULTS = {
    2: Defaults(((2, 2), (2, 2)), features=16, window=(64, 64), iterations=8000),
    3: Defaults(((1, 2, 2), (2, 2, 2)), features=8, window=(16, 48, 48), iterations=1500),
}
EMBEDDING_DIMS = 6
LEARNING_RATE = 2e-3
# "labels": every labelled voxel is foreground; "separated": voxels where two instances
# touch are background, so that foreground alone already splits touching objects.
FOREGROUND_TARGETS = ("labels", "separated")


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` wrote, and how the training went."""

    output: str
    log: str
    export: str | None
    metadata: dict[str, Any] = field(repr=False)
    final_loss: float
    iterations: int
    seconds: float
    device: str
    window: Shape
    input_window: Shape

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "log": self.log,
            "export": self.export,
            "final_loss": self.final_loss,
            "iterations": self.iterations,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "window": list(self.window),
            "input_window": list(self.input_window),
            "period": self.metadata["period"],
        }


def default_window(
    preferred: Sequence[int], geometry: ModelGeometry, volume_shape: Sequence[int]
) -> Shape:
    """``preferred`` output window, shrunk where the image is too small for it at all phases.

    Never below one voxel more than the period (the training rule's minimum).

    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(1, 2, 2), (2, 2, 2)])
    >>> default_window((16, 48, 48), g, (100, 100, 40))
    (16, 48, 36)
    """
    wanted = [max(w, p + 1) for w, p in zip(preferred, geometry.period)]
    for a, p in enumerate(geometry.period):
        while wanted[a] > p + 1:
            out = geometry.output_shape(geometry.input_for_output(wanted))
            if out[a] + p - 1 <= volume_shape[a]:
                break
            wanted[a] = max(p + 1, wanted[a] - p)
    return tuple(wanted)


WHOLE_IMAGE_CALIBRATION = 8_000_000  # voxels: calibrate on the whole training image
GROW_STEPS = 6  # enough to fill the border zone seeds leave out (measured: 3 < 6 = 10)
SEED_FOREGROUND = 0.9


def label_candidates(delta_d: float) -> list[dict[str, Any]]:
    """Labelling parameters :func:`calibrate_labels` tries, as fractions of ``delta_d``.

    Plain links at seven thresholds, and the seeded variant (seeds whose neighbours all lie
    closer than ``seed_threshold``; ``GROW_STEPS`` of growth) at twelve pairs, each with a
    seed foreground cut of 0.9 and of 0.8 (a lower cut found more of the small cells when
    the foreground channel learned the ``separated`` target).

    >>> c = label_candidates(1.5)
    >>> len(c), c[0], c[7]["seed_threshold"], c[7]["grow"], c[8]["seed_foreground_threshold"]
    (31, {'threshold': 0.25}, 0.375, 6, 0.8)
    """
    links = [
        {"threshold": round(delta_d * f, 4)}
        for f in (1 / 6, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0, 4 / 3)
    ]
    seeded = [
        {
            "threshold": round(delta_d * f, 4),
            "seed_threshold": round(delta_d * g, 4),
            "seed_foreground_threshold": cut,
            "grow": GROW_STEPS,
        }
        for f in (1 / 6, 1 / 4, 1 / 3, 1 / 2)
        for g in (1 / 4, 1 / 3, 1 / 2)
        for cut in (SEED_FOREGROUND, 0.8)
    ]
    return links + seeded


def calibrate_labels(
    net: Any,
    padded: np.ndarray,
    labels: np.ndarray,
    geometry: ModelGeometry,
    *,
    channel_roles: Sequence[str],
    window: Sequence[int],
    min_size: int,
    delta_d: float,
    crops: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """The labelling parameters that give the best AP@0.5 on crops of the training data.

    The plain labelling links face-neighbouring foreground voxels whose embeddings are
    closer than a threshold (:func:`stitchsafe.instances.label_array`). In theory
    ``delta_d`` separates them once the loss is zero; in practice a trained network changes
    its embedding over a few voxels at an object's border, so neighbours across a border
    are much closer than the objects' means, and one chain of close neighbours merges two
    touching objects. The seeded variant links only interior voxels and grows from them;
    on synthetic 3-D cells it lifted AP@0.5 from 0.52 to 0.82 with the same network.
    Candidates: :func:`label_candidates`.

    Parameters
    ----------
    net
        The trained U-Net (any device); run in eval mode without gradients.
    padded
        The normalised training image ``(C, *spatial)``, padded by the halo.
    labels
        The training labels ``(*spatial)``.
    window
        Output window of each crop (shrunk to the image); ``crops`` random crops. Images
        of at most ``WHOLE_IMAGE_CALIBRATION`` voxels are scored whole instead, in one
        forward pass.

    Returns
    -------
    dict
        ``params`` (the best candidate's labelling parameters), ``ap50``, every
        ``candidate`` with its ``ap50``, ``crops`` and ``window``.
    """
    import torch

    from .instances import LabelParams, label_array
    from .metrics import average_precision

    rng = np.random.default_rng(seed)
    shape = labels.shape
    candidates = label_candidates(delta_d)
    scores = np.zeros(len(candidates))
    device = next(net.parameters()).device
    whole = math.prod(shape) <= WHOLE_IMAGE_CALIBRATION
    if whole:
        # Small enough for one forward pass: score whole objects, not crop fragments
        # (large objects cut by crops favour over-merging thresholds).
        crops, out_window = 1, tuple(int(v) for v in shape)
        in_window = geometry.input_for_output(out_window)
        extra = [(0, 0)] + [(0, n - p) for n, p in zip(in_window, padded.shape[1:])]
        source = np.pad(padded, extra, mode="reflect") if any(e for _, e in extra) else padded
    else:
        out_window = geometry.output_shape(
            geometry.input_for_output(default_window(window, geometry, shape))
        )
        in_window = geometry.input_for_output(out_window)
        source = padded
    was_training = net.training
    net.eval()
    try:
        for _ in range(crops):
            o = (0,) * len(shape) if whole else sample_origin(rng, shape, out_window)
            x = source[(slice(None), *(slice(b, b + n) for b, n in zip(o, in_window)))]
            with torch.no_grad():
                out = net(torch.from_numpy(np.ascontiguousarray(x))[None].to(device))
            emb = out[0].cpu().numpy()[(slice(None), *(slice(0, n) for n in out_window))]
            gt = labels[tuple(slice(b, b + n) for b, n in zip(o, out_window))]
            for i, c in enumerate(candidates):
                params = LabelParams(**c, min_size=min_size, channel_roles=tuple(channel_roles))
                scores[i] += average_precision(gt, label_array(emb, params=params))
    finally:
        net.train(was_training)
    scores /= crops
    best = int(np.argmax(scores))
    return {
        "params": candidates[best],
        "ap50": round(float(scores[best]), 4),
        "candidates": [{**c, "ap50": round(float(v), 4)} for c, v in zip(candidates, scores)],
        "crops": crops,
        "window": list(out_window),
        "whole_image": whole,
    }


def _fit(
    net: Any,
    batch: Callable[[], tuple[Any, Any]],
    loss_fn: DiscriminativeLoss,
    *,
    iterations: int,
    lr: float,
    log_path: Path,
    progress: bool,
) -> tuple[list[float], float]:
    """Adam with a cosine-decayed learning rate; one JSON line per step in ``log_path``."""
    import torch
    from tqdm.auto import tqdm

    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations, lr * 0.05)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    losses: list[float] = []
    start = time.perf_counter()
    with (
        open(log_path, "w", encoding="utf-8") as log,
        tqdm(
            total=iterations, desc="train", unit="it", file=sys.stderr, disable=not progress
        ) as bar,
    ):
        for it in range(1, iterations + 1):
            x, y = batch()
            terms = loss_fn(net(x), y[:, 0], y[:, 1])
            optimiser.zero_grad(set_to_none=True)
            terms.total.backward()
            # The distance hinge can spike early; clipping keeps Adam's first steps sane.
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            optimiser.step()
            schedule.step()
            values = terms.to_floats()
            if not math.isfinite(values["total"]):
                raise StitchsafeError(
                    f"training diverged at iteration {it} (loss {values['total']}); "
                    "try a smaller learning rate."
                )
            losses.append(values["total"])
            record = {"iteration": it, "loss": values.pop("total"), **values}
            record["lr"] = float(schedule.get_last_lr()[0])
            record["seconds"] = round(time.perf_counter() - start, 3)
            log.write(json.dumps(record) + "\n")
            if it % 10 == 0 or it == iterations:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
            bar.update(1)
    return losses, time.perf_counter() - start


def train(
    image: np.ndarray | PathLike,
    labels: np.ndarray | PathLike,
    *,
    output: PathLike,
    dims: int | None = None,
    depth: int | None = None,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    features: int | None = None,
    embedding_dims: int = EMBEDDING_DIMS,
    iterations: int | None = None,
    window: Sequence[int] | int | None = None,
    batch_size: int = 1,
    lr: float = LEARNING_RATE,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    export_pt2: PathLike | None = None,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    foreground_target: str = "labels",
    normalize: str = "percentile",
    percentiles: tuple[float, float] = (1.0, 99.8),
    pad_mode: str = "reflect",
    image_key: str | None = None,
    labels_key: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    calibrate: bool = True,
    command: str | None = None,
    init: PathLike | None = None,
) -> TrainResult:
    """Train the built-in U-Net with the discriminative loss; write a stitchsafe checkpoint.

    Parameters
    ----------
    image
        ``(*spatial)`` or ``(C, *spatial)`` array, or a path :func:`stitchsafe.io.open_volume`
        reads (zarr, OME-Zarr, TIFF; ``image_key`` selects inside a group).
    labels
        Instance ids of the same spatial shape (0 = background), array or path.
    output
        Checkpoint path; the loss log goes beside it as ``<stem>.log.jsonl``.
    dims
        Spatial axes (2 or 3); default: those of the labels.
    depth, pooling_factors
        U-Net levels and per-level (per-axis) pooling factors; default :data:`DEFAULTS`. A
        depth alone means factor 2 on every axis.
    features
        Feature maps at the first level (doubled per level).
    embedding_dims
        Embedding channels; one foreground channel is added.
    iterations, batch_size, lr, seed
        Optimiser steps (Adam, cosine-decayed learning rate; default per dimensionality,
        :data:`DEFAULTS`), crops per step, learning rate, and the seed of initialisation,
        crops and augmentation.
    window
        Output window per axis (int: all axes); must be strictly larger than the period.
        The input crop is the smallest valid input covering it, and the loss uses that
        input's whole raw output (at least ``window``). Default: :data:`DEFAULTS`, shrunk
        where the image is too small.
    device
        ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    progress
        Show a progress bar on stderr.
    export_pt2
        Also write a ``torch.export`` program (``.pt2``) with the same metadata.
    delta_v, delta_d
        Margins of the discriminative loss.
    foreground_target
        Target of the foreground channel: ``"labels"`` (default: every labelled voxel) or
        ``"separated"`` (labelled voxels except those touching another instance, so that
        the foreground alone keeps touching objects apart; in 600-iteration trials on
        synthetic cells it was no better than ``"labels"``).
    normalize, percentiles
        Intensity normalisation computed once over the whole image (recorded in the
        metadata; ``predict`` recomputes it the same way on its input).
    pad_mode
        How the image is extended beyond its border so crops can reach it (``numpy.pad``
        mode; ``predict`` pads the same way by default).
    threads
        CPU threads for torch (default: the CPUs this process may use).
    overwrite
        Replace existing output files.
    calibrate
        Measure the labelling threshold on crops of the training data
        (:func:`calibrate_labels`); otherwise record ``delta_d`` as the threshold.
    command
        The command line to record in the metadata (the CLI passes its own); default: a
        Python call with the arguments.
    init
        Start from the weights of this stitchsafe checkpoint instead of a random
        initialisation (continue or fine-tune a model); its architecture must be the one
        these arguments build. Its SHA-256 is recorded.

    Returns
    -------
    TrainResult
    """
    import torch

    from . import __version__
    from .engine import _cpu_count, resolve_device
    from .losses import DiscriminativeLoss
    from .model import save_checkpoint, save_export, unet_metadata
    from .normalize import compute_normalization
    from .padding import PAD_MODES
    from .unet import UNetConfig, build_unet

    arguments = {
        "image": describe_source(image),
        "labels": describe_source(labels),
        "output": os.fspath(output),
        "dims": dims,
        "depth": depth,
        "pooling_factors": pooling_factors,
        "features": features,
        "embedding_dims": embedding_dims,
        "iterations": iterations,
        "window": window,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "device": device,
        "export_pt2": os.fspath(export_pt2) if export_pt2 is not None else None,
        "delta_v": delta_v,
        "delta_d": delta_d,
        "foreground_target": foreground_target,
        "normalize": normalize,
        "percentiles": list(percentiles),
        "pad_mode": pad_mode,
        "image_key": image_key,
        "labels_key": labels_key,
        "calibrate": calibrate,
        "init": os.fspath(init) if init is not None else None,
    }
    arguments = json.loads(json.dumps(arguments))  # tuples -> lists, as stored
    if command is None:
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items() if v is not None)
        command = f"stitchsafe.train.train({shown})"
    if batch_size < 1:
        raise StitchsafeError(f"batch_size must be at least 1, got {batch_size}.")
    if embedding_dims < 1:
        raise StitchsafeError(f"embedding_dims must be at least 1, got {embedding_dims}.")
    if not lr > 0:
        raise StitchsafeError(f"the learning rate must be positive, got {lr}.")
    out_path = Path(output)
    log_path = out_path.with_name(out_path.stem + ".log.jsonl")
    for target in (out_path, log_path, Path(export_pt2) if export_pt2 is not None else None):
        if target is not None and target.exists() and not overwrite:
            raise StitchsafeError(
                f"{target} already exists; pass overwrite (--overwrite) to replace it."
            )
    if foreground_target not in FOREGROUND_TARGETS:
        choices = ", ".join(FOREGROUND_TARGETS)
        raise StitchsafeError(f"foreground_target {foreground_target!r} is not one of {choices}.")
    if pad_mode not in PAD_MODES:
        raise StitchsafeError(f"pad_mode {pad_mode!r} is not one of {', '.join(PAD_MODES)}.")

    dims = dims if dims is not None else infer_dims(labels, labels_key)
    if dims not in DEFAULTS:
        raise StitchsafeError(f"training supports 2-D and 3-D images, not dims={dims}.")
    defaults = DEFAULTS[dims]
    iterations = defaults.iterations if iterations is None else iterations
    if iterations < 1:
        raise StitchsafeError(f"iterations must be at least 1, got {iterations}.")
    if pooling_factors is None and depth is None:
        pf = defaults.pooling_factors
    else:
        pf = normalize_pooling_factors(
            pooling_factors if pooling_factors is not None else 2, dims=dims, depth=depth
        )
    img, lab = load_training_data(
        image, labels, dims=dims, image_key=image_key, labels_key=labels_key
    )
    cfg = UNetConfig(
        dims=dims,
        in_channels=img.shape[0],
        out_channels=embedding_dims + 1,
        pooling_factors=pf,
        features=features if features is not None else defaults.features,
    )
    geometry = cfg.geometry()
    volume_shape = lab.shape
    if window is None:
        wanted = default_window(defaults.window, geometry, volume_shape)
    elif isinstance(window, int):
        wanted = (window,) * dims
    else:
        wanted = tuple(window)
    check_training_window(wanted, geometry)
    input_window = geometry.input_for_output(wanted)
    out_window = geometry.output_shape(input_window)
    for a, (s, w, p) in enumerate(zip(volume_shape, out_window, geometry.period)):
        # Fewer than P origins would leave some phases of the content unseen.
        if s - w + 1 < p:
            raise StitchsafeError(
                f"the training image is {s} voxels long on axis {a}, too short for an output "
                f"window of {w} at all {p} phases of the period (it needs at least {w + p - 1}); "
                "use a larger image or a smaller window (still larger than the period "
                f"{geometry.period})."
            )

    norm = compute_normalization(
        cast("Volume", ArrayVolume(img, describe_source(image))),
        method=normalize,
        percentiles=percentiles,
    )
    padded = np.pad(norm(img), [(0, 0), *geometry.halo], mode=cast(Any, pad_mode))
    flips, planes = augmentations(pf, geometry)
    loss_fn = DiscriminativeLoss(delta_v=delta_v, delta_d=delta_d)
    # Channel 0: instance ids; channel 1: the foreground target, computed on the whole
    # volume so that crops never see a contact cut off at their edge.
    fg_target = lab > 0
    if foreground_target == "separated":
        fg_target &= ~contact_voxels(lab)
    targets = np.stack([lab, fg_target.astype(np.int64)])
    rng = np.random.default_rng(seed)

    dev = resolve_device(device)
    net = build_unet(cfg, seed=seed)
    init_sha256 = None if init is None else _load_init(net, init, unet_metadata(cfg))
    net = net.to(dev).train()

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(batch_size):
            o = sample_origin(rng, volume_shape, out_window)
            x = padded[(slice(None), *(slice(b, b + n) for b, n in zip(o, input_window)))]
            y = targets[(slice(None), *(slice(b, b + n) for b, n in zip(o, out_window)))]
            x, y = augment(x, y, rng, flips=flips, planes=planes)
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        return torch.from_numpy(np.stack(xs)).to(dev), torch.from_numpy(np.stack(ys)).to(dev)

    previous_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(threads or _cpu_count())
    try:
        losses, seconds = _fit(
            net, batch, loss_fn, iterations=iterations, lr=lr, log_path=log_path, progress=progress
        )
        final_loss = float(np.mean(losses[-max(1, min(50, iterations // 10)) :]))
        roles = ["embedding"] * embedding_dims + ["foreground"]
        min_size = default_min_size(lab)
        labels_meta: dict[str, Any] = {"min_size": min_size, "foreground_threshold": 0.5}
        if calibrate:
            # Twice the training window (where the image allows): more whole objects per crop.
            calibration = calibrate_labels(
                net,
                padded,
                lab,
                geometry,
                channel_roles=roles,
                window=tuple(2 * w for w in out_window),
                min_size=min_size,
                delta_d=delta_d,
                seed=seed + 1,
            )
            labels_meta.update(calibration["params"], calibration=calibration)
        else:
            # Midway between the farthest voxels of one instance (2 delta_v) and the nearest
            # of two instances (2 delta_d - 2 delta_v) once the loss is satisfied.
            labels_meta["threshold"] = delta_d
    finally:
        torch.set_num_threads(previous_threads)

    metadata = unet_metadata(
        cfg,
        channel_roles=roles,
        normalization=norm.to_dict(),
        loss={**loss_fn.to_dict(), "foreground_target": foreground_target},
        labels=labels_meta,
        training={
            "command": command,
            "arguments": arguments,
            "iterations": iterations,
            "window": list(out_window),
            "input_window": list(input_window),
            "batch_size": batch_size,
            "seed": seed,
            "lr": lr,
            "pad_mode": pad_mode,
            "augmentation": {
                "flip_axes": list(flips),
                "rotation_planes": [list(p) for p in planes],
            },
            "data_shape": list(volume_shape),
            "init_sha256": init_sha256,
            "objects": int(np.unique(lab[lab > 0]).size),
            "torch": torch.__version__,
            "stitchsafe": __version__,
            "device": str(dev),
            "seconds": round(seconds, 1),
            "final_loss": final_loss,
        },
    )
    net = net.cpu().eval()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a failure never leaves a half-written model.
    partial = out_path.with_name(out_path.name + ".partial")
    save_checkpoint(net, partial, metadata=metadata)
    os.replace(partial, out_path)
    exported = None
    if export_pt2 is not None:
        exported = os.fspath(export_pt2)
        save_export(
            net, exported, example_shape=(1, cfg.in_channels, *input_window), metadata=metadata
        )
    return TrainResult(
        output=os.fspath(out_path),
        log=os.fspath(log_path),
        export=exported,
        metadata=metadata,
        final_loss=final_loss,
        iterations=iterations,
        seconds=seconds,
        device=str(dev),
        window=out_window,
        input_window=input_window,
    )


def _load_init(net: Any, init: PathLike, expected: dict[str, Any]) -> str:
    """Copy the weights of checkpoint ``init`` into ``net``; return the file's SHA-256."""
    from .model import load_model
    from .resume import file_sha256

    loaded = load_model(init)
    meta = loaded.metadata or {}
    if loaded.format != "stitchsafe" or meta.get("architecture") != expected["architecture"]:
        raise StitchsafeError(
            f"--init {os.fspath(init)} is not a stitchsafe checkpoint of the architecture "
            "being trained (dims, pooling factors, features, embedding channels must match); "
            "pass the same architecture flags it was trained with."
        )
    net.load_state_dict(loaded.module.state_dict())
    return file_sha256(init)


def recalibrate(
    model: PathLike,
    image: np.ndarray | PathLike,
    labels: np.ndarray | PathLike,
    *,
    output: PathLike | None = None,
    image_key: str | None = None,
    labels_key: str | None = None,
) -> dict[str, Any]:
    """Measure a trained checkpoint's labelling defaults again, as ``train`` does at its end.

    For a model trained before the labelling changed: the weights stay, the ``labels``
    entry of the metadata is replaced by what :func:`calibrate_labels` finds on ``image``
    and ``labels`` (normally the training data), with the same minimum size, margins and
    normalisation, and ``labels.calibration.recalibrated`` records it. Writes ``output``
    (default: ``model`` itself, replaced atomically) and returns the new metadata.
    """
    from .model import load_model, metadata_geometry, save_checkpoint, validate_metadata
    from .normalize import Normalization
    from .unet import UNet

    loaded = load_model(model, device="cpu")
    meta = loaded.metadata
    if loaded.format != "stitchsafe" or meta is None or not isinstance(loaded.module, UNet):
        raise StitchsafeError(
            f"{os.fspath(model)!r} is not a stitchsafe checkpoint of the built-in U-Net."
        )
    geometry, _ = metadata_geometry(meta, channels_in=int(meta.get("channels_in", 1)))
    if geometry is None:
        raise StitchsafeError("the checkpoint's metadata declares no geometry.")
    img, lab = load_training_data(
        image, labels, image_key=image_key, labels_key=labels_key, dims=meta["dims"]
    )
    norm = Normalization.from_dict(meta["normalization"])
    pad_mode = meta.get("training", {}).get("pad_mode", "reflect")
    padded = np.pad(norm(img), [(0, 0), *geometry.halo], mode=cast(Any, pad_mode))
    loss = meta.get("loss", {})
    delta_d = float(loss.get("delta_d", 1.5))
    window = meta.get("training", {}).get("window") or [2 * p for p in geometry.period]
    calibration = calibrate_labels(
        loaded.module,
        padded,
        lab,
        geometry,
        channel_roles=meta["channel_roles"],
        window=tuple(2 * int(w) for w in window),
        min_size=int(meta.get("labels", {}).get("min_size", default_min_size(lab))),
        delta_d=delta_d,
        seed=int(meta.get("training", {}).get("seed", 0)) + 1,
    )
    calibration["recalibrated"] = f"stitchsafe.train.recalibrate on {describe_source(image)}"
    old = meta.get("labels", {})
    meta = {
        **meta,
        "labels": {
            "min_size": old.get("min_size", default_min_size(lab)),
            "foreground_threshold": old.get("foreground_threshold", 0.5),
            **calibration["params"],
            "calibration": calibration,
        },
    }
    validate_metadata(meta)
    target = Path(output if output is not None else model)
    partial = target.with_name(target.name + ".partial")
    save_checkpoint(loaded.module, partial, metadata=meta)
    os.replace(partial, target)
    return meta
