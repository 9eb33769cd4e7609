"""Volumes in (zarr, OME-Zarr, TIFF), padded reads, OME-Zarr 0.5 out, resume bookkeeping.

:func:`open_volume` opens an input lazily as a :class:`Volume` seen as ``(C, *spatial)``;
:func:`read_padded` reads a box past its edge like ``numpy.pad``; :func:`create_output`
and :func:`create_labels` make OME-Zarr 0.5 images described by an :class:`ImageLayout`,
which :func:`write_block` fills tile by tile (one shard of bounded chunks per tile:
:class:`ChunkPolicy`); :class:`DoneMask` and the run fingerprint let an interrupted run
resume, and :func:`input_identity` says which input a run read. :class:`OutputLock` keeps
each output group to one writer at a time. :class:`PhysicalScale` is an image's voxel
size, units and translation, read from every input format (``Volume.physical``;
:class:`PhysicalSettings` for ``--voxel-size`` and ``--unit``) and written into every
output image. :func:`write_pyramid` adds the resolution levels ``1``, ``2``... of a
complete image blockwise (``mean`` for embeddings, ``stride`` for labels), and
:func:`read_pyramid` lists them; :func:`write_channel_metadata` names the embeddings'
channels, with contrast windows from the data (OMERO metadata, for viewers). The modules
inside are private; import from here.
"""

from __future__ import annotations

from ._array_input import ARRAY_NAME, input_name, is_array, volume_from_array
from ._arrays import (
    mark_complete,
    output_array,
    storage_shape,
    write_block,
)
from ._axes import AxesMismatchError
from ._bookkeeping import (
    BOOKKEEPING,
    DONE,
    bookkeeping_path,
    done_mask_path,
    existing_done_mask,
)
from ._chunk_cache import CACHE_CEILING, CACHE_ENV, CacheStats
from ._chunks import MAX_CHUNK_BYTES, TARGET_VOXELS, ChunkPolicy, StorageChunks
from ._downsample import PYRAMID_METHODS, downsample, pyramid_factors
from ._identity import (
    SAMPLE_BOX_BYTES,
    SAMPLE_BOXES,
    InputIdentity,
    input_differences,
    input_identity,
)
from ._input_checks import channels_mismatch, check_input
from ._label_output import (
    LABELS_OF,
    create_label_image,
    create_labels,
    labels_of,
    prepare_label_image,
    prepare_labels,
)
from ._layout import ImageLayout, OutputSpec
from ._levels import Pyramid, PyramidLevel, read_pyramid
from ._lock import LockOwner, OutputLock, OutputLockedError
from ._ome_image import (
    check_output_group,
    clear_partial_writes,
    inner_path,
    refuse_replacing_reads,
)
from ._omero import SAMPLE_ITEMS, channel_names, write_channel_metadata
from ._open import open_volume
from ._output import (
    EMBEDDINGS,
    create_output,
    default_output_location,
    fallback_note,
    input_image_path,
    output_image,
    prepare_output,
)
from ._padding import (
    PAD_MODES,
    check_finite,
    pad_indices,
    read_padded,
)
from ._physical import (
    OME_SPACE_UNITS,
    PhysicalScale,
    PhysicalSettings,
    canonical_unit,
)
from ._physical_formats import image_axes
from ._place import (
    place_absolute,
    place_copy,
    place_create,
    place_exists,
    place_isdir,
    place_isfile,
    place_keys,
    place_listdir,
    place_read,
    place_remove,
    place_size,
    place_write,
)
from ._pyramid import write_pyramid
from ._resume import (
    MAX_RESUME_TILES,
    TILE_ARRAY,
    DoneMask,
    check_fingerprint,
    file_sha256,
    run_fingerprint,
    with_sources,
)
from ._selection import InputSelection
from ._series import OME_GROUP, list_images
from ._settings import (
    OutputSettings,
)
from ._stores import is_url, parse_storage_options, use_storage_options
from ._tile_order import TileSubset, input_tile_block
from ._volume import Volume
from ._zarr_meta import zarr_node

__all__ = [
    "ARRAY_NAME",
    "AxesMismatchError",
    "BOOKKEEPING",
    "CACHE_CEILING",
    "CACHE_ENV",
    "CacheStats",
    "ChunkPolicy",
    "DONE",
    "DoneMask",
    "EMBEDDINGS",
    "ImageLayout",
    "InputIdentity",
    "InputSelection",
    "LABELS_OF",
    "LockOwner",
    "MAX_CHUNK_BYTES",
    "MAX_RESUME_TILES",
    "OME_GROUP",
    "OME_SPACE_UNITS",
    "OutputLock",
    "OutputLockedError",
    "OutputSettings",
    "OutputSpec",
    "PAD_MODES",
    "PYRAMID_METHODS",
    "PhysicalScale",
    "PhysicalSettings",
    "Pyramid",
    "PyramidLevel",
    "SAMPLE_BOXES",
    "SAMPLE_BOX_BYTES",
    "SAMPLE_ITEMS",
    "StorageChunks",
    "TARGET_VOXELS",
    "TILE_ARRAY",
    "TileSubset",
    "Volume",
    "bookkeeping_path",
    "canonical_unit",
    "channel_names",
    "channels_mismatch",
    "check_fingerprint",
    "check_finite",
    "check_input",
    "check_output_group",
    "clear_partial_writes",
    "create_label_image",
    "create_labels",
    "create_output",
    "default_output_location",
    "done_mask_path",
    "downsample",
    "existing_done_mask",
    "fallback_note",
    "file_sha256",
    "image_axes",
    "inner_path",
    "input_differences",
    "input_identity",
    "input_image_path",
    "input_name",
    "input_tile_block",
    "is_array",
    "is_url",
    "labels_of",
    "list_images",
    "mark_complete",
    "open_volume",
    "output_array",
    "output_image",
    "pad_indices",
    "place_absolute",
    "place_copy",
    "place_create",
    "place_exists",
    "place_isdir",
    "place_isfile",
    "place_keys",
    "place_listdir",
    "place_read",
    "place_remove",
    "place_size",
    "place_write",
    "parse_storage_options",
    "prepare_label_image",
    "prepare_labels",
    "prepare_output",
    "pyramid_factors",
    "read_padded",
    "read_pyramid",
    "refuse_replacing_reads",
    "run_fingerprint",
    "storage_shape",
    "use_storage_options",
    "volume_from_array",
    "with_sources",
    "write_block",
    "write_channel_metadata",
    "write_pyramid",
    "zarr_node",
]
