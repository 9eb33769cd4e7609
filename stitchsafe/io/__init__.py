"""Volumes in (zarr, OME-Zarr, TIFF), padded reads, OME-Zarr 0.5 out, resume bookkeeping.

:func:`open_volume` opens an input lazily as a :class:`Volume` seen as ``(C, *spatial)``;
:func:`read_padded` reads a box past its edge like ``numpy.pad``; :func:`create_output`
and :func:`create_labels` make OME-Zarr 0.5 images described by an :class:`ImageLayout`,
which :func:`write_block` fills tile by tile; :class:`DoneMask` and the run fingerprint let
an interrupted run resume. The modules inside are private; import from here.
"""

from __future__ import annotations

from ._arrays import (
    mark_complete,
    output_array,
    write_block,
)
from ._label_output import (
    create_label_image,
    create_labels,
    prepare_label_image,
    prepare_labels,
)
from ._layout import ImageLayout, OutputSpec
from ._open import open_volume
from ._output import (
    create_output,
    default_output_location,
    prepare_output,
)
from ._padding import (
    PAD_MODES,
    pad_indices,
    read_padded,
)
from ._resume import (
    DONE,
    DoneMask,
    TileSubset,
    check_fingerprint,
    file_sha256,
    run_fingerprint,
)
from ._settings import (
    OutputSettings,
)
from ._volume import Volume
from ._zarr_meta import zarr_node

__all__ = [
    "DONE",
    "DoneMask",
    "ImageLayout",
    "OutputSettings",
    "OutputSpec",
    "PAD_MODES",
    "TileSubset",
    "Volume",
    "check_fingerprint",
    "create_label_image",
    "create_labels",
    "create_output",
    "default_output_location",
    "file_sha256",
    "mark_complete",
    "open_volume",
    "output_array",
    "pad_indices",
    "prepare_label_image",
    "prepare_labels",
    "prepare_output",
    "read_padded",
    "run_fingerprint",
    "write_block",
    "zarr_node",
]
