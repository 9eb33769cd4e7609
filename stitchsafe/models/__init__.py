"""Model formats, their metadata, probing, geometry resolution, the built-in U-Net, bundled weights.

The modules inside are private; import from here.
"""

from __future__ import annotations

from . import bioimageio
from ._bundled import BUNDLED, bundled_model, model_for_input
from ._cross_check import cross_check, probe_with_period
from ._integrity import verify_zip
from ._load import detect_format, load_model
from ._loaded import (
    CHECKPOINT_FORMAT,
    FORMATS,
    TORCHSCRIPT_NOTE,
    LoadedModel,
    dims_from_program,
    dims_from_weights,
    quiet_torchscript,
)
from ._locality import check_stitchable, suspect_layers, unstitchable_error
from ._metadata import (
    METADATA_KEY,
    METADATA_VERSION,
    metadata_geometry,
    unet_metadata,
    validate_metadata,
)
from ._probe import measure_period, probe_geometry
from ._probe_runner import RTOL, Lattice, Runner, structured_input
from ._remembered import CACHE_ENV, geometry_cache_dir, remembered_geometry
from ._resolve import resolve_geometry
from ._save import save_checkpoint, save_export, save_torchscript
from ._size_scan import DEFAULT_CAP, SizeScan, scan_sizes
from ._unet import ConvBlock, UNet, UNetConfig, Upsample, build_unet, center_crop
from ._untrusted import check_export_archive, check_torchscript, untrusted_error
from .bioimageio import ExportResult, export_bioimageio

__all__ = [
    "BUNDLED",
    "CACHE_ENV",
    "CHECKPOINT_FORMAT",
    "ConvBlock",
    "DEFAULT_CAP",
    "ExportResult",
    "FORMATS",
    "Lattice",
    "LoadedModel",
    "METADATA_KEY",
    "METADATA_VERSION",
    "RTOL",
    "Runner",
    "SizeScan",
    "TORCHSCRIPT_NOTE",
    "UNet",
    "UNetConfig",
    "Upsample",
    "bioimageio",
    "build_unet",
    "bundled_model",
    "center_crop",
    "check_export_archive",
    "check_stitchable",
    "check_torchscript",
    "cross_check",
    "detect_format",
    "dims_from_program",
    "dims_from_weights",
    "export_bioimageio",
    "geometry_cache_dir",
    "load_model",
    "measure_period",
    "metadata_geometry",
    "model_for_input",
    "probe_geometry",
    "probe_with_period",
    "quiet_torchscript",
    "remembered_geometry",
    "resolve_geometry",
    "save_checkpoint",
    "save_export",
    "save_torchscript",
    "scan_sizes",
    "structured_input",
    "suspect_layers",
    "unet_metadata",
    "unstitchable_error",
    "untrusted_error",
    "validate_metadata",
    "verify_zip",
]
