"""Checkpoints of a training run: the start weights, the metadata, the files, the result.

:func:`load_init_weights` starts a network from an earlier checkpoint;
:func:`checkpoint_metadata` writes down everything ``predict`` needs and how the model was
trained; :func:`save_trained` writes the checkpoint atomically (and the ``.pt2`` export),
and :class:`TrainResult` is what :func:`stitchsafe.training.train` returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import StitchsafeError
from ..io import file_sha256
from ..models import (
    UNetConfig,
    detect_format,
    load_model,
    save_checkpoint,
    save_export,
    unet_metadata,
)
from ..progress import plural
from ._loop import Fit
from ._settings import TrainingSettings
from ._setup import TrainingSetup

__all__ = [
    "TrainResult",
    "checkpoint_metadata",
    "load_init_weights",
    "save_trained",
    "write_checkpoint",
]

Shape = tuple[int, ...]
PathLike = str | os.PathLike[str]


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

    def describe(self) -> str:
        """What was written, in one line for the terminal."""
        return (
            f"wrote {self.output} ({plural(self.iterations, 'iteration')} in {self.seconds:.0f} s "
            f"on {self.device}, final loss {self.final_loss:.3g}; log {self.log})"
        )


def load_init_weights(net: Any, init: PathLike, config: UNetConfig) -> str:
    """Copy the weights of checkpoint ``init`` into ``net``; return the file's SHA-256.

    The checkpoint's architecture must be ``config``, the one being trained.
    """
    expected = unet_metadata(config)
    not_ours = StitchsafeError(
        f"--init {os.fspath(init)} is not a stitchsafe checkpoint of the architecture being "
        "trained (dims, pooling factors, features, embedding channels must match); pass a "
        "checkpoint that stitchsafe train wrote, and the architecture flags it was trained with."
    )
    # Only checkpoints are read (as data, never running code): other formats are refused
    # before they are loaded.
    if detect_format(init) != "stitchsafe":
        raise not_ours
    loaded = load_model(init)
    meta = loaded.metadata or {}
    if meta.get("architecture") != expected["architecture"]:
        raise not_ours
    net.load_state_dict(loaded.module.state_dict())
    return file_sha256(init)


def checkpoint_metadata(
    settings: TrainingSettings,
    setup: TrainingSetup,
    fitted: Fit,
    *,
    labels: dict[str, Any],
    device: torch.device,
    init_sha256: str | None,
) -> dict[str, Any]:
    """The checkpoint's metadata: architecture, normalisation, loss, labelling, training."""
    arguments, command = settings.recorded_call(*setup.sources)
    lab = setup.labels
    training = {
        "command": command,
        "arguments": arguments,
        "iterations": setup.iterations,
        "window": list(setup.window),
        "input_window": list(setup.input_window),
        "batch_size": settings.batch_size,
        "seed": settings.seed,
        "lr": settings.lr,
        "pad_mode": settings.pad_mode,
        "augmentation": {
            "flip_axes": list(setup.flips),
            "rotation_planes": [list(p) for p in setup.planes],
        },
        "data_shape": list(setup.volume_shape),
        "init_sha256": init_sha256,
        "objects": int(np.unique(lab[lab > 0]).size),
        "torch": torch.__version__,
        "stitchsafe": __version__,
        "device": str(device),
        "seconds": round(fitted.seconds, 1),
        "final_loss": fitted.final_loss,
    }
    loss = {**settings.loss_function().to_dict(), "foreground_target": settings.foreground_target}
    return unet_metadata(
        setup.config,
        channel_roles=settings.channel_roles,
        normalization=setup.normalization.to_dict(),
        loss=loss,
        labels=labels,
        training=training,
    )


def write_checkpoint(net: Any, path: Path, metadata: dict[str, Any]) -> None:
    """Write beside ``path`` and rename, so a failure never leaves a half-written model."""
    partial = path.with_name(path.name + ".partial")
    save_checkpoint(net, partial, metadata=metadata)
    os.replace(partial, path)


def save_trained(
    net: Any, metadata: dict[str, Any], settings: TrainingSettings, setup: TrainingSetup
) -> str | None:
    """Write the checkpoint (and the ``.pt2`` export, if asked); return the export's path."""
    out_path = settings.output_path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(net, out_path, metadata)
    if settings.export_pt2 is None:
        return None
    exported = os.fspath(settings.export_pt2)
    example_shape = (1, setup.config.in_channels, *setup.input_window)
    save_export(net, exported, example_shape=example_shape, metadata=metadata)
    return exported
