"""What one training run works on: the resolved architecture and windows, and prepared arrays.

:func:`prepare_training` turns :class:`stitchsafe.training.TrainingSettings` and the data
into a :class:`TrainingSetup`: the dimensionality, the U-Net configuration and geometry,
the output and input windows (checked against the training rule and the image), the image
normalised once with statistics of the whole image (as
:func:`stitchsafe.engine.compute_normalization` does at prediction, never per crop) and
padded by the halo, and the instance and foreground targets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ..engine import Normalization, compute_normalization
from ..geometry import ModelGeometry, normalize_pooling_factors
from ..io import Volume
from ..models import UNetConfig
from ._data import (
    ArrayVolume,
    augmentations,
    check_training_window,
    check_window_fits,
    contact_voxels,
    default_window,
    describe_source,
    infer_dims,
    load_training_data,
)
from ._settings import DEFAULTS, Defaults, TrainingSettings, check_dims

__all__ = ["TrainingSetup", "pad_for_training", "prepare_training"]

Shape = tuple[int, ...]
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class TrainingSetup:
    """The resolved run: architecture, windows, and the arrays crops are drawn from."""

    config: UNetConfig
    geometry: ModelGeometry
    iterations: int
    window: Shape  # the loss's output window (the raw output of ``input_window``)
    input_window: Shape
    labels: np.ndarray  # (*spatial) int64 instance ids
    normalization: Normalization
    padded: np.ndarray  # (C, *spatial) normalised, padded by the halo
    targets: np.ndarray  # (2, *spatial): instance ids, foreground target
    flips: Shape
    planes: tuple[tuple[int, int], ...]
    sources: tuple[str, str]  # how the image and the labels are recorded

    @property
    def volume_shape(self) -> Shape:
        """The training image's spatial shape."""
        return tuple(self.labels.shape)


def prepare_training(
    image: np.ndarray | PathLike, labels: np.ndarray | PathLike, settings: TrainingSettings
) -> TrainingSetup:
    """Resolve the defaults for the data, load and check it, normalise, pad and target it."""
    dims = check_dims(
        settings.dims if settings.dims is not None else infer_dims(labels, settings.labels_key)
    )
    defaults = DEFAULTS[dims]
    pooling = _pooling_factors(settings, defaults, dims)
    img, lab = load_training_data(
        image, labels, dims=dims, image_key=settings.image_key, labels_key=settings.labels_key
    )
    config = UNetConfig(
        dims=dims,
        in_channels=img.shape[0],
        out_channels=settings.embedding_dims + 1,
        pooling_factors=pooling,
        features=settings.features if settings.features is not None else defaults.features,
    )
    geometry = config.geometry()
    wanted = _window(settings.window, defaults, geometry, lab.shape)
    check_training_window(wanted, geometry)
    input_window = geometry.input_for_output(wanted)
    out_window = geometry.output_shape(input_window)
    check_window_fits(lab.shape, out_window, geometry)
    sources = (describe_source(image), describe_source(labels))
    norm = compute_normalization(
        cast(Volume, ArrayVolume(img, sources[0])),
        method=settings.normalize,
        percentiles=settings.percentiles,
    )
    flips, planes = augmentations(pooling, geometry)
    return TrainingSetup(
        config=config,
        geometry=geometry,
        iterations=settings.iterations if settings.iterations is not None else defaults.iterations,
        window=out_window,
        input_window=input_window,
        labels=lab,
        normalization=norm,
        padded=pad_for_training(img, norm, geometry, settings.pad_mode),
        targets=_targets(lab, settings.foreground_target),
        flips=flips,
        planes=planes,
        sources=sources,
    )


def pad_for_training(
    image: np.ndarray, norm: Normalization, geometry: ModelGeometry, pad_mode: str
) -> np.ndarray:
    """The normalised ``(C, *spatial)`` image padded by the halo, so crops reach its border."""
    return np.pad(norm(image), [(0, 0), *geometry.halo], mode=cast(Any, pad_mode))


def _pooling_factors(
    settings: TrainingSettings, defaults: Defaults, dims: int
) -> tuple[Shape, ...]:
    """The pooling factors asked for (a depth alone: factor 2), else the defaults."""
    if settings.pooling_factors is None and settings.depth is None:
        return defaults.pooling_factors
    given = settings.pooling_factors if settings.pooling_factors is not None else 2
    return normalize_pooling_factors(given, dims=dims, depth=settings.depth)


def _window(
    window: Sequence[int] | int | None,
    defaults: Defaults,
    geometry: ModelGeometry,
    volume_shape: Sequence[int],
) -> Shape:
    """The output window asked for, or the default shrunk to the image."""
    if window is None:
        return default_window(defaults.window, geometry, volume_shape)
    if isinstance(window, int):
        return (window,) * geometry.dims
    return tuple(window)


def _targets(labels: np.ndarray, foreground_target: str) -> np.ndarray:
    """Channel 0: instance ids; channel 1: the foreground target.

    The target is computed on the whole volume so that crops never see a contact cut off at
    their edge.
    """
    fg_target = labels > 0
    if foreground_target == "separated":
        fg_target &= ~contact_voxels(labels)
    return np.stack([labels, fg_target.astype(np.int64)])
