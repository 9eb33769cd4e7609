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

__all__ = ["Volume"]

SUPPORTED_INPUTS = (
    "stitchsafe reads zarr v2/v3 arrays, zarr groups together with --input-key (the array "
    "path inside the group), OME-Zarr images (0.4 on zarr v2, 0.5 on zarr v3) and "
    "TIFF/BigTIFF files"
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
        selection: tuple[str | int, ...],
    ) -> None:
        self.kind = kind
        self.location = location
        self.series = series
        # One entry per stored axis: "c" (channel), an int k (spatial axis k) or "drop"
        # (a size-1 axis indexed away).
        self.selection = selection
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
                    self._handle, self._closer = _open_handle(self.kind, self.location, self.series)
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


def _open_handle(kind: str, location: str, series: int) -> tuple[Any, Callable[[], None] | None]:
    """The opened array (zarr or a TIFF memory map) and how to close it (or ``None``)."""
    if kind != "tiff":
        return zarr.open_array(store=location, mode="r"), None
    with tifffile.TiffFile(location) as tf:
        s = tf.series[series]
        contiguous = s.dataoffset is not None
    if contiguous:
        # Uncompressed contiguous data: a memory map reads only the touched pages, even
        # for a single huge strip that the zarr store would decode as one chunk.
        mm = tifffile.memmap(location, series=series, mode="r")
        return mm, None
    store = tifffile.imread(location, aszarr=True, series=series, level=0)
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
        ``"zarr"``, ``"ome-zarr"`` or ``"tiff"``.
    shape
        Spatial shape only, ``(Z, Y, X)`` or ``(Y, X)``.
    channels
        Number of channels; 1 when the data has no channel axis.
    has_channel_axis
        Whether the stored data has a channel axis.
    dtype
        Stored data type.
    container
        Path of the zarr group the image lives in (``None`` for TIFF or a bare array).
    array_path
        Path of the array inside ``container`` (e.g. ``"0"`` or ``"raw"``).
    axes
        Names of the spatial axes, e.g. ``("z", "y", "x")``.
    scale
        Voxel size per spatial axis (OME-Zarr ``scale`` of level 0; 1.0 when unknown).
    units
        Unit per spatial axis (OME-Zarr axis ``unit``), ``None`` when unknown.
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
    scale: tuple[float, ...]
    units: tuple[str | None, ...]
    _source: _Source = field(repr=False)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.shape)

    def read(self, box: Box) -> np.ndarray:
        """Read ``box`` (inside the volume) as ``(C, *box.shape)`` in the stored dtype.

        Only the storage chunks that intersect ``box`` are read.
        """
        if box.ndim != self.ndim or not Box.from_shape(self.shape).contains(box):
            raise ValueError(f"box {box} does not lie inside the volume of shape {self.shape}")
        if box.empty:
            return np.zeros((self.channels, *box.shape), dtype=self.dtype)
        index: list[int | slice] = []
        for role in self._source.selection:
            if role == "drop":
                index.append(0)
            elif role == "c":
                index.append(slice(None))
            else:
                index.append(slice(box.begin[int(role)], box.end[int(role)]))
        raw = self._source.array()[tuple(index)]
        # Copy out of a memory map so the caller owns plain memory that outlives close().
        data = np.array(raw) if isinstance(raw, np.memmap) else np.asarray(raw)
        kept = [r for r in self._source.selection if r != "drop"]
        data = np.moveaxis(data, kept.index("c"), 0) if "c" in kept else data[np.newaxis]
        return np.ascontiguousarray(data)

    def close(self) -> None:
        """Release file handles (TIFF); reading again reopens them."""
        self._source.close()

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_volume(
    path: str,
    kind: str,
    dtype: np.dtype,
    axes: StoredAxes,
    location: str,
    *,
    series: int = 0,
    container: str | None = None,
    array_path: str | None = None,
) -> Volume:
    """A :class:`Volume` of the stored array at ``location`` (a TIFF ``series``).

    ``path`` is what the user passed, ``kind`` ``"zarr"``, ``"ome-zarr"`` or ``"tiff"``;
    ``container`` and ``array_path`` say where a zarr array lives (see :class:`Volume`).
    """
    spatial = axes.spatial_shape
    if any(s < 1 for s in spatial):
        raise StitchsafeError(f"the input {path!r} is empty (spatial shape {spatial}).")
    source_kind = "tiff" if kind == "tiff" else "zarr"
    source = _Source(source_kind, location, series=series, selection=axes.selection)
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
        scale=axes.spatial_scale,
        units=axes.spatial_units,
        _source=source,
    )


def check_dtype(dtype: np.dtype, where: str) -> None:
    """Refuse data types other than boolean, integer and float."""
    if dtype.kind not in "biuf":
        raise StitchsafeError(
            f"{where} has data type {dtype}; stitchsafe reads boolean, integer and float "
            "images. Convert the data to one of those."
        )
