"""Volume input, padded reads and OME-Zarr 0.5 output, under one import path.

A facade: the code lives in :mod:`stitchsafe.volume` (opening zarr / OME-Zarr / TIFF
inputs), :mod:`stitchsafe.padding` (``numpy.pad``-exact index maps and padded reads) and
:mod:`stitchsafe.output` (OME-Zarr 0.5 output on zarr v3). ``from stitchsafe.io import ...``
keeps working for all of their public names.
"""

from __future__ import annotations

from .output import (
    OutputSpec,
    default_output_location,
    mark_complete,
    prepare_label_image,
    prepare_labels,
    prepare_output,
    write_block,
)
from .padding import PAD_MODES as PAD_MODES
from .padding import pad_indices, read_padded
from .volume import Volume, open_volume

__all__ = [
    "OutputSpec",
    "Volume",
    "default_output_location",
    "mark_complete",
    "open_volume",
    "pad_indices",
    "prepare_label_image",
    "prepare_labels",
    "prepare_output",
    "read_padded",
    "write_block",
]
