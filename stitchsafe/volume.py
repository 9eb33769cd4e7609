"""Input volumes: zarr v2/v3 arrays and groups, OME-Zarr images and TIFF/BigTIFF files.

Inputs are opened lazily: :meth:`Volume.read` touches only the storage chunks (or TIFF
tiles/pages) that a box needs, so a 200 GB volume costs no more memory than one tile.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import StitchsafeError
from .geometry import Box

__all__ = ["Volume", "open_volume"]

_SUPPORTED = (
    "stitchsafe reads zarr v2/v3 arrays, zarr groups together with --input-key (the array "
    "path inside the group), OME-Zarr images (0.4 on zarr v2, 0.5 on zarr v3) and "
    "TIFF/BigTIFF files"
)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# Axis roles used to map a stored array onto (C, *spatial).
_CHANNEL, _TIME, _SPACE, _UNKNOWN = "channel", "time", "space", None


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
