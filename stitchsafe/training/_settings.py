"""Training settings: the defaults per dimensionality and one validated value of all options.

:class:`TrainingSettings` holds every option of :func:`stitchsafe.training.train` as given
(``None`` meaning "the default for the data"), checks what can be checked without the data
once, when it is built, and records the call in the checkpoint's metadata. Options that
depend on the data (the dimensionality, the architecture, the window) are resolved by
:func:`stitchsafe.training.prepare_training`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StitchsafeError
from ..io import PAD_MODES
from ._losses import DiscriminativeLoss

__all__ = [
    "DEFAULTS",
    "EMBEDDING_DIMS",
    "FOREGROUND_TARGETS",
    "LEARNING_RATE",
    "Defaults",
    "TrainingSettings",
    "check_dims",
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


def check_dims(dims: int) -> int:
    """``dims`` if training supports it (2 or 3 spatial axes).

    >>> check_dims(3)
    3
    >>> check_dims(4)
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: training supports 2-D and 3-D images, not dims=4.
    """
    if dims not in DEFAULTS:
        raise StitchsafeError(f"training supports 2-D and 3-D images, not dims={dims}.")
    return dims


@dataclass(frozen=True)
class TrainingSettings:
    """Every option of one training run, checked once when built.

    Fields keep the values as given (``None``: the default for the data), so that the
    metadata records the call as it was made.

    Parameters
    ----------
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
        :data:`DEFAULTS`), crops per step, peak learning rate, and the seed of the
        initialisation and of the crop and augmentation draws.
    window
        Output window of the loss per crop (``int`` or one value per axis); must be larger
        than the period. Crops are the smallest valid input covering it, and the loss uses
        that input's whole raw output (at least ``window``). Default: :data:`DEFAULTS`,
        shrunk where the image is too small.
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
        How the image is extended beyond its border so crops can reach it (one of
        :data:`stitchsafe.io.PAD_MODES`; ``predict`` pads the same way by default).
    image_key, labels_key
        Paths inside the image's and the labels' groups.
    threads
        CPU threads for torch (default: the CPUs this process may use).
    overwrite
        Replace existing output files.
    calibrate
        Measure the labelling threshold on crops of the training data
        (:func:`stitchsafe.training.calibrate_labels`); otherwise record ``delta_d`` as the
        threshold.
    command
        The command line to record in the metadata (the CLI passes its own); default: a
        Python call with the arguments.
    init
        Start from the weights of this stitchsafe checkpoint instead of a random
        initialisation (continue or fine-tune a model); its architecture must be the one
        these settings build. Its SHA-256 is recorded.

    Examples
    --------
    >>> s = TrainingSettings(output="m.pt", embedding_dims=3)
    >>> s.log_path.name, s.channel_roles
    ('m.log.jsonl', ['embedding', 'embedding', 'embedding', 'foreground'])
    >>> TrainingSettings(output="m.pt", pad_mode="wrap")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: pad_mode 'wrap' is not one of reflect, constant, edge.
    """

    output: PathLike
    dims: int | None = None
    depth: int | None = None
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None
    features: int | None = None
    embedding_dims: int = EMBEDDING_DIMS
    iterations: int | None = None
    window: Sequence[int] | int | None = None
    batch_size: int = 1
    lr: float = LEARNING_RATE
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    export_pt2: PathLike | None = None
    delta_v: float = 0.5
    delta_d: float = 1.5
    foreground_target: str = "labels"
    normalize: str = "percentile"
    percentiles: tuple[float, float] = (1.0, 99.8)
    pad_mode: str = "reflect"
    image_key: str | None = None
    labels_key: str | None = None
    threads: int | None = None
    overwrite: bool = False
    calibrate: bool = True
    command: str | None = None
    init: PathLike | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise StitchsafeError(f"batch_size must be at least 1, got {self.batch_size}.")
        if self.embedding_dims < 1:
            raise StitchsafeError(f"embedding_dims must be at least 1, got {self.embedding_dims}.")
        if not self.lr > 0:
            raise StitchsafeError(f"the learning rate must be positive, got {self.lr}.")
        if self.foreground_target not in FOREGROUND_TARGETS:
            choices = ", ".join(FOREGROUND_TARGETS)
            raise StitchsafeError(
                f"foreground_target {self.foreground_target!r} is not one of {choices}."
            )
        if self.pad_mode not in PAD_MODES:
            raise StitchsafeError(
                f"pad_mode {self.pad_mode!r} is not one of {', '.join(PAD_MODES)}."
            )
        if self.dims is not None:
            check_dims(self.dims)
        if self.iterations is not None and self.iterations < 1:
            raise StitchsafeError(f"iterations must be at least 1, got {self.iterations}.")
        self.loss_function()  # checks the margins

    @property
    def output_path(self) -> Path:
        """The checkpoint's path."""
        return Path(self.output)

    @property
    def log_path(self) -> Path:
        """The loss log beside the checkpoint: ``<stem>.log.jsonl``."""
        return self.output_path.with_name(self.output_path.stem + ".log.jsonl")

    @property
    def channel_roles(self) -> list[str]:
        """The output channels: ``embedding_dims`` embeddings, then the foreground."""
        return ["embedding"] * self.embedding_dims + ["foreground"]

    def loss_function(self) -> DiscriminativeLoss:
        """The loss with these margins."""
        return DiscriminativeLoss(delta_v=self.delta_v, delta_d=self.delta_d)

    def refuse_existing_outputs(self) -> None:
        """Raise unless ``overwrite`` or none of the files to write exists yet."""
        export = Path(self.export_pt2) if self.export_pt2 is not None else None
        for target in (self.output_path, self.log_path, export):
            if target is not None and target.exists() and not self.overwrite:
                raise StitchsafeError(
                    f"{target} already exists; pass overwrite (--overwrite) to replace it."
                )

    def recorded_call(self, image: str, labels: str) -> tuple[dict[str, Any], str]:
        """The arguments (as stored: JSON types) and the command line for the metadata.

        ``image`` and ``labels`` describe the inputs
        (:func:`stitchsafe.training.describe_source`).

        >>> settings = TrainingSettings(output="m.pt", window=(8, 8), seed=3)
        >>> args, command = settings.recorded_call("a.zarr", "b.tif")
        >>> args["window"], args["init"]
        ([8, 8], None)
        >>> command.startswith("stitchsafe.training.train(image='a.zarr', labels='b.tif', ")
        True
        >>> "window=[8, 8], batch_size=1" in command, "depth" in command  # None: left out
        (True, False)
        """
        arguments = {
            "image": image,
            "labels": labels,
            "output": os.fspath(self.output),
            "dims": self.dims,
            "depth": self.depth,
            "pooling_factors": self.pooling_factors,
            "features": self.features,
            "embedding_dims": self.embedding_dims,
            "iterations": self.iterations,
            "window": self.window,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "device": self.device,
            "export_pt2": _fspath(self.export_pt2),
            "delta_v": self.delta_v,
            "delta_d": self.delta_d,
            "foreground_target": self.foreground_target,
            "normalize": self.normalize,
            "percentiles": list(self.percentiles),
            "pad_mode": self.pad_mode,
            "image_key": self.image_key,
            "labels_key": self.labels_key,
            "calibrate": self.calibrate,
            "init": _fspath(self.init),
        }
        arguments = json.loads(json.dumps(arguments))  # tuples -> lists, as stored
        command = self.command
        if command is None:
            shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items() if v is not None)
            command = f"stitchsafe.training.train({shown})"
        return arguments, command


def _fspath(path: PathLike | None) -> str | None:
    return os.fspath(path) if path is not None else None
