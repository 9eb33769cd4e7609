"""Train the built-in valid-conv U-Net so that its embeddings stitch exactly.

The training rule of Rumberger et al. (ICCV 2021): the loss must see an *output* window
strictly larger than the period ``P`` on every axis. A window of at most ``P`` holds one
voxel per phase, so the loss never compares voxels at different positions modulo ``P``
and the network may embed each phase differently: tiles would then disagree where they are
stitched. :func:`check_training_window` refuses such windows.

Crops are drawn at uniformly random origins, not on the period lattice, so the network
sees every phase of the content relative to its pooling grid; flips, and 90-degree
rotations between axes with equal pooling factors, leave the geometry unchanged.
Intensities are normalised once with statistics of the whole training image (as
:func:`stitchsafe.normalize.compute_normalization` does at prediction), never per crop.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .errors import StitchsafeError
from .geometry import Box, ModelGeometry, normalize_pooling_factors

if TYPE_CHECKING:
    from .volume import Volume

__all__ = [
    "DEFAULTS",
    "TrainResult",
    "augment",
    "augmentations",
    "check_training_window",
    "sample_origin",
    "train",
]

Shape = tuple[int, ...]
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Defaults:
    """Architecture and window used when ``train`` gets no tuning arguments."""

    pooling_factors: tuple[Shape, ...]
    features: int
    window: Shape


# Small and fast on 2 CPU cores; anisotropic first level in 3-D because microscopy z-steps
# are often coarser than the pixel size.
DEFAULTS = {
    2: Defaults(((2, 2), (2, 2)), features=16, window=(64, 64)),
    3: Defaults(((1, 2, 2), (2, 2, 2)), features=12, window=(12, 32, 32)),
}
EMBEDDING_DIMS = 6
ITERATIONS = 1000
LEARNING_RATE = 1e-3


def check_training_window(window: Sequence[int], geometry: ModelGeometry) -> Shape:
    """Validate an output training window: strictly larger than the period on every axis.

    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(1, 2, 2), (2, 2, 2)])
    >>> check_training_window((3, 5, 8), g)
    (3, 5, 8)
    >>> check_training_window((8, 4, 16), g)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the output training window (8, 4, 16) is not larger ...
    """
    w = tuple(int(v) for v in window)
    if len(w) != geometry.dims:
        raise StitchsafeError(
            f"the training window {w} has {len(w)} values; the model has {geometry.dims} axes."
        )
    bad = [a for a, (v, p) in enumerate(zip(w, geometry.period)) if v <= p]
    if bad:
        fix = tuple(max(v, 2 * p) for v, p in zip(w, geometry.period))
        raise StitchsafeError(
            f"the output training window {w} is not larger than the period {geometry.period} "
            f"on axis {', '.join(map(str, bad))}. With a window of at most one period the loss "
            "never compares voxels at different positions modulo the period, so the network "
            "is free to embed each tile differently and stitched tiles would disagree at their "
            "seams (Rumberger et al., ICCV 2021). Use a window strictly larger than the period "
            f"on every axis, at least {tuple(p + 1 for p in geometry.period)}; e.g. {fix}."
        )
    return w


def sample_origin(
    rng: np.random.Generator, volume_shape: Sequence[int], window: Sequence[int]
) -> Shape:
    """A uniformly random origin for a ``window`` inside ``volume_shape``, at any phase.

    >>> rng = np.random.default_rng(0)
    >>> o = [sample_origin(rng, (10, 20), (4, 16)) for _ in range(200)]
    >>> sorted({a for a, _ in o}) == list(range(7)), sorted({b for _, b in o})
    (True, [0, 1, 2, 3, 4])
    """
    return tuple(int(rng.integers(0, s - w + 1)) for s, w in zip(volume_shape, window))


def augmentations(
    pooling_factors: Sequence[Sequence[int]], geometry: ModelGeometry
) -> tuple[Shape, tuple[tuple[int, int], ...]]:
    """Axes that may be flipped and planes that may be rotated by 90 degrees.

    A flip keeps the output aligned with the labels only when the halo is symmetric; a
    rotation also needs both axes to pool alike (and so to see alike-sampled data).

    >>> from stitchsafe.geometry import unet_geometry
    >>> pf = [(1, 2, 2), (2, 2, 2)]
    >>> augmentations(pf, unet_geometry(pf))
    ((0, 1, 2), ((1, 2),))
    """
    dims = geometry.dims
    flips = tuple(a for a in range(dims) if geometry.halo[a][0] == geometry.halo[a][1])
    column = [tuple(level[a] for level in pooling_factors) for a in range(dims)]
    planes = tuple(
        (a, b)
        for a in range(dims)
        for b in range(a + 1, dims)
        if column[a] == column[b] and a in flips and b in flips
    )
    return flips, planes


def augment(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    flips: Sequence[int],
    planes: Sequence[tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly flip and rotate an input crop ``(C, *spatial)`` and its output labels alike.

    Rotations by 90 or 270 degrees need both axes of the plane equally long in the input
    and in the labels; otherwise only 0 or 180 degrees are drawn.

    >>> img, lab = np.arange(16.0).reshape(1, 4, 4), np.arange(4).reshape(2, 2)
    >>> i2, l2 = augment(img, lab, np.random.default_rng(1), flips=(0, 1), planes=((0, 1),))
    >>> bool(np.array_equal(i2[0, 1:3, 1:3].argsort(None), l2.argsort(None)))
    True
    """
    for a in flips:
        if rng.random() < 0.5:
            image, labels = np.flip(image, a + 1), np.flip(labels, a)
    for a, b in planes:
        square = image.shape[a + 1] == image.shape[b + 1] and labels.shape[a] == labels.shape[b]
        k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
        image, labels = np.rot90(image, k, (a + 1, b + 1)), np.rot90(labels, k, (a, b))
    return image, labels


@dataclass(frozen=True)
class _ArrayVolume:
    """Just enough of :class:`stitchsafe.io.Volume` to compute normalisation statistics."""

    data: np.ndarray  # (C, *spatial)
    path: str = "<array>"

    @property
    def shape(self) -> Shape:
        return tuple(self.data.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    def read(self, box: Box) -> np.ndarray:
        return self.data[(slice(None), *box.to_slices())]


def _describe(source: Any) -> str:
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return os.fspath(source)


def _read_all(source: PathLike, key: str | None, dims: int) -> np.ndarray:
    from .volume import open_volume

    with open_volume(source, key=key, spatial_dims=dims) as vol:
        return vol.read(Box.from_shape(vol.shape))


def _infer_dims(labels: np.ndarray | PathLike, key: str | None) -> int:
    if isinstance(labels, np.ndarray):
        return labels.ndim
    from .volume import open_volume

    for dims in (3, 2):
        try:
            with open_volume(labels, key=key, spatial_dims=dims) as vol:
                if vol.channels == 1:
                    return dims
        except StitchsafeError:
            continue
    raise StitchsafeError(
        f"cannot tell whether the labels {os.fspath(labels)!r} are 2-D or 3-D; pass dims."
    )


def load_training_data(
    image: np.ndarray | PathLike,
    labels: np.ndarray | PathLike,
    *,
    dims: int,
    image_key: str | None = None,
    labels_key: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The image as ``(C, *spatial)`` (stored dtype) and the labels as ``(*spatial)`` int64."""
    if isinstance(image, np.ndarray):
        img = image[np.newaxis] if image.ndim == dims else image
        if img.ndim != dims + 1:
            raise StitchsafeError(
                f"the training image has shape {image.shape}; expected {dims} spatial axes, "
                "optionally preceded by one channel axis."
            )
    else:
        img = _read_all(image, image_key, dims)
    if isinstance(labels, np.ndarray):
        lab = labels
    else:
        stored = _read_all(labels, labels_key, dims)
        if stored.shape[0] != 1:
            raise StitchsafeError(
                f"the labels {os.fspath(labels)!r} have {stored.shape[0]} channels; instance "
                "labels are one integer image."
            )
        lab = stored[0]
    if lab.shape != img.shape[1:]:
        raise StitchsafeError(
            f"the labels' shape {lab.shape} differs from the image's spatial shape "
            f"{img.shape[1:]}; they must cover the same voxels."
        )
    if lab.dtype.kind not in "biu" or (lab.dtype.kind == "i" and lab.size and lab.min() < 0):
        raise StitchsafeError(
            f"labels must be non-negative integers (0 = background), got dtype {lab.dtype}."
        )
    return img, lab.astype(np.int64)


def default_min_size(labels: np.ndarray) -> int:
    """Suggested smallest instance size: a quarter of the 5th-percentile training object.

    >>> default_min_size(np.repeat(np.arange(5), 100))
    25
    """
    sizes = np.bincount(labels.ravel())[1:]
    sizes = sizes[sizes > 0]
    return max(1, int(0.25 * np.percentile(sizes, 5))) if sizes.size else 1


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
    iterations: int = ITERATIONS,
    window: Sequence[int] | int | None = None,
    batch_size: int = 1,
    lr: float = LEARNING_RATE,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    export_pt2: PathLike | None = None,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    normalize: str = "percentile",
    percentiles: tuple[float, float] = (1.0, 99.8),
    pad_mode: str = "reflect",
    image_key: str | None = None,
    labels_key: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    command: str | None = None,
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
        Optimiser steps (Adam, cosine-decayed learning rate), crops per step, learning
        rate, and the seed of initialisation, crops and augmentation.
    window
        Output window per axis (int: all axes); must be strictly larger than the period.
        The input crop is the smallest valid input covering it, and the loss uses that
        input's whole raw output (at least ``window``).
    device
        ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    progress
        Show a progress bar on stderr.
    export_pt2
        Also write a ``torch.export`` program (``.pt2``) with the same metadata.
    delta_v, delta_d
        Margins of the discriminative loss.
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
    command
        The command line to record in the metadata (the CLI passes its own); default: a
        Python call with the arguments.

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
        "image": _describe(image),
        "labels": _describe(labels),
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
        "normalize": normalize,
        "percentiles": list(percentiles),
        "pad_mode": pad_mode,
        "image_key": image_key,
        "labels_key": labels_key,
    }
    arguments = json.loads(json.dumps(arguments))  # tuples -> lists, as stored
    if command is None:
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items() if v is not None)
        command = f"stitchsafe.train.train({shown})"
    for name, value in (("iterations", iterations), ("batch_size", batch_size)):
        if value < 1:
            raise StitchsafeError(f"{name} must be at least 1, got {value}.")
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
    if pad_mode not in PAD_MODES:
        raise StitchsafeError(f"pad_mode {pad_mode!r} is not one of {', '.join(PAD_MODES)}.")

    dims = dims if dims is not None else _infer_dims(labels, labels_key)
    if dims not in DEFAULTS:
        raise StitchsafeError(f"training supports 2-D and 3-D images, not dims={dims}.")
    defaults = DEFAULTS[dims]
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
    if window is None:
        wanted = tuple(max(w, 2 * p) for w, p in zip(defaults.window, geometry.period))
    elif isinstance(window, int):
        wanted = (window,) * dims
    else:
        wanted = tuple(window)
    check_training_window(wanted, geometry)
    input_window = geometry.input_for_output(wanted)
    out_window = geometry.output_shape(input_window)
    volume_shape = lab.shape
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
        cast("Volume", _ArrayVolume(img, _describe(image))),
        method=normalize,
        percentiles=percentiles,
    )
    padded = np.pad(norm(img), [(0, 0), *geometry.halo], mode=cast(Any, pad_mode))
    flips, planes = augmentations(pf, geometry)
    loss_fn = DiscriminativeLoss(delta_v=delta_v, delta_d=delta_d)
    rng = np.random.default_rng(seed)

    dev = resolve_device(device)
    net = build_unet(cfg, seed=seed).to(dev).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations, lr * 0.05)
    previous_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(threads or _cpu_count())

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(batch_size):
            o = sample_origin(rng, volume_shape, out_window)
            x = padded[(slice(None), *(slice(b, b + n) for b, n in zip(o, input_window)))]
            y = lab[tuple(slice(b, b + n) for b, n in zip(o, out_window))]
            x, y = augment(x, y, rng, flips=flips, planes=planes)
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        return torch.from_numpy(np.stack(xs)).to(dev), torch.from_numpy(np.stack(ys)).to(dev)

    from tqdm.auto import tqdm

    log_path.parent.mkdir(parents=True, exist_ok=True)
    losses: list[float] = []
    start = time.perf_counter()
    try:
        with (
            open(log_path, "w", encoding="utf-8") as log,
            tqdm(
                total=iterations, desc="train", unit="it", file=sys.stderr, disable=not progress
            ) as bar,
        ):
            for it in range(1, iterations + 1):
                x, y = batch()
                terms = loss_fn(net(x), y)
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
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - start
    final_loss = float(np.mean(losses[-max(1, min(50, iterations // 10)) :]))

    metadata = unet_metadata(
        cfg,
        channel_roles=["embedding"] * embedding_dims + ["foreground"],
        normalization=norm.to_dict(),
        loss=loss_fn.to_dict(),
        labels={
            # Midway between the farthest voxels of one instance (2 delta_v) and the nearest
            # of two instances (2 delta_d - 2 delta_v) once the loss is satisfied.
            "threshold": delta_d,
            "min_size": default_min_size(lab),
            "foreground_threshold": 0.5,
        },
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
