"""Calibration of the labelling defaults: the parameters that label the training data best.

:func:`calibrate_labels` scores every candidate of :func:`label_candidates` (AP@0.5 against
the training labels, on the whole image or on random crops) with a trained network;
:func:`labelling_defaults` is what :func:`stitchsafe.training.train` stores in the
metadata's ``labels`` entry.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..geometry import ModelGeometry
from ..labels import LabelParams, average_precision, label_array
from ..progress import progress_bar
from ._data import (
    default_min_size,
    default_window,
    sample_origin,
)
from ._settings import TrainingSettings
from ._setup import TrainingSetup

__all__ = [
    "GROW_STEPS",
    "SEED_FOREGROUND",
    "WHOLE_IMAGE_CALIBRATION",
    "CalibrationSettings",
    "calibrate_labels",
    "label_candidates",
    "labelling_defaults",
]

Shape = tuple[int, ...]
PathLike = str | os.PathLike[str]

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


@dataclass(frozen=True)
class CalibrationSettings:
    """How :func:`calibrate_labels` labels and where it scores.

    Parameters
    ----------
    channel_roles
        The network's output channels (``embedding`` ..., ``foreground``).
    window
        Output window of each crop (shrunk to the image); ``crops`` random crops. Images
        of at most ``WHOLE_IMAGE_CALIBRATION`` voxels are scored whole instead, in one
        forward pass.
    min_size
        Smallest instance kept by the labelling.
    delta_d
        The loss's distance margin; the candidates are fractions of it.
    crops, seed
        Number of random crops and the seed of their origins.
    progress
        Show the scoring's progress (:func:`stitchsafe.progress.progress_bar`): on a
        large image it takes a while.
    """

    channel_roles: Sequence[str]
    window: Sequence[int]
    min_size: int
    delta_d: float
    crops: int = 4
    seed: int = 0
    progress: bool = False


@dataclass(frozen=True)
class _Source:
    """Where the crops are scored: ``crops`` crops of ``out_window`` from ``image``."""

    image: np.ndarray  # padded (C, *spatial), extended for a whole-image pass
    crops: int
    out_window: Shape
    in_window: Shape
    whole: bool


def calibrate_labels(
    net: Any,
    padded: np.ndarray,
    labels: np.ndarray,
    geometry: ModelGeometry,
    settings: CalibrationSettings,
) -> dict[str, Any]:
    """The labelling parameters that give the best AP@0.5 on crops of the training setup.

    The plain labelling links face-neighbouring foreground voxels whose embeddings are
    closer than a threshold (:func:`stitchsafe.labels.label_array`). In theory
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
    geometry
        The network's geometry.
    settings
        Labelling options, crop window and count (:class:`CalibrationSettings`).

    Returns
    -------
    dict
        ``params`` (the best candidate's labelling parameters), ``ap50``, every
        ``candidate`` with its ``ap50``, ``crops`` and ``window``.
    """
    candidates = label_candidates(settings.delta_d)
    source = _calibration_source(padded, labels.shape, geometry, settings)
    was_training = net.training
    net.eval()
    try:
        scores = _score(net, source, labels, candidates, settings)
    finally:
        net.train(was_training)
    scores /= source.crops
    best = int(np.argmax(scores))
    return {
        "params": candidates[best],
        "ap50": round(float(scores[best]), 4),
        "candidates": [{**c, "ap50": round(float(v), 4)} for c, v in zip(candidates, scores)],
        "crops": source.crops,
        "window": list(source.out_window),
        "whole_image": source.whole,
    }


def _calibration_source(
    padded: np.ndarray,
    shape: Shape,
    geometry: ModelGeometry,
    settings: CalibrationSettings,
) -> _Source:
    """The whole image when one forward pass can take it, else random crops of the window."""
    if math.prod(shape) <= WHOLE_IMAGE_CALIBRATION:
        # Small enough for one forward pass: score whole objects, not crop fragments
        # (large objects cut by crops favour over-merging thresholds).
        out_window = tuple(int(v) for v in shape)
        in_window = geometry.input_for_output(out_window)
        extra = [(0, 0)] + [(0, n - p) for n, p in zip(in_window, padded.shape[1:])]
        image = np.pad(padded, extra, mode="reflect") if any(e for _, e in extra) else padded
        return _Source(image, 1, out_window, in_window, whole=True)
    out_window = geometry.output_shape(
        geometry.input_for_output(default_window(settings.window, geometry, shape))
    )
    in_window = geometry.input_for_output(out_window)
    return _Source(padded, settings.crops, out_window, in_window, whole=False)


def _score(
    net: Any,
    source: _Source,
    labels: np.ndarray,
    candidates: list[dict[str, Any]],
    settings: CalibrationSettings,
) -> np.ndarray:
    """Summed AP@0.5 of every candidate over the crops."""
    rng = np.random.default_rng(settings.seed)
    scores = np.zeros(len(candidates))
    device = next(net.parameters()).device
    params = [
        LabelParams(**c, min_size=settings.min_size, channel_roles=tuple(settings.channel_roles))
        for c in candidates
    ]
    bar = progress_bar(
        source.crops * len(params),
        desc="calibrating the labelling",
        unit="labelling",
        enabled=settings.progress,
    )
    with bar:
        for _ in range(source.crops):
            whole = (0,) * labels.ndim
            o = whole if source.whole else sample_origin(rng, labels.shape, source.out_window)
            box = (slice(None), *(slice(b, b + n) for b, n in zip(o, source.in_window)))
            x = torch.from_numpy(np.ascontiguousarray(source.image[box]))[None]
            with torch.no_grad():
                out = net(x.to(device))
            emb = out[0].cpu().numpy()[(slice(None), *(slice(0, n) for n in source.out_window))]
            gt = labels[tuple(slice(b, b + n) for b, n in zip(o, source.out_window))]
            for i, p in enumerate(params):
                scores[i] += average_precision(gt, label_array(emb, params=p))
                bar.update(1)
    return scores


def labelling_defaults(
    net: Any, setup: TrainingSetup, settings: TrainingSettings
) -> dict[str, Any]:
    """The ``labels`` entry of a trained model's metadata: calibrated, or ``delta_d``."""
    min_size = default_min_size(setup.labels)
    labels_meta: dict[str, Any] = {"min_size": min_size, "foreground_threshold": 0.5}
    if not settings.calibrate:
        # Midway between the farthest voxels of one instance (2 delta_v) and the nearest
        # of two instances (2 delta_d - 2 delta_v) once the loss is satisfied.
        labels_meta["threshold"] = settings.delta_d
        return labels_meta
    # Twice the training window (where the image allows): more whole objects per crop.
    calibration = calibrate_labels(
        net,
        setup.padded,
        setup.labels,
        setup.geometry,
        CalibrationSettings(
            channel_roles=settings.channel_roles,
            window=tuple(2 * w for w in setup.window),
            min_size=min_size,
            delta_d=settings.delta_d,
            seed=settings.seed + 1,
            progress=settings.progress,
        ),
    )
    labels_meta.update(calibration["params"], calibration=calibration)
    return labels_meta
