"""The input volume: a lazily read stored array, seen as ``(C, *spatial)``.

Inputs are opened lazily: :meth:`Volume.read` touches only the storage chunks (or TIFF
tiles/pages) that a box needs, so a 200 GB volume costs no more memory than one tile.
:func:`make_volume` builds one from a stored array whose axes :mod:`._axes` has mapped;
:func:`stitchsafe.io.open_volume` finds that array.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tifffile
import zarr

from ..errors import StitchsafeError
from ..geometry import Box
from ._axes import StoredAxes
from ._bioio_file import MICROSCOPE_KINDS, open_array
from ._chunk_cache import CacheStats, cache_stats, cached_read, forget_chunks
from ._hdf5_file import open_hdf5_dataset
from ._physical import PhysicalScale
from ._quiet_logs import quiet_loggers
from ._read_errors import read_failure
from ._selection import InputSelection

__all__ = ["Volume"]

SUPPORTED_INPUTS = (
    "stitchsafe reads zarr v2/v3 arrays, zarr groups together with --input-key (the array "
    "path inside the group), OME-Zarr images (0.4 on zarr v2, 0.5 on zarr v3), "
    "TIFF/BigTIFF files and HDF5 datasets (file.h5 with --input-key, or file.h5/dataset)"
)


class _Source:
    """How to reach the stored array, and how its axes map onto ``(C, *spatial)``.

    Holds the open handle; pickling drops it so that a :class:`Volume` sent to another
    process (dask distributed) reopens the file there on first read.
    """

    def __init__(
        self,
        kind: str,
        location: str,
        *,
        series: int = 0,
        key: str | None = None,
        selection: tuple[str | int, ...],
    ) -> None:
        self.kind = kind
        self.location = location
        self.series = series
        self.key = key  # an HDF5 dataset's path in the file
        # One entry per stored axis: "c" (channel), an int k (spatial axis k) or "drop"
        # (an axis indexed away: at fixed[axis], the --timepoint on a time axis, else 0).
        self.selection = selection
        self.fixed: tuple[int, ...] = (0,) * len(selection)
        self.picks: tuple[int, ...] | None = None  # the --channel channels, in order
        self.level = 0  # a TIFF's pyramid level
        self.memory: Any = None  # an in-memory input: pickled with the source
        self._handle: Any = None
        self._closer: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_handle=None, _closer=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def array(self) -> Any:
        if self._handle is None:
            with self._lock:
                if self._handle is None:
                    self._handle, self._closer = _open_handle(self)
        return self._handle

    def close(self) -> None:
        with self._lock:
            if self._closer is not None:
                self._closer()
            self._handle = self._closer = None

    def __del__(self) -> None:
        # Volumes are often dropped without close(); do not leak TIFF file handles.
        if getattr(self, "_closer", None) is not None:
            self._closer()


def _open_handle(source: _Source) -> tuple[Any, Callable[[], None] | None]:
    """The opened array (zarr, HDF5 or a TIFF memory map) and how to close it (or ``None``)."""
    kind, location, series, level = source.kind, source.location, source.series, source.level
    if kind == "array":  # an array in memory (numpy, dask, an opened zarr array)
        return source.memory, None
    if kind == "hdf5":  # read-only, once per process; h5py serialises the reads
        dataset, handle = open_hdf5_dataset(location, str(source.key))
        return dataset, handle.close
    if kind in MICROSCOPE_KINDS:  # CZI, ND2, LIF through bioio; reads serialised
        return open_array(location, kind, series), None
    if kind != "tiff":
        return zarr.open_array(store=location, mode="r"), None
    with quiet_loggers("tifffile"), tifffile.TiffFile(location) as tf:
        s = tf.series[series].levels[level]
        contiguous = s.dataoffset is not None
    if contiguous:
        # Uncompressed contiguous data: a memory map reads only the touched pages, even
        # for a single huge strip that the zarr store would decode as one chunk.
        mm = tifffile.memmap(location, series=series, level=level, mode="r")
        return mm, None
    with quiet_loggers("tifffile"):
        store = tifffile.imread(location, aszarr=True, series=series, level=level)
    return zarr.open_array(store=store, mode="r"), store.close


@dataclass(frozen=True, eq=False)
class Volume:
    """A lazily read input volume, seen as ``(C, *spatial)``.

    Use :func:`open_volume` to create one. Reads are thread-safe; a pickled volume
    reopens its file on first read in the receiving process.

    Attributes
    ----------
    path
        What the user passed (file, array or group path).
    kind
        ``"zarr"``, ``"ome-zarr"``, ``"tiff"`` or ``"hdf5"``.
    shape
        Spatial shape only, ``(Z, Y, X)`` or ``(Y, X)``.
    channels
        Number of channels; 1 when the data has no channel axis.
    has_channel_axis
        Whether the stored data has a channel axis.
    dtype
        Stored data type.
    container
        Path of the zarr group (or HDF5 file) the image lives in (``None`` for TIFF or a
        bare array).
    array_path
        Path of the array (or HDF5 dataset) inside ``container`` (e.g. ``"0"`` or ``"raw"``).
    axes
        Names of the spatial axes, e.g. ``("z", "y", "x")``.
    physical
        Voxel size, unit and translation per spatial axis: the input's own metadata
        (:mod:`._physical` reads every format's), or ``--voxel-size``/``--unit``; voxel
        size 1, no unit and no translation when unknown.
    selection
        The channels, timepoint and resolution level read (``--channel``, ``--timepoint``,
        ``--level``); :attr:`channels` counts the channels read.
    named_axes
        Whether the stored axes are named (by the input or ``--axes``), not read by position.
    """

    path: str
    kind: str
    shape: tuple[int, ...]
    channels: int
    has_channel_axis: bool
    dtype: np.dtype
    container: str | None
    array_path: str | None
    axes: tuple[str, ...]
    physical: PhysicalScale
    _source: _Source = field(repr=False)
    selection: InputSelection = field(default=InputSelection())
    named_axes: bool = True

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.shape)

    @property
    def scale(self) -> tuple[float, ...]:
        """Voxel size per spatial axis (``physical.scale``)."""
        return tuple(self.physical.scale)

    @property
    def units(self) -> tuple[str | None, ...]:
        """Unit per spatial axis, ``None`` when unknown (``physical.units``)."""
        return tuple(self.physical.units or ())

    def read(self, box: Box) -> np.ndarray:
        """Read ``box`` (inside the volume) as ``(C, *box.shape)`` in the stored dtype.

        Only the storage chunks that intersect ``box`` are read.
        """
        if box.ndim != self.ndim or not Box.from_shape(self.shape).contains(box):
            raise ValueError(f"box {box} does not lie inside the volume of shape {self.shape}")
        if box.empty:
            return np.zeros((self.channels, *box.shape), dtype=self.dtype)
        index: list[int | slice] = []
        picks = self._source.picks
        for axis, role in enumerate(self._source.selection):
            if role == "drop":
                index.append(self._source.fixed[axis])
            elif role == "c":  # the span of the channels picked, or all
                index.append(slice(None) if picks is None else slice(min(picks), max(picks) + 1))
            else:
                index.append(slice(box.begin[int(role)], box.end[int(role)]))
        try:
            raw = cached_read(self._source, self._source.array(), tuple(index))
            # Copy out of a memory map so the caller owns plain memory that outlives close().
            data = np.array(raw) if isinstance(raw, np.memmap) else np.asarray(raw)
        except (MemoryError, StitchsafeError):  # e.g. a bad STITCHSAFE_CHUNK_CACHE_MB
            raise
        except Exception as e:  # decoders, stores and files raise many types
            raise read_failure(self._source, box, self.axes, tuple(index), e) from None
        kept = [r for r in self._source.selection if r != "drop"]
        data = np.moveaxis(data, kept.index("c"), 0) if "c" in kept else data[np.newaxis]
        if picks is not None and "c" in kept:
            data = data[[c - min(picks) for c in picks]]
        return np.ascontiguousarray(data)

    def stored_array(self) -> Any:
        """The stored array as opened (zarr, HDF5 dataset, memory map, or the array given)."""
        return self._source.array()

    def stored_roles(self) -> tuple[str | int, ...]:
        """What each stored axis is: ``"c"`` (channel), ``k`` (spatial axis ``k``) or
        ``"drop"`` (indexed away: a timepoint, a single-valued axis)."""
        return tuple(self._source.selection)

    def chunk_cache_stats(self) -> CacheStats | None:
        """Counts of this input's chunk cache in this process (``None``: none, or no reads)."""
        return cache_stats(self._source)

    def close(self) -> None:
        """Release file handles (TIFF); reading again reopens them."""
        self._source.close()
        forget_chunks(self._source)

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_volume(  # noqa: PLR0913 - the fields of a Volume, each given once by its reader
    path: str,
    kind: str,
    dtype: np.dtype,
    axes: StoredAxes,
    location: str,
    *,
    physical: PhysicalScale | None = None,
    series: int = 0,
    container: str | None = None,
    array_path: str | None = None,
    chosen: InputSelection | None = None,
    memory: Any = None,
) -> Volume:
    """A :class:`Volume` of the stored array at ``location`` (a TIFF ``series``), or of
    ``memory``, an array in memory (``kind`` ``"array"``).

    ``path`` is what the user passed, ``kind`` ``"zarr"``, ``"ome-zarr"``, ``"tiff"`` or
    ``"hdf5"`` (an HDF5 file's dataset is ``array_path``);
    ``physical`` its spatial axes' physical scale (default: none known); ``container`` and
    ``array_path`` say where a zarr array lives (see :class:`Volume`); ``chosen`` the
    selection the reader applied (``axes`` holds its channels and timepoint; a TIFF's
    ``level`` is read from here).
    """
    spatial = axes.spatial_shape
    if any(s < 1 for s in spatial):
        raise StitchsafeError(f"the input {path!r} is empty (spatial shape {spatial}).")
    if physical is not None and physical.ndim != len(spatial):
        raise ValueError(f"physical scale {physical} for {len(spatial)} spatial axes")
    source_kind = kind if kind in ("tiff", "hdf5", "array", *MICROSCOPE_KINDS) else "zarr"
    key = array_path if kind == "hdf5" else None
    chosen = chosen if chosen is not None else InputSelection()
    source = _Source(source_kind, location, series=series, key=key, selection=axes.selection)
    # The channels and timepoint read (._axes), and a TIFF's pyramid level.
    source.fixed, source.picks = axes.fixed or source.fixed, axes.picks
    source.level = (chosen.level or 0) if kind == "tiff" else 0
    source.memory = memory
    return Volume(
        path=path,
        kind=kind,
        shape=spatial,
        channels=axes.channels,
        has_channel_axis=axes.channel_axis is not None,
        dtype=np.dtype(dtype),
        container=container,
        array_path=array_path,
        axes=axes.spatial_names,
        physical=physical if physical is not None else PhysicalScale.default(len(spatial)),
        _source=source,
        selection=chosen,
        named_axes=any(n is not None for n in axes.names),
    )


def check_dtype(dtype: np.dtype, where: str) -> None:
    """Refuse data types other than boolean, integer and float."""
    if dtype.kind not in "biuf":
        raise StitchsafeError(
            f"{where} has data type {dtype}; stitchsafe reads boolean, integer and float "
            "images. Convert the data to one of those."
        )
