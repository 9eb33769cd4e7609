"""Editing a trained checkpoint: its labelling defaults and its weights.

:func:`recalibrate` measures a checkpoint's labelling defaults again on given data (as
``train`` does at its end), :func:`set_labelling_defaults` stores defaults chosen by some
other rule (recorded with the scores that chose them), and :func:`average_weights`
averages two checkpoints of the same network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Normalization
from ..errors import StitchsafeError
from ..geometry import ModelGeometry
from ..io import file_sha256
from ..labels import resolve_label_params
from ..models import UNet, load_model, metadata_geometry, validate_metadata
from ._calibration import CalibrationSettings, calibrate_labels
from ._checkpoint import write_checkpoint
from ._data import default_min_size, describe_source, load_training_data
from ._setup import pad_for_training

__all__ = ["average_weights", "recalibrate", "set_labelling_defaults"]

PathLike = str | os.PathLike[str]


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
    net, meta, geometry = _load_unet(model)
    img, lab = load_training_data(
        image, labels, image_key=image_key, labels_key=labels_key, dims=meta["dims"]
    )
    training = meta.get("training", {})
    norm = Normalization.from_dict(meta["normalization"])
    padded = pad_for_training(img, norm, geometry, training.get("pad_mode", "reflect"))
    calibration = calibrate_labels(
        net, padded, lab, geometry, _recorded_settings(meta, geometry, lab)
    )
    calibration["recalibrated"] = f"stitchsafe.training.recalibrate on {describe_source(image)}"
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
    write_checkpoint(net, Path(output if output is not None else model), meta)
    return meta


def set_labelling_defaults(
    model: PathLike,
    params: dict[str, Any],
    *,
    calibration: dict[str, Any],
    output: PathLike | None = None,
) -> dict[str, Any]:
    """Store labelling defaults chosen outside :func:`calibrate_labels` in a checkpoint.

    ``params`` holds :class:`stitchsafe.labels.LabelParams` fields (``threshold``,
    ``seed_threshold``, ``seed_foreground_threshold``, ``grow``, optionally ``min_size``
    and ``foreground_threshold``; the checkpoint's own values fill what is left out);
    they are validated with the model's channel roles. ``calibration`` records how they
    were chosen (a ``rule`` and the scores behind it) and is stored beside them, with
    ``params``. The weights stay; writes ``output`` (default: ``model``, replaced
    atomically) and returns the new metadata.
    """
    net, meta, _ = _load_unet(model)
    old = meta.get("labels", {})
    labels = {k: old[k] for k in ("min_size", "foreground_threshold") if k in old} | params
    # Raises a StitchsafeError naming what is wrong.
    resolve_label_params(labels, meta["channel_roles"], channels=int(meta["channels_out"]))
    meta = {**meta, "labels": {**labels, "calibration": {**calibration, "params": params}}}
    validate_metadata(meta)
    write_checkpoint(net, Path(output if output is not None else model), meta)
    return meta


def average_weights(
    model: PathLike, other: PathLike, *, weight: float, output: PathLike
) -> dict[str, Any]:
    """``weight`` of ``model``'s weights plus ``1 - weight`` of ``other``'s, written to ``output``.

    Both must be checkpoints of the same built-in U-Net (``other`` typically the one
    ``model`` was fine-tuned from with ``--init``). The metadata is ``model``'s, and
    ``training.averaged_with`` records ``other`` (its SHA-256) and ``weight``. The labelling
    defaults are ``model``'s: measure them again with :func:`recalibrate`.
    """
    if not 0.0 <= weight <= 1.0:
        raise StitchsafeError(f"weight must lie in [0, 1], got {weight}.")
    net, meta, _ = _load_unet(model)
    theirs = _load_unet(other)[0].state_dict()
    mine = net.state_dict()
    if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
        raise StitchsafeError(f"{os.fspath(other)!r} is not the same architecture as the model.")
    net.load_state_dict({k: weight * v + (1.0 - weight) * theirs[k] for k, v in mine.items()})
    averaged = {
        "checkpoint": Path(other).name,
        "sha256": file_sha256(other),
        "weight_of_model": weight,
    }
    meta = {**meta, "training": {**meta.get("training", {}), "averaged_with": averaged}}
    validate_metadata(meta)
    write_checkpoint(net, Path(output), meta)
    return meta


def _load_unet(model: PathLike) -> tuple[Any, dict[str, Any], ModelGeometry]:
    """The built-in U-Net of a stitchsafe checkpoint (on the CPU), its metadata and geometry."""
    loaded = load_model(model, device="cpu")
    meta = loaded.metadata
    if loaded.format != "stitchsafe" or meta is None or not isinstance(loaded.module, UNet):
        raise StitchsafeError(
            f"{os.fspath(model)!r} is not a stitchsafe checkpoint of the built-in U-Net."
        )
    geometry, _ = metadata_geometry(meta, channels_in=int(meta.get("channels_in", 1)))
    if geometry is None:
        raise StitchsafeError("the checkpoint's metadata declares no geometry.")
    return loaded.module, meta, geometry


def _recorded_settings(
    meta: dict[str, Any], geometry: ModelGeometry, labels: np.ndarray
) -> CalibrationSettings:
    """The calibration ``train`` ran, from a checkpoint's metadata (window, seed, margins)."""
    training = meta.get("training", {})
    window = training.get("window") or [2 * p for p in geometry.period]
    return CalibrationSettings(
        channel_roles=meta["channel_roles"],
        window=tuple(2 * int(w) for w in window),
        min_size=int(meta.get("labels", {}).get("min_size", default_min_size(labels))),
        delta_d=float(meta.get("loss", {}).get("delta_d", 1.5)),
        seed=int(training.get("seed", 0)) + 1,
    )
