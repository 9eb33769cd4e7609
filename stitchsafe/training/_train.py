"""Train the built-in valid-conv U-Net so that its embeddings stitch exactly.

:func:`train` draws crops at every phase with an output window larger than the period
(:mod:`stitchsafe.training` enforces the paper's rule), normalises intensities once
with statistics of the whole training image (as :func:`stitchsafe.engine.compute_normalization`
does at prediction), never per crop, minimises the discriminative loss plus a foreground
term (:mod:`stitchsafe.training`), measures the instance-labelling threshold that works best on
the training data, and writes a stitchsafe checkpoint whose metadata ``predict`` needs no
flags beside. Its keywords build one :class:`stitchsafe.training.TrainingSettings`;
:func:`train_with_settings` runs the steps on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..engine import resolve_device
from ..models import build_unet
from ._calibration import labelling_defaults
from ._checkpoint import (
    TrainResult,
    checkpoint_metadata,
    load_init_weights,
    save_trained,
)
from ._loop import cpu_threads, crop_batches, fit
from ._settings import EMBEDDING_DIMS, LEARNING_RATE, TrainingSettings
from ._setup import prepare_training

__all__ = ["train", "train_with_settings"]

PathLike = str | os.PathLike[str]


def train(  # noqa: PLR0913 - public keywords (CLI, tests, examples); one TrainingSettings inside
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
    **options
        Every other keyword is the field of :class:`stitchsafe.training.TrainingSettings`
        of the same name, documented there (architecture, window, optimiser, loss margins,
        normalisation, padding, device, outputs, calibration, ``init``).

    Returns
    -------
    TrainResult
    """
    settings = TrainingSettings(
        output=output,
        dims=dims,
        depth=depth,
        pooling_factors=pooling_factors,
        features=features,
        embedding_dims=embedding_dims,
        iterations=iterations,
        window=window,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        progress=progress,
        export_pt2=export_pt2,
        delta_v=delta_v,
        delta_d=delta_d,
        foreground_target=foreground_target,
        normalize=normalize,
        percentiles=percentiles,
        pad_mode=pad_mode,
        image_key=image_key,
        labels_key=labels_key,
        threads=threads,
        overwrite=overwrite,
        calibrate=calibrate,
        command=command,
        init=init,
    )
    return train_with_settings(image, labels, settings)


def train_with_settings(
    image: np.ndarray | PathLike, labels: np.ndarray | PathLike, settings: TrainingSettings
) -> TrainResult:
    """:func:`train` on one :class:`stitchsafe.training.TrainingSettings` value.

    Steps: refuse existing outputs -> resolve and prepare the data -> build (or load) the
    network -> fit it on random crops -> calibrate the labelling defaults -> write the
    checkpoint.
    """
    settings.refuse_existing_outputs()
    setup = prepare_training(image, labels, settings)
    device = resolve_device(settings.device)
    net = build_unet(setup.config, seed=settings.seed)
    init_sha256 = (
        None if settings.init is None else load_init_weights(net, settings.init, setup.config)
    )
    net = net.to(device).train()
    rng = np.random.default_rng(settings.seed)
    batches = crop_batches(setup, settings.batch_size, rng, device)
    with cpu_threads(device, settings.threads):
        fitted = fit(net, batches, settings.loss_function(), setup.iterations, settings)
        labels_meta = labelling_defaults(net, setup, settings)
    metadata = checkpoint_metadata(
        settings, setup, fitted, labels=labels_meta, device=device, init_sha256=init_sha256
    )
    net = net.cpu().eval()
    exported = save_trained(net, metadata, settings, setup)
    return TrainResult(
        output=os.fspath(settings.output_path),
        log=os.fspath(settings.log_path),
        export=exported,
        metadata=metadata,
        final_loss=fitted.final_loss,
        iterations=setup.iterations,
        seconds=fitted.seconds,
        device=str(device),
        window=setup.window,
        input_window=setup.input_window,
    )
