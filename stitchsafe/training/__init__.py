"""Training stitch-safe models: settings, loop, label calibration, data, losses, synthetic cells.

:func:`train` builds a :class:`TrainingSettings` from its keywords, prepares the data
(the paper's window rule, whole-image normalisation), fits the built-in U-Net with the
discriminative loss on crops at every phase, calibrates the labelling defaults and writes
a checkpoint whose metadata ``predict`` needs no flags beside; the modules inside are
private, import from here.
"""

from __future__ import annotations

from ._calibration import (
    GROW_STEPS,
    SEED_FOREGROUND,
    WHOLE_IMAGE_CALIBRATION,
    CalibrationSettings,
    calibrate_labels,
    label_candidates,
)
from ._cells import synthetic_cells
from ._checkpoint import TrainResult
from ._data import (
    ArrayVolume,
    augment,
    augmentations,
    check_training_window,
    contact_voxels,
    default_min_size,
    default_window,
    describe_source,
    infer_dims,
    load_training_data,
    sample_origin,
)
from ._edit import average_weights, recalibrate, set_labelling_defaults
from ._losses import DiscriminativeLoss, LossTerms, discriminative_terms
from ._settings import (
    DEFAULTS,
    EMBEDDING_DIMS,
    FOREGROUND_TARGETS,
    LEARNING_RATE,
    Defaults,
    TrainingSettings,
)
from ._setup import TrainingSetup, prepare_training
from ._synthetic import grid_spacing, same_looking_objects, smooth_field
from ._train import train, train_with_settings

__all__ = [
    "ArrayVolume",
    "CalibrationSettings",
    "DEFAULTS",
    "Defaults",
    "DiscriminativeLoss",
    "EMBEDDING_DIMS",
    "FOREGROUND_TARGETS",
    "GROW_STEPS",
    "LEARNING_RATE",
    "LossTerms",
    "SEED_FOREGROUND",
    "TrainResult",
    "TrainingSetup",
    "TrainingSettings",
    "WHOLE_IMAGE_CALIBRATION",
    "augment",
    "average_weights",
    "augmentations",
    "calibrate_labels",
    "check_training_window",
    "contact_voxels",
    "default_min_size",
    "default_window",
    "describe_source",
    "discriminative_terms",
    "grid_spacing",
    "infer_dims",
    "label_candidates",
    "load_training_data",
    "prepare_training",
    "recalibrate",
    "same_looking_objects",
    "sample_origin",
    "set_labelling_defaults",
    "smooth_field",
    "synthetic_cells",
    "train",
    "train_with_settings",
]
