"""Writing into output arrays: shard-aligned blocks, the per-process array cache, attributes.

Each block is one tile's write box, stored as one shard (or one chunk, for small tiles), so
concurrent writers never share a stored object.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

import numpy as np
import zarr

from ..geometry import Box
from ._downsample import downsample
from ._layout import OutputSpec
from ._shard_file import write_whole_shard
from ._stores import is_url

__all__ = ["mark_complete", "output_array", "storage_shape", "write_block"]

# Opened output arrays, per process (a forked child must not reuse its parent's objects).
_ARRAYS: dict[tuple[int, str, str], Any] = {}
_ARRAYS_LOCK = threading.Lock()


def forget_arrays(group: str) -> None:
    """Drop the cached arrays of ``group`` (before an image in it is deleted)."""
    with _ARRAYS_LOCK:
        for k in [k for k in _ARRAYS if k[1] == os.path.abspath(group)]:
            del _ARRAYS[k]


def output_array(spec: OutputSpec) -> Any:
    """The level-0 array of ``spec``, opened for writing once per process.

    Every chunk written is stored, even one that holds only the fill value: zarr's
    default compares each chunk with it before encoding, a pass over every output byte
    that embeddings (almost never constant) do not repay (about a third of the CPU time of
    writing a tile).
    """
    key = (os.getpid(), os.path.abspath(spec.group), spec.array)
    arr = _ARRAYS.get(key)
    if arr is None:
        with _ARRAYS_LOCK:
            arr = _ARRAYS.get(key)
            if arr is None:
                opened = zarr.open_array(
                    store=os.path.join(spec.group, *spec.array.split("/")), mode="r+"
                )
                arr = _storing_every_chunk(opened)
                _ARRAYS[key] = arr
    return arr


def _storing_every_chunk(arr: Any) -> Any:
    """``arr`` with zarr's ``write_empty_chunks`` on (zarr 3.1 keeps an opened array's
    runtime configuration only when it is given to the array object itself)."""
    config = {"write_empty_chunks": True}
    return zarr.Array(zarr.AsyncArray(arr.metadata, arr.store_path, config=config))


def storage_shape(arr: Any) -> tuple[int, ...] | None:
    """The shape of the objects ``arr`` is stored in: its shards, else its chunks.

    That is what one task writes whole. ``None`` for an array without chunks (numpy).

    >>> import numpy as np, zarr
    >>> a = zarr.create_array({}, shape=(8, 8), chunks=(2, 4), shards=(4, 8), dtype="u1")
    >>> storage_shape(a), storage_shape(zarr.zeros((8, 8), chunks=(2, 4))), storage_shape(
    ...     np.zeros(3))
    ((4, 8), (2, 4), None)
    """
    shape = getattr(arr, "shards", None) or getattr(arr, "chunks", None)
    return None if shape is None else tuple(int(s) for s in shape)


def write_block(spec: OutputSpec, box: Box, data: np.ndarray) -> None:
    """Write ``data`` of shape ``(C, *box.shape)`` at the shard-aligned spatial ``box``.

    Boxes begin on shard boundaries and end on one (or at the array end), so each call
    writes whole shards (chunks, when unsharded) and concurrent calls for different boxes
    never share one. zarr reads a shard before it writes into it, so the box's old shard
    (left by an interrupted run, perhaps damaged) is deleted first (on a local disk; in an
    object store no object is ever half-written). There, a whole shard is encoded and
    stored by :func:`write_whole_shard` (half zarr's CPU time); anything else by zarr.
    """
    arr = output_array(spec)
    shape, chunks = tuple(arr.shape[1:]), (storage_shape(arr) or ())[1:]
    if data.shape != (arr.shape[0], *box.shape):
        raise ValueError(f"data of shape {data.shape} does not fit box {box} x {arr.shape[0]} ch")
    if not Box.from_shape(shape).contains(box):
        raise ValueError(f"box {box} lies outside the output of shape {shape}")
    for b, e, c, s in zip(box.begin, box.end, chunks, shape, strict=True):
        if b % c or (e % c and e != s):
            raise ValueError(f"box {box} is not aligned to the output chunks {chunks}")
    # An object store writes an object whole: no damaged shard is ever left there.
    if arr.shards is None or is_url(spec.group) or not _write_local_shard(spec, arr, box, data):
        arr[(slice(None), *box.to_slices())] = data
    if spec.level1_factors is not None:
        _write_level_one(spec, box, data, spec.level1_factors)


def _write_local_shard(spec: OutputSpec, arr: Any, box: Box, data: np.ndarray) -> bool:
    """Remove the old shard at ``box`` on a local disk, then store ``data`` as the new one
    if it is whole and :func:`write_whole_shard` can encode it (``False``: zarr must)."""
    chunks = (storage_shape(arr) or ())[1:]
    index = (0, *(b // c for b, c in zip(box.begin, chunks)))
    key = str(arr.metadata.encode_chunk_key(index)).split("/")
    path = os.path.join(spec.group, *spec.array.split("/"), *key)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    return write_whole_shard(arr, path, data)


def _write_level_one(
    spec: OutputSpec, box: Box, data: np.ndarray, factors: tuple[int, ...]
) -> None:
    """The block ``data`` at ``box`` downsampled (mean) into level ``1``, at ``box`` over
    ``factors``: whole shards of level 1, since its shards are the write box over them.

    Channel by channel, so the float64 sums stay one channel's size.
    """
    level = OutputSpec(spec.group, spec.image, "/".join(p for p in (spec.image, "1") if p))
    small = Box(
        tuple(b // f for b, f in zip(box.begin, factors, strict=True)),
        tuple(-(-e // f) for e, f in zip(box.end, factors, strict=True)),
    )
    out = np.stack([downsample(channel, factors, "mean", data.dtype) for channel in data])
    write_block(level, small, out)


def mark_complete(spec: OutputSpec, attrs: dict[str, Any]) -> None:
    """Merge ``attrs`` into the image's ``attributes["stitchsafe"]`` (e.g. ``complete``)."""
    img = zarr.open_group(store=os.path.join(spec.group, *spec.image.split("/")), mode="r+")
    previous: Any = img.attrs.get("stitchsafe")
    current = dict(previous or {})
    current.update(attrs)
    img.attrs["stitchsafe"] = current
