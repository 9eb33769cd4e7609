"""Writing into output arrays: chunk-aligned blocks, the per-process array cache, attributes.

Each block is one tile's write box, so concurrent writers never share a chunk.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import zarr

from ..geometry import Box
from ._layout import OutputSpec

__all__ = ["mark_complete", "output_array", "write_block"]

# Opened output arrays, per process (a forked child must not reuse its parent's objects).
_ARRAYS: dict[tuple[int, str, str], Any] = {}
_ARRAYS_LOCK = threading.Lock()


def forget_arrays(group: str) -> None:
    """Drop the cached arrays of ``group`` (before an image in it is deleted)."""
    with _ARRAYS_LOCK:
        for k in [k for k in _ARRAYS if k[1] == os.path.abspath(group)]:
            del _ARRAYS[k]


def output_array(spec: OutputSpec) -> Any:
    """The level-0 array of ``spec``, opened for writing once per process."""
    key = (os.getpid(), os.path.abspath(spec.group), spec.array)
    arr = _ARRAYS.get(key)
    if arr is None:
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
    arr = output_array(spec)
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
    img = zarr.open_group(store=os.path.join(spec.group, *spec.image.split("/")), mode="r+")
    previous: Any = img.attrs.get("stitchsafe")
    current = dict(previous or {})
    current.update(attrs)
    img.attrs["stitchsafe"] = current
