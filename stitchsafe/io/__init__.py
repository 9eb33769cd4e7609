"""Volumes in (zarr, OME-Zarr, TIFF), padded reads, OME-Zarr 0.5 out, resume bookkeeping.

:func:`open_volume` opens an input lazily as a :class:`Volume` seen as ``(C, *spatial)``;
:func:`read_padded` reads a box past its edge like ``numpy.pad``; :func:`create_output`
and :func:`create_labels` make OME-Zarr 0.5 images described by an :class:`ImageLayout`,
which :func:`write_block` fills tile by tile (one shard of bounded chunks per tile:
:class:`ChunkPolicy`; on a local disk stored by :func:`write_whole_shard`);
:class:`DoneMask` and the run fingerprint let an interrupted run resume, and
:func:`input_identity` says which input a run read. :class:`OutputLock` keeps each
output group to one writer at a time. :class:`PhysicalScale` is an image's voxel
size, units and translation, read from every input format (``Volume.physical``;
:class:`PhysicalSettings` for ``--voxel-size`` and ``--unit``) and written into every
output image. :func:`write_pyramid` adds the resolution levels ``1``, ``2``... of a
complete image blockwise (``mean`` for embeddings, ``stride`` for labels), from level 1
when the tiles wrote it (:func:`tiled_level_one`), and :func:`read_pyramid` lists them;
:func:`write_channel_metadata` names the embeddings' channels, with contrast windows from
the data (OMERO metadata, for viewers). The modules inside are private; import from here.
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
from ._lease import LEASE_S, LeaseRenewal, lease_left, utc_now
from ._levels import Pyramid, PyramidLevel, read_pyramid
from ._lock import OutputLock, OutputLockedError
from ._lock_owner import LockOwner
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
from ._shard_file import write_whole_shard
from ._stores import is_url, parse_storage_options, use_storage_options
from ._tile_order import TileSubset, input_tile_block
from ._tiled_level import level_one_of, tiled_level_one
from ._volume import Volume
from ._zarr_meta import zarr_node

__all__ = [
    "ARRAY_NAME",
    "AxesMismatchError",
    "BOOKKEEPING",
    "bookkeeping_path",
    "CACHE_CEILING",
    "CACHE_ENV",
    "CacheStats",
    "canonical_unit",
    "channel_names",
    "channels_mismatch",
    "check_fingerprint",
    "check_finite",
    "check_input",
    "check_output_group",
    "ChunkPolicy",
    "clear_partial_writes",
    "create_label_image",
    "create_labels",
    "create_output",
    "default_output_location",
    "DONE",
    "done_mask_path",
    "DoneMask",
    "downsample",
    "EMBEDDINGS",
    "existing_done_mask",
    "fallback_note",
    "file_sha256",
    "image_axes",
    "ImageLayout",
    "inner_path",
    "input_differences",
    "input_identity",
    "input_image_path",
    "input_name",
    "input_tile_block",
    "InputIdentity",
    "InputSelection",
    "is_array",
    "is_url",
    "labels_of",
    "LABELS_OF",
    "lease_left",
    "LEASE_S",
    "LeaseRenewal",
    "list_images",
    "LockOwner",
    "mark_complete",
    "MAX_CHUNK_BYTES",
    "MAX_RESUME_TILES",
    "OME_GROUP",
    "OME_SPACE_UNITS",
    "open_volume",
    "output_array",
    "output_image",
    "OutputLock",
    "OutputLockedError",
    "OutputSettings",
    "OutputSpec",
    "pad_indices",
    "PAD_MODES",
    "parse_storage_options",
    "PhysicalScale",
    "PhysicalSettings",
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
    "prepare_label_image",
    "prepare_labels",
    "prepare_output",
    "Pyramid",
    "pyramid_factors",
    "PYRAMID_METHODS",
    "PyramidLevel",
    "read_padded",
    "read_pyramid",
    "refuse_replacing_reads",
    "run_fingerprint",
    "SAMPLE_BOX_BYTES",
    "SAMPLE_BOXES",
    "SAMPLE_ITEMS",
    "storage_shape",
    "StorageChunks",
    "TARGET_VOXELS",
    "TILE_ARRAY",
    "TileSubset",
    "use_storage_options",
    "utc_now",
    "Volume",
    "volume_from_array",
    "with_sources",
    "write_block",
    "write_channel_metadata",
    "write_pyramid",
    "write_whole_shard",
    "level_one_of",
    "tiled_level_one",
    "zarr_node",
]
