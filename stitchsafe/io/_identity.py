"""Which input a run read: its identity, cheap enough for a 200 GB volume.

An :class:`InputIdentity` holds where the input is (path and array or series), what it
is (kind, shape, channels, dtype, storage chunks, axes, scale and units) and a SHA-256
over a deterministic sample of its data: at most :data:`SAMPLE_BOXES` boxes, each inside
one storage chunk and at most :data:`SAMPLE_BOX_BYTES` large, spread over the volume and
read through :meth:`stitchsafe.io.Volume.read` (so zarr, TIFF and HDF5 inputs alike). The run
fingerprint (:func:`stitchsafe.io.run_fingerprint`) stores it, and ``--resume`` refuses an
input whose identity differs, naming what differs (:func:`input_differences`).

A sample sees a rewritten volume, not a change confined to chunks it does not read.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile
import zarr

from ..geometry import Box
from ._hdf5_file import open_hdf5_dataset
from ._selection import InputSelection
from ._stores import is_url
from ._volume import Volume

__all__ = [
    "SAMPLE_BOXES",
    "SAMPLE_BOX_BYTES",
    "InputIdentity",
    "input_differences",
    "input_identity",
]

SAMPLE_BOXES = 16
SAMPLE_BOX_BYTES = 256 * 1024
# A box side when the storage chunks are unknown: inside one chunk for any chunking
# whose sides are multiples of it (powers of two from 16 up, the usual ones).
_FALLBACK_SIDE = 16


@dataclass(frozen=True)
class InputIdentity:
    """Where an input is, what it is, and a SHA-256 of a deterministic sample of its data.

    Attributes
    ----------
    path
        The input's real path (symbolic links resolved; an HDF5 input's file), or its URL.
    key
        The array inside a zarr group (``None`` for a bare array), the dataset inside an
        HDF5 file, or a TIFF's series.
    kind, shape, channels, dtype
        As :class:`stitchsafe.io.Volume` has them (``shape`` is spatial).
    chunks
        The stored array's chunk shape in stored axis order (``None`` when unknown).
    axes, scale, units
        The spatial axes' names, voxel sizes and units.
    sample_boxes
        The boxes hashed, as ``[[begin...], [end...]]``.
    sample_sha256
        SHA-256 over each sample box (its corners, then its voxels as stored).
    selection
        The channels, timepoint and level read (``--channel``, ``--timepoint``,
        ``--level``, :meth:`stitchsafe.io.InputSelection.to_dict`); ``None`` when nothing
        was selected (so fingerprints written before the selection existed still match).
    """

    path: str
    key: str | None
    kind: str
    shape: tuple[int, ...]
    channels: int
    dtype: str
    chunks: tuple[int, ...] | None
    axes: tuple[str, ...]
    scale: tuple[float, ...]
    units: tuple[str | None, ...]
    sample_boxes: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    sample_sha256: str
    selection: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The identity as JSON-ready values (what the run fingerprint stores)."""
        selected = {} if self.selection is None else {"selection": self.selection}
        return {
            **selected,
            "path": self.path,
            "key": self.key,
            "kind": self.kind,
            "shape": list(self.shape),
            "channels": self.channels,
            "dtype": self.dtype,
            "chunks": None if self.chunks is None else list(self.chunks),
            "axes": list(self.axes),
            "scale": list(self.scale),
            "units": list(self.units),
            "sample": {
                "boxes": [[list(b), list(e)] for b, e in self.sample_boxes],
                "sha256": self.sample_sha256,
            },
        }


def input_identity(volume: Volume, *, key: str | None = None) -> InputIdentity:
    """The identity of ``volume``: metadata plus a SHA-256 of a sample of at most ~4 MB.

    ``key`` is the ``--input-key`` the volume was opened with (a TIFF's series; zarr
    volumes know their array path themselves).

    Examples
    --------
    >>> import tempfile
    >>> from stitchsafe.io import open_volume
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> _ = zarr.create_array(f"{d}/a.zarr", data=np.arange(4096).reshape(64, 64) % 7,
    ...                       chunks=(32, 32))
    >>> ident = input_identity(open_volume(f"{d}/a.zarr", spatial_dims=2))
    >>> ident.shape, ident.chunks, len(ident.sample_boxes), ident.sample_boxes[-1]
    ((64, 64), (32, 32), 4, ((32, 32), (64, 64)))
    >>> tmp.cleanup()
    """
    layout = _stored_layout(volume, key)
    boxes = _sample_boxes(volume, _spatial_chunks(volume, layout))
    digest = hashlib.sha256()
    for box in boxes:
        digest.update(np.asarray([*box.begin, *box.end], dtype="<i8").tobytes())
        digest.update(np.ascontiguousarray(volume.read(box)).tobytes())
    if volume.kind == "tiff":
        where: str | None = str(key if key is not None else 0)
    else:
        where = volume.array_path if volume.container is not None else None
    return InputIdentity(
        path=volume.path
        if is_url(volume.path) or volume.kind == "array"
        else os.path.realpath(volume.path),
        key=where,
        kind=volume.kind,
        shape=tuple(volume.shape),
        channels=volume.channels,
        dtype=np.dtype(volume.dtype).str,
        chunks=None if layout is None else layout[1],
        axes=tuple(volume.axes),
        scale=tuple(float(s) for s in volume.scale),
        units=tuple(volume.units),
        sample_boxes=tuple((b.begin, b.end) for b in boxes),
        sample_sha256=digest.hexdigest(),
        selection=None if volume.selection.is_default else volume.selection.to_dict(),
    )


def _stored_layout(
    volume: Volume, key: str | None
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The stored array's shape and chunk shape (stored axis order), or ``None`` if unknown.

    A zarr input's own; a TIFF's as tifffile's zarr view tiles it (pages, tiles, strips);
    an HDF5 dataset's chunks (``None`` for a contiguous one).
    """
    if volume.kind == "array":  # in memory: only its data identifies it
        return None
    try:
        if volume.kind == "hdf5":
            dataset, handle = open_hdf5_dataset(volume.path, str(volume.array_path))
            with handle:
                chunks = dataset.chunks
                return None if chunks is None else (dataset.shape, tuple(map(int, chunks)))
        if volume.kind == "tiff":
            series = int(key) if key is not None else 0
            level = volume.selection.level or 0
            with tifffile.imread(volume.path, aszarr=True, series=series, level=level) as store:
                arr = zarr.open_array(store=store, mode="r")
                return tuple(map(int, arr.shape)), tuple(map(int, arr.chunks))
        location = volume.path
        if volume.container is not None and volume.array_path is not None:
            location = os.path.join(volume.container, *volume.array_path.split("/"))
        arr = zarr.open_array(store=location, mode="r")
        return tuple(map(int, arr.shape)), tuple(map(int, arr.chunks))
    except Exception:  # noqa: BLE001 - the chunking is a hint; the sample still identifies
        return None


def _spatial_chunks(
    volume: Volume, layout: tuple[tuple[int, ...], tuple[int, ...]] | None
) -> tuple[int, ...]:
    """The storage chunk per spatial axis, where the stored axes tell it; a fixed side else.

    The spatial axes are taken as the trailing (or else the leading) stored axes when
    their sizes are the volume's. The answer decides only how cheap the sample is to read
    (boxes inside one chunk each), never what it hashes for a given input.
    """
    n = volume.ndim
    if layout is not None:
        shape, chunks = layout
        for lo in (len(shape) - n, 0):
            if lo >= 0 and shape[lo : lo + n] == tuple(volume.shape):
                return tuple(min(c, s) for c, s in zip(chunks[lo : lo + n], volume.shape))
    return tuple(min(_FALLBACK_SIDE, s) for s in volume.shape)


def _sample_boxes(volume: Volume, chunk: tuple[int, ...]) -> list[Box]:
    """Up to :data:`SAMPLE_BOXES` boxes, each at the start of a chunk, spread over the volume.

    The chunks are taken evenly along the chunk grid's C order (the first and the last
    included); each box is the chunk's first corner, shrunk (largest side first) to at most
    :data:`SAMPLE_BOX_BYTES` of voxels, and cut at the volume's end.
    """
    grid = tuple(-(-s // c) for s, c in zip(volume.shape, chunk))
    side = list(chunk)
    voxel_bytes = max(1, volume.channels * np.dtype(volume.dtype).itemsize)
    while math.prod(side) * voxel_bytes > SAMPLE_BOX_BYTES and max(side) > 1:
        a = side.index(max(side))
        side[a] = -(-side[a] // 2)
    total = math.prod(grid)
    count = min(SAMPLE_BOXES, total)
    flats = sorted({i * (total - 1) // max(1, count - 1) for i in range(count)})
    boxes = []
    for flat in flats:
        index = np.unravel_index(flat, grid)
        begin = tuple(int(i) * c for i, c in zip(index, chunk))
        end = tuple(min(b + s, v) for b, s, v in zip(begin, side, volume.shape))
        boxes.append(Box(begin, end))
    return boxes


_WHAT = {
    "path": "its path",
    "key": "the array or series inside it (--input-key)",
    "kind": "its format",
    "shape": "its shape",
    "channels": "its channels",
    "dtype": "its data type",
    "chunks": "its chunking",
    "axes": "its axes",
    "scale": "its voxel size",
    "units": "its units",
    "selection": "the selection (--channel, --timepoint, --level)",
}


def input_differences(stored: Any, current: dict[str, Any]) -> list[str]:
    """What differs between a stored input identity and ``current`` (both as dicts), in words.

    >>> a = {"path": "/a.zarr", "shape": [4, 4], "sample": {"boxes": [[[0, 0], [4, 4]]],
    ...                                                      "sha256": "ab" * 32}}
    >>> input_differences(a, {**a, "path": "/b.zarr", "shape": [4, 5]})
    ["its path (was '/a.zarr', now '/b.zarr')", 'its shape (was (4, 4), now (4, 5))']
    >>> input_differences(a, {**a, "sample": {**a["sample"], "sha256": "cd" * 32}})
    ['its data (SHA-256 of a sample of 1 boxes: was abababababab..., now cdcdcdcdcdcd...)']
    """
    if not isinstance(stored, dict):
        return ["its identity (the stored one is unreadable)"]
    found = []
    for name, what in _WHAT.items():
        was, now = stored.get(name), current.get(name)
        if was != now:
            show = _show_selection if name == "selection" else _show
            found.append(f"{what} (was {show(was)}, now {show(now)})")
    was_sample, now_sample = stored.get("sample") or {}, current.get("sample") or {}
    same_boxes = was_sample.get("boxes") == now_sample.get("boxes")
    if same_boxes and was_sample.get("sha256") != now_sample.get("sha256"):
        # Boxes differ only with the shape or chunking, named above already.
        boxes = len(now_sample.get("boxes") or [])
        was, now = str(was_sample.get("sha256"))[:12], str(now_sample.get("sha256"))[:12]
        found.append(f"its data (SHA-256 of a sample of {boxes} boxes: was {was}..., now {now}...)")
    return found


def _show_selection(value: Any) -> str:
    """A stored selection in words (``None``: the default, every channel at level 0).

    >>> _show_selection(None), _show_selection({"channels": [1], "timepoint": 2})
    ("'all channels'", "'channel 1; timepoint 2'")
    """
    try:
        return repr(InputSelection.from_dict(value).describe())
    except Exception:  # noqa: BLE001 - an unreadable stored value is shown as it is
        return repr(value)


def _show(value: Any) -> str:
    """A stored value as the message shows it: lists as tuples, text quoted."""
    if isinstance(value, list):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return repr(value)
