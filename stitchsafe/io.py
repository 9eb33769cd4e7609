"""Volume input (zarr, OME-Zarr, TIFF), padded reads, and OME-Zarr 0.5 output.

Inputs are opened lazily: :meth:`Volume.read` touches only the storage chunks (or TIFF
tiles/pages) that a box needs, so a 200 GB volume costs no more memory than one tile.
:func:`read_padded` extends a read past the volume edge exactly as ``numpy.pad`` would
extend the whole volume, which is what makes tiled output equal the whole-volume oracle.

Outputs are OME-Zarr 0.5 images on zarr v3, written chunk by chunk with
:func:`write_block`; each chunk is one tile's write box, so concurrent writers never
share a chunk.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import StitchsafeError
from .geometry import Box

__all__ = [
    "OutputSpec",
    "Volume",
    "default_output_location",
    "mark_complete",
    "open_volume",
    "pad_indices",
    "prepare_output",
    "read_padded",
    "write_block",
]

PAD_MODES = ("reflect", "symmetric", "edge", "wrap", "constant")

_SUPPORTED = (
    "stitchsafe reads zarr v2/v3 arrays, zarr groups together with --input-key (the array "
    "path inside the group), OME-Zarr images (0.4 on zarr v2, 0.5 on zarr v3) and "
    "TIFF/BigTIFF files"
)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# Axis roles used to map a stored array onto (C, *spatial).
_CHANNEL, _TIME, _SPACE, _UNKNOWN = "channel", "time", "space", None


# --------------------------------------------------------------------------- input


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
    import zarr

    if kind != "tiff":
        return zarr.open_array(store=location, mode="r"), None
    import tifffile

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


def _read_json(path: str) -> dict[str, Any] | None:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise StitchsafeError(
            f"cannot read the zarr metadata file {path!r}: {e}. The zarr store looks corrupt; "
            "rewrite it or point to a different input."
        ) from None
    if not isinstance(meta, dict):
        raise StitchsafeError(f"the zarr metadata file {path!r} does not hold a JSON object.")
    return meta


def _zarr_node(path: str) -> tuple[str, int, dict[str, Any]] | None:
    """``(node_type, zarr_format, attributes)`` of the zarr node at ``path``, or None."""
    meta = _read_json(os.path.join(path, "zarr.json"))
    if meta is not None:
        node_type = meta.get("node_type")
        if node_type not in ("array", "group"):
            raise StitchsafeError(
                f"{path!r} has a zarr.json without a valid node_type; the zarr store looks corrupt."
            )
        return node_type, 3, dict(meta.get("attributes") or {})
    for name, node_type in ((".zarray", "array"), (".zgroup", "group")):
        if _read_json(os.path.join(path, name)) is not None:
            attrs = _read_json(os.path.join(path, ".zattrs")) or {}
            return node_type, 2, attrs
    return None


def _container_of(array_dir: str) -> tuple[str | None, str | None]:
    """The outermost zarr group above ``array_dir`` and the array's path inside it."""
    current = os.path.abspath(array_dir)
    container = None
    parent = os.path.dirname(current)
    while parent and parent != current:
        node = _zarr_node(parent)
        if node is None or node[0] != "group":
            break
        container, current = parent, parent
        parent = os.path.dirname(current)
    if container is None:
        return None, None
    rel = os.path.relpath(os.path.abspath(array_dir), container)
    return container, rel.replace(os.sep, "/")


def _multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    ms = attrs.get("ome", {}).get("multiscales") if "ome" in attrs else attrs.get("multiscales")
    if isinstance(ms, list) and ms and isinstance(ms[0], dict):
        return ms
    return None


def _list_arrays(group: str, limit: int = 20) -> list[str]:
    found: list[str] = []
    for root, dirs, _files in os.walk(group):
        dirs.sort()
        for d in list(dirs):
            node = _zarr_node(os.path.join(root, d))
            if node is None:
                dirs.remove(d)
            elif node[0] == "array":
                found.append(os.path.relpath(os.path.join(root, d), group).replace(os.sep, "/"))
                dirs.remove(d)
        if len(found) >= limit:
            break
    return found[:limit]


def _assign_axes(
    shape: tuple[int, ...],
    roles: Sequence[str | None],
    names: Sequence[str | None],
    spatial_dims: int,
    where: str,
) -> tuple[tuple[str | int, ...], tuple[int, ...]]:
    """Map stored axes to ``(C, *spatial)``; returns the selection and spatial axis indices.

    With unknown roles the layout is positional: ``spatial_dims`` axes, or a leading
    channel axis before them; leading size-1 axes beyond that are squeezed.
    """
    expected = (
        f"expected {spatial_dims} spatial axes, optionally preceded by one channel axis "
        f"(and leading axes of size 1), because the model is {spatial_dims}-D"
    )
    sel: list[str | int] = ["drop"] * len(shape)
    if all(r is _UNKNOWN for r in roles):
        n = len(shape)
        first = 0
        while n - first > spatial_dims + 1 and shape[first] == 1:
            first += 1
        rest = n - first
        if rest not in (spatial_dims, spatial_dims + 1):
            raise StitchsafeError(f"{where} has shape {shape}; {expected}.")
        if rest == spatial_dims + 1:
            sel[first] = "c"
            first += 1
        for k in range(spatial_dims):
            sel[first + k] = k
        return tuple(sel), tuple(range(first, n))

    axis_list = ", ".join(f"{nm or '?'}={s}" for nm, s in zip(names, shape, strict=True))
    channel = [a for a, r in enumerate(roles) if r == _CHANNEL]
    big_channel = [a for a in channel if shape[a] > 1]
    if len(big_channel) > 1:
        raise StitchsafeError(
            f"{where} has more than one channel axis ({axis_list}); stitchsafe needs at most "
            "one. Merge them into one channel axis first."
        )
    for a, r in enumerate(roles):
        if r == _TIME and shape[a] > 1:
            raise StitchsafeError(
                f"{where} has a time axis of size {shape[a]} ({axis_list}); stitchsafe "
                "processes one time point. Write the time point you want as its own image."
            )
    if channel:
        sel[big_channel[0] if big_channel else channel[0]] = "c"
    space = [a for a, r in enumerate(roles) if r not in (_CHANNEL, _TIME)]
    while len(space) > spatial_dims and shape[space[0]] == 1:
        space.pop(0)
    if len(space) != spatial_dims:
        raise StitchsafeError(f"{where} has axes ({axis_list}); {expected}.")
    for k, a in enumerate(space):
        sel[a] = k
    return tuple(sel), tuple(space)


def _role_of_name(name: str | None) -> str | None:
    if name is None:
        return _UNKNOWN
    low = name.lower()
    if low in ("c", "ch", "channel", "channels"):
        return _CHANNEL
    if low in ("t", "time"):
        return _TIME
    return _SPACE


def _default_axes(n: int) -> tuple[str, ...]:
    return ("z", "y", "x")[-n:] if n <= 3 else tuple(f"d{i}" for i in range(n))


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in "biuf":
        raise StitchsafeError(
            f"{where} has data type {dtype}; stitchsafe reads boolean, integer and float "
            "images. Convert the data to one of those."
        )


def open_volume(
    path: str | os.PathLike[str], *, key: str | None = None, spatial_dims: int
) -> Volume:
    """Open an image for lazy, box-wise reads.

    Parameters
    ----------
    path
        A zarr v2/v3 array, a zarr group (with ``key``), an OME-Zarr image group, or a
        TIFF/BigTIFF file (recognised by its magic bytes, not its name).
    key
        Path of the array (or OME-Zarr image) inside a zarr group; for a TIFF file the
        index of the image series (default 0).
    spatial_dims
        Number of spatial axes the model expects (2 or 3). A stored array with
        ``spatial_dims`` axes has no channel axis; one with ``spatial_dims + 1`` axes has a
        leading channel axis. OME-Zarr axis metadata overrides this positional rule.

    Returns
    -------
    Volume

    Examples
    --------
    >>> import tempfile, zarr
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> z = zarr.create_array(f"{d}/raw.zarr", shape=(2, 5, 6), dtype="uint8", chunks=(1, 5, 6))
    >>> v = open_volume(f"{d}/raw.zarr", spatial_dims=2)
    >>> v.kind, v.shape, v.channels, v.has_channel_axis
    ('zarr', (5, 6), 2, True)
    >>> v.read(Box((1, 1), (3, 4))).shape
    (2, 2, 3)

    >>> tmp.cleanup()
    """
    if spatial_dims < 1:
        raise StitchsafeError(f"spatial_dims must be at least 1, got {spatial_dims}.")
    given = os.fspath(path)
    if not os.path.exists(given):
        raise StitchsafeError(f"the input {given!r} does not exist; {_SUPPORTED}.")
    if os.path.isdir(given):
        return _open_zarr(given, key, spatial_dims)
    with open(given, "rb") as f:
        magic = f.read(4)
    if magic in _TIFF_MAGIC:
        return _open_tiff(given, key, spatial_dims)
    if os.path.basename(given) in ("zarr.json", ".zarray", ".zgroup"):
        return _open_zarr(os.path.dirname(os.path.abspath(given)), key, spatial_dims)
    raise StitchsafeError(
        f"the input {given!r} is a file but not a TIFF (its first bytes are {magic!r}, not a "
        f"TIFF signature); {_SUPPORTED}."
    )


def _open_zarr(given: str, key: str | None, spatial_dims: int) -> Volume:
    node = _zarr_node(given)
    if node is None:
        raise StitchsafeError(
            f"the input {given!r} is a directory but not a zarr array or group (it has no "
            f"zarr.json, .zarray or .zgroup); {_SUPPORTED}."
        )
    node_type, _fmt, attrs = node
    where = given
    if node_type == "array":
        if key is not None:
            raise StitchsafeError(
                f"the input {given!r} is a zarr array, so --input-key {key!r} does not apply; "
                "drop the key, or pass the group that contains the array."
            )
        container, array_path = _container_of(given)
        return _zarr_volume(given, given, "zarr", container, array_path, spatial_dims, None)

    group = given
    target = group
    if key is not None:
        key = key.strip("/")
        target = os.path.join(group, *key.split("/"))
        node = _zarr_node(target) if key else None
        if node is None:
            found = _list_arrays(group)
            raise StitchsafeError(
                f"the zarr group {group!r} has no array or image {key!r}. Arrays found: "
                f"{', '.join(found) or 'none'}. Pass one of them with --input-key."
            )
        node_type, _fmt, attrs = node
        where = f"{group!r} key {key!r}"
        if node_type == "array":
            return _zarr_volume(given, target, "zarr", group, key, spatial_dims, None)
    # A bioformats2raw layout keeps the image in the subgroup "0".
    if _multiscales(attrs) is None and "bioformats2raw.layout" in attrs.get("ome", attrs):
        sub = _zarr_node(os.path.join(target, "0"))
        if sub is not None and sub[0] == "group":
            target, attrs = os.path.join(target, "0"), sub[2]
    ms = _multiscales(attrs)
    if ms is None:
        found = _list_arrays(target)
        what = f"the zarr group {where}" if key is None else f"the zarr group at {where}"
        raise StitchsafeError(
            f"{what} is not an OME-Zarr image (no multiscales metadata), so stitchsafe does "
            f"not know which array to read. Arrays found: {', '.join(found) or 'none'}. "
            "Pass the array path inside the group with --input-key (e.g. --input-key "
            f"{found[0] if found else 'raw'})."
        )
    datasets = ms[0].get("datasets") or []
    if not datasets or "path" not in datasets[0]:
        raise StitchsafeError(
            f"the OME-Zarr image {where} lists no datasets in its multiscales metadata; the "
            "metadata is incomplete. Pass the level-0 array itself as input instead."
        )
    level0 = str(datasets[0]["path"]).strip("/")
    array_dir = os.path.join(target, *level0.split("/"))
    rel = os.path.relpath(array_dir, group).replace(os.sep, "/")
    return _zarr_volume(given, array_dir, "ome-zarr", group, rel, spatial_dims, ms[0])


def _zarr_volume(
    given: str,
    array_dir: str,
    kind: str,
    container: str | None,
    array_path: str | None,
    spatial_dims: int,
    multiscale: dict[str, Any] | None,
) -> Volume:
    import zarr

    where = f"the array {array_dir!r}"
    try:
        arr = zarr.open_array(store=array_dir, mode="r")
    except Exception as e:  # zarr raises many types for broken stores
        raise StitchsafeError(f"cannot open {where} as a zarr array: {e}. {_SUPPORTED}.") from None
    shape = tuple(int(s) for s in arr.shape)
    _check_dtype(arr.dtype, where)
    names: list[str | None] = [None] * len(shape)
    units: list[str | None] = [None] * len(shape)
    scale = [1.0] * len(shape)
    roles: list[str | None] = [_UNKNOWN] * len(shape)
    if multiscale is not None and multiscale.get("axes"):
        axes = multiscale["axes"]
        if len(axes) != len(shape):
            raise StitchsafeError(
                f"the OME-Zarr metadata names {len(axes)} axes but {where} has shape {shape}; "
                "the metadata does not match the data."
            )
        for a, ax in enumerate(axes):
            if isinstance(ax, str):  # OME-Zarr 0.3 lists bare names
                ax = {"name": ax}
            names[a] = str(ax.get("name"))
            units[a] = ax.get("unit")
            kind_ = ax.get("type")
            roles[a] = {"channel": _CHANNEL, "time": _TIME}.get(kind_) or (
                _SPACE if kind_ == "space" else _role_of_name(names[a])
            )
        for t in multiscale["datasets"][0].get("coordinateTransformations") or []:
            if t.get("type") == "scale" and len(t.get("scale", ())) == len(shape):
                scale = [float(s) for s in t["scale"]]
    else:
        dim_names = getattr(arr.metadata, "dimension_names", None)
        if dim_names and all(n is not None for n in dim_names):
            names = [str(n) for n in dim_names]
            roles = [_role_of_name(n) for n in names]
    sel, space = _assign_axes(shape, roles, names, spatial_dims, where)
    source = _Source("zarr", array_dir, selection=sel)
    meta: dict[str, list[Any]] = {"names": names, "scale": scale, "units": units}
    return _make_volume(given, kind, arr.dtype, shape, source, space, container, array_path, meta)


def _make_volume(
    given: str,
    kind: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    source: _Source,
    space: tuple[int, ...],
    container: str | None,
    array_path: str | None,
    meta: dict[str, list[Any]],
) -> Volume:
    """Build the :class:`Volume`; ``meta`` holds per stored axis ``names``, ``scale``, ``units``."""
    sel, names = source.selection, meta["names"]
    spatial = tuple(shape[a] for a in space)
    if any(s < 1 for s in spatial):
        raise StitchsafeError(f"the input {given!r} is empty (spatial shape {spatial}).")
    channel_axis = sel.index("c") if "c" in sel else None
    default = _default_axes(len(space))
    axes = tuple(
        str(names[a]).lower() if names[a] is not None else default[k] for k, a in enumerate(space)
    )
    return Volume(
        path=given,
        kind=kind,
        shape=spatial,
        channels=shape[channel_axis] if channel_axis is not None else 1,
        has_channel_axis=channel_axis is not None,
        dtype=np.dtype(dtype),
        container=container,
        array_path=array_path,
        axes=axes,
        scale=tuple(float(meta.get("scale", [1.0] * len(shape))[a]) for a in space),
        units=tuple(meta.get("units", [None] * len(shape))[a] for a in space),
        _source=source,
    )


def _open_tiff(given: str, key: str | None, spatial_dims: int) -> Volume:
    import tifffile

    try:
        series_index = int(key) if key is not None else 0
    except ValueError:
        raise StitchsafeError(
            f"the input {given!r} is a TIFF file; --input-key must be the index of an image "
            f"series (0, 1, ...), not {key!r}."
        ) from None
    try:
        with tifffile.TiffFile(given) as tf:
            if not tf.series:
                raise ValueError("it holds no images")
            if not 0 <= series_index < len(tf.series):
                raise StitchsafeError(
                    f"the TIFF file {given!r} has {len(tf.series)} image series; "
                    f"--input-key {key!r} is out of range (use 0 to {len(tf.series) - 1})."
                )
            s = tf.series[series_index]
            shape = tuple(int(v) for v in s.shape)
            letters = s.axes
            dtype = np.dtype(s.dtype)
    except StitchsafeError:
        raise
    except Exception as e:  # tifffile raises TiffFileError, ValueError, struct.error...
        raise StitchsafeError(
            f"cannot read the TIFF file {given!r}: {e}. The file looks truncated or corrupt; "
            "re-export it or convert it to zarr."
        ) from None
    _check_dtype(dtype, f"the TIFF file {given!r}")
    names: list[str | None] = [None] * len(shape)
    roles: list[str | None] = [_UNKNOWN] * len(shape)
    # tifffile writes 'Q' for axes it cannot name; trust the letters only when there are
    # channel ('C') or sample ('S', e.g. RGB) axes that the positional rule would misplace.
    if len(letters) == len(shape) and any(c in letters for c in "CS"):
        for a, c in enumerate(letters):
            names[a] = c.lower() if c in "ZYX" else c
            roles[a] = (
                _CHANNEL if c in "CS" else _TIME if c == "T" else _SPACE if c in "ZYX" else _UNKNOWN
            )
        # Unnamed axes ('Q', 'I', ...) only pass when they are size 1.
        roles = [r if r is not _UNKNOWN else _SPACE for r in roles]
    sel, space = _assign_axes(shape, roles, names, spatial_dims, f"the TIFF file {given!r}")
    source = _Source("tiff", given, series=series_index, selection=sel)
    return _make_volume(given, "tiff", dtype, shape, source, space, None, None, {"names": names})


# --------------------------------------------------------------------------- padding


def pad_indices(begin: int, end: int, size: int, mode: str) -> np.ndarray:
    """Source index of each coordinate in ``[begin, end)`` of an axis padded like ``numpy.pad``.

    Coordinates inside ``[0, size)`` map to themselves; outside ones follow ``mode``, for
    any pad width. In ``"constant"`` mode outside coordinates map to ``-1``.

    Examples
    --------
    >>> pad_indices(-3, 6, 4, "reflect").tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1]
    >>> pad_indices(-2, 5, 3, "edge").tolist()
    [0, 0, 0, 1, 2, 2, 2]
    >>> pad_indices(-1, 4, 3, "constant").tolist()
    [-1, 0, 1, 2, -1]
    """
    if size < 1:
        raise StitchsafeError(f"cannot pad an axis of size {size}; the volume is empty.")
    i = np.arange(begin, end, dtype=np.int64)
    if mode == "constant":
        return np.where((i >= 0) & (i < size), i, -1)
    if mode == "edge":
        return np.clip(i, 0, size - 1)
    if mode == "wrap":
        return i % size
    if mode == "reflect":
        if size == 1:
            return np.zeros_like(i)
        period = 2 * (size - 1)
        m = i % period
        return np.where(m < size, m, period - m)
    if mode == "symmetric":
        period = 2 * size
        m = i % period
        return np.where(m < size, m, period - 1 - m)
    raise StitchsafeError(
        f"unknown padding mode {mode!r}; use one of {', '.join(PAD_MODES)} (numpy.pad modes)."
    )


def read_padded(
    volume: Volume,
    box: Box,
    *,
    mode: str = "reflect",
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Read ``box`` as ``(C, *box.shape)`` float32, padding outside the volume like ``numpy.pad``.

    The values equal ``numpy.pad(whole_volume, widths, mode=mode)`` at the box's
    coordinates, but only the bounding box of the needed source voxels is read.

    Parameters
    ----------
    volume
        The input volume.
    box
        Box in volume coordinates; may extend past the volume on any side.
    mode
        ``numpy.pad`` mode: ``"reflect"``, ``"symmetric"``, ``"edge"``, ``"wrap"`` or
        ``"constant"`` (value 0).
    transform
        Intensity normalisation applied to the voxels read *before* padding, so that
        constant padding is 0 in normalised space (float32 in, float32 out).

    Examples
    --------
    >>> import tempfile, zarr
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> zarr.create_array(f"{d}/a.zarr", data=np.arange(4, dtype="uint8"))[:].tolist()
    [0, 1, 2, 3]
    >>> v = open_volume(f"{d}/a.zarr", spatial_dims=1)
    >>> read_padded(v, Box((-2,), (6,)), mode="reflect").tolist()
    [[2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0]]

    >>> tmp.cleanup()
    """
    if box.ndim != volume.ndim:
        raise ValueError(f"box {box} has {box.ndim} axes; the volume has {volume.ndim}")
    out = np.zeros((volume.channels, *box.shape), dtype=np.float32)
    if box.empty:
        return out
    maps = [
        pad_indices(b, e, s, mode) for b, e, s in zip(box.begin, box.end, volume.shape, strict=True)
    ]
    keep: list[slice] = []
    for m in maps:
        inside = np.flatnonzero(m >= 0)
        if inside.size == 0:  # constant mode, box entirely outside on this axis
            return out
        # Outside positions only occur at the ends, so the kept ones are contiguous.
        keep.append(slice(int(inside[0]), int(inside[-1]) + 1))
    maps = [m[k] for m, k in zip(maps, keep, strict=True)]
    lo = tuple(int(m.min()) for m in maps)
    hi = tuple(int(m.max()) + 1 for m in maps)
    data = volume.read(Box(lo, hi)).astype(np.float32, copy=False)
    if transform is not None:
        data = np.asarray(transform(data), dtype=np.float32)
    for a, (m, b) in enumerate(zip(maps, lo, strict=True)):
        local = m - b
        if local.size != data.shape[a + 1] or np.any(local != np.arange(local.size)):
            data = np.take(data, local, axis=a + 1)
    if all(k.stop - k.start == n for k, n in zip(keep, box.shape, strict=True)):
        return np.ascontiguousarray(data)
    out[(slice(None), *keep)] = data
    return out


# --------------------------------------------------------------------------- output


@dataclass(frozen=True)
class OutputSpec:
    """Where :func:`prepare_output` put an output image.

    Attributes
    ----------
    group
        Path of the zarr v3 group (the output container root).
    image
        Path of the OME-Zarr image group inside ``group``, e.g. ``"embeddings"``.
    array
        Path of the level-0 array inside ``group``, e.g. ``"embeddings/0"``.
    """

    group: str
    image: str
    array: str


def _stem(path: str) -> str:
    name = os.path.basename(os.path.normpath(path))
    for suffix in (".zarr", ".tiff", ".tif", ".ome", ".n5"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def default_output_location(volume: Volume) -> tuple[str, str]:
    """``(group_path, image_name)`` where results go by default.

    Into the input's own zarr v3 container, beside the raw image; otherwise (TIFF, a bare
    array, a zarr v2 container) into a new ``<stem>.stitchsafe.zarr`` beside the input.

    Examples
    --------
    >>> import tempfile, tifffile
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> tifffile.imwrite(f"{d}/vol.tif", np.zeros((4, 4), "uint8"))
    >>> g, image = default_output_location(open_volume(f"{d}/vol.tif", spatial_dims=2))
    >>> os.path.basename(g), image
    ('vol.stitchsafe.zarr', 'embeddings')

    >>> tmp.cleanup()
    """
    if volume.container is not None:
        node = _zarr_node(volume.container)
        if node is not None and node[:2] == ("group", 3):
            return volume.container, "embeddings"
    base = os.path.abspath(volume.container or volume.path)
    return os.path.join(os.path.dirname(base), _stem(base) + ".stitchsafe.zarr"), "embeddings"


def _default_compressor() -> Any:
    from zarr.codecs import BloscCodec

    # Measured on smooth float32 embeddings (16 channels, 32x128x128 chunks): blosc-lz4
    # with byte shuffle encodes ~1.2 GB/s at ratio 1.15, zstd level 1 ~0.39 GB/s at 1.08.
    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def _check_output_group(group: str) -> None:
    if not os.path.exists(group):
        return
    what = None
    if not os.path.isdir(group):
        what = "a file"
    else:
        node = _zarr_node(group)
        if node is None:
            if os.listdir(group):
                what = "a non-empty directory that is not a zarr group"
        elif node[1] != 3:
            what = f"a zarr v2 {node[0]}, which cannot hold OME-Zarr 0.5 (zarr v3) output"
        elif node[0] != "group":
            what = "a zarr array, not a group"
    if what is not None:
        raise StitchsafeError(
            f"the output {group!r} already exists and is {what}. Choose a new output path "
            "(a new .zarr directory) or an existing zarr v3 group."
        )


def prepare_output(
    group: str | os.PathLike[str],
    *,
    image: str = "embeddings",
    shape: Sequence[int],
    channels: int,
    chunks: Sequence[int],
    dtype: str = "float32",
    axes: Sequence[str],
    overwrite: bool = False,
    attributes: dict[str, Any] | None = None,
    scale: Sequence[float] | None = None,
    units: Sequence[str | None] | None = None,
) -> OutputSpec:
    """Create an empty OME-Zarr 0.5 image ``image`` (level ``"0"``) inside a zarr v3 group.

    The group is created, or opened if it already is a zarr v3 group (e.g. the input's own
    container); nothing else in it is touched.

    Parameters
    ----------
    group
        Path of the zarr v3 group.
    image
        Name (path) of the image group inside ``group``.
    shape
        Spatial shape, ``(Z, Y, X)`` or ``(Y, X)``.
    channels
        Number of output channels (a leading ``c`` axis).
    chunks
        Spatial chunk shape (the tile write box); one chunk holds all channels of a tile.
    dtype
        Data type of the array.
    axes
        Names of the spatial axes, e.g. ``("z", "y", "x")``.
    overwrite
        Replace an existing ``image`` written by stitchsafe. Images that stitchsafe did
        not write are never deleted.
    attributes
        Stored under ``attributes["stitchsafe"]`` of the image group (plan, model, ...).
    scale, units
        Optional voxel size and unit per spatial axis (OME-Zarr ``scale`` and ``unit``).

    Returns
    -------
    OutputSpec
    """
    import zarr

    group = os.fspath(group)
    shape = tuple(int(s) for s in shape)
    chunks = tuple(int(c) for c in chunks)
    axes = tuple(str(a) for a in axes)
    nd = len(shape)
    if not (len(chunks) == len(axes) == nd) or nd == 0:
        raise ValueError(f"shape {shape}, chunks {chunks} and axes {axes} differ in length")
    if channels < 1 or any(s < 1 for s in shape) or any(c < 1 for c in chunks):
        raise ValueError(f"invalid output shape {shape} / chunks {chunks} / channels {channels}")
    parts = [p for p in image.strip("/").split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith("__") for p in parts):
        raise StitchsafeError(
            f"invalid output image name {image!r}; use a plain name such as 'embeddings'."
        )
    image = "/".join(parts)
    scale_t = tuple(float(s) for s in scale) if scale is not None else (1.0,) * nd
    units_t = tuple(units) if units is not None else (None,) * nd
    if len(scale_t) != nd or len(units_t) != nd:
        raise ValueError(f"scale {scale_t} / units {units_t} need {nd} values")

    _check_output_group(group)
    root = zarr.open_group(store=group, mode="a", zarr_format=3)
    image_dir = os.path.join(group, *parts)
    existing = _zarr_node(image_dir) if os.path.exists(image_dir) else None
    if existing is not None or os.path.exists(image_dir):
        if not overwrite:
            raise StitchsafeError(
                f"the output {group!r} already holds {image!r}. Pass --overwrite to replace "
                "it, or choose another output path or image name."
            )
        if existing is None or "stitchsafe" not in existing[2]:
            raise StitchsafeError(
                f"{image!r} in {group!r} was not written by stitchsafe, so --overwrite will "
                "not delete it. Choose another output image name."
            )
        _forget_arrays(group)
        shutil.rmtree(image_dir)

    parent = root
    for p in parts[:-1]:
        parent = parent.require_group(p)
    axis_meta: list[dict[str, Any]] = [{"name": "c", "type": "channel"}]
    for name, unit in zip(axes, units_t, strict=True):
        entry: dict[str, Any] = {"name": name, "type": "space"}
        if unit is not None:
            entry["unit"] = unit
        axis_meta.append(entry)
    ome = {
        "version": "0.5",
        "multiscales": [
            {
                "name": parts[-1],
                "axes": axis_meta,
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1.0, *scale_t]}],
                    }
                ],
            }
        ],
    }
    img = parent.create_group(
        parts[-1], attributes={"ome": ome, "stitchsafe": dict(attributes or {})}
    )
    img.create_array(
        "0",
        shape=(channels, *shape),
        chunks=(channels, *chunks),
        dtype=dtype,
        fill_value=0,
        compressors=_default_compressor(),
        dimension_names=("c", *axes),
    )
    return OutputSpec(group=group, image=image, array=f"{image}/0")


# Opened output arrays, per process (a forked child must not reuse its parent's objects).
_ARRAYS: dict[tuple[int, str, str], Any] = {}
_ARRAYS_LOCK = threading.Lock()


def _forget_arrays(group: str) -> None:
    with _ARRAYS_LOCK:
        for k in [k for k in _ARRAYS if k[1] == os.path.abspath(group)]:
            del _ARRAYS[k]


def _output_array(spec: OutputSpec) -> Any:
    key = (os.getpid(), os.path.abspath(spec.group), spec.array)
    arr = _ARRAYS.get(key)
    if arr is None:
        import zarr

        with _ARRAYS_LOCK:
            arr = _ARRAYS.get(key)
            if arr is None:
                arr = zarr.open_array(
                    store=os.path.join(spec.group, *spec.array.split("/")), mode="r+"
                )
                _ARRAYS[key] = arr
    return arr


def write_block(spec: OutputSpec, box: Box, data: np.ndarray) -> None:
    """Write ``data`` of shape ``(C, *box.shape)`` at the chunk-aligned spatial ``box``.

    Boxes begin on chunk boundaries and end on one (or at the array end), so each call
    writes whole chunks and concurrent calls for different boxes never share a chunk.
    """
    arr = _output_array(spec)
    shape, chunks = tuple(arr.shape[1:]), tuple(arr.chunks[1:])
    if data.shape != (arr.shape[0], *box.shape):
        raise ValueError(f"data of shape {data.shape} does not fit box {box} x {arr.shape[0]} ch")
    if not Box.from_shape(shape).contains(box):
        raise ValueError(f"box {box} lies outside the output of shape {shape}")
    for b, e, c, s in zip(box.begin, box.end, chunks, shape, strict=True):
        if b % c or (e % c and e != s):
            raise ValueError(f"box {box} is not aligned to the output chunks {chunks}")
    arr[(slice(None), *box.to_slices())] = data


def mark_complete(spec: OutputSpec, attrs: dict[str, Any]) -> None:
    """Merge ``attrs`` into the image's ``attributes["stitchsafe"]`` (e.g. ``complete``)."""
    import zarr

    img = zarr.open_group(store=os.path.join(spec.group, *spec.image.split("/")), mode="r+")
    previous: Any = img.attrs.get("stitchsafe")
    current = dict(previous or {})
    current.update(attrs)
    img.attrs["stitchsafe"] = current
