"""Volumes in (zarr, OME-Zarr, TIFF), padded reads, OME-Zarr 0.5 out, resume bookkeeping.

:func:`open_volume` opens an input lazily as a :class:`Volume` seen as ``(C, *spatial)``;
:func:`read_padded` reads a box past its edge like ``numpy.pad``; :func:`create_output`
and :func:`create_labels` make OME-Zarr 0.5 images described by an :class:`ImageLayout`,
which :func:`write_block` fills tile by tile; :class:`DoneMask` and the run fingerprint let
an interrupted run resume, and :func:`input_identity` says which input a run read.
:class:`OutputLock` keeps each output group to one writer at a time. The modules inside
are private; import from here.
"""

from __future__ import annotations

from ._arrays import (
    mark_complete,
    output_array,
    write_block,
)
from ._axes import AxesMismatchError
from ._identity import (
    SAMPLE_BOX_BYTES,
    SAMPLE_BOXES,
    InputIdentity,
    input_differences,
    input_identity,
)
from ._label_output import (
    create_label_image,
    create_labels,
    prepare_label_image,
    prepare_labels,
)
from ._layout import ImageLayout, OutputSpec
from ._lock import LockOwner, OutputLock, OutputLockedError
from ._ome_image import check_output_group, refuse_replacing_reads
from ._open import open_volume
from ._output import (
    create_output,
    default_output_location,
    prepare_output,
)
from ._padding import (
    PAD_MODES,
    check_finite,
    pad_indices,
    read_padded,
)
from ._resume import (
    DONE,
    MAX_RESUME_TILES,
    TILE_ARRAY,
    DoneMask,
    TileSubset,
    check_fingerprint,
    file_sha256,
    run_fingerprint,
    with_sources,
)
from ._settings import (
    OutputSettings,
)
from ._volume import Volume
from ._zarr_meta import zarr_node

__all__ = [
    "AxesMismatchError",
    "DONE",
    "DoneMask",
    "ImageLayout",
    "InputIdentity",
    "LockOwner",
    "MAX_RESUME_TILES",
    "OutputLock",
    "OutputLockedError",
    "OutputSettings",
    "OutputSpec",
    "PAD_MODES",
    "SAMPLE_BOXES",
    "SAMPLE_BOX_BYTES",
    "TILE_ARRAY",
    "TileSubset",
    "Volume",
    "check_fingerprint",
    "check_finite",
    "check_output_group",
    "create_label_image",
    "create_labels",
    "create_output",
    "default_output_location",
    "file_sha256",
    "input_differences",
    "input_identity",
    "mark_complete",
    "open_volume",
    "output_array",
    "pad_indices",
    "prepare_label_image",
    "prepare_labels",
    "prepare_output",
    "read_padded",
    "refuse_replacing_reads",
    "run_fingerprint",
    "with_sources",
    "write_block",
    "zarr_node",
]
