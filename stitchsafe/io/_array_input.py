"""Arrays already in memory as inputs: numpy, dask and opened zarr arrays.

A pipeline that holds its image as an array passes it where a path would go; the same
positional rule as for a bare zarr array decides the axes (``spatial_dims`` axes, or one
more as a leading channel axis) and ``--voxel-size``/``--unit`` (``physical``) give its
physical scale (voxel size 1 and no unit otherwise). Reads slice the array box by box:
a dask array computes only the blocks under a tile, an opened zarr array decodes only its
chunks (through the input chunk cache). The array travels with the volume when the
volume is pickled (processes, dask workers), so large in-memory inputs suit the threads
scheduler best.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import StitchsafeError
from ._axes import UNKNOWN, map_axes
from ._physical import AxisValue, PhysicalSettings, resolve_physical
from ._selection import InputSelection
from ._volume import Volume, check_dtype, make_volume

__all__ = ["ARRAY_NAME", "input_name", "is_array", "volume_from_array"]

#: What a volume read from an in-memory array reports as its path.
ARRAY_NAME = "<array>"


def is_array(value: Any) -> bool:
    """Whether ``value`` is an array-like input rather than a path (shape, dtype, slicing).

    >>> is_array(np.zeros((2, 2))), is_array("vol.zarr")
    (True, False)
    """
    return all(hasattr(value, a) for a in ("shape", "dtype", "__getitem__", "ndim"))


def input_name(value: Any) -> str:
    """How an input is named in messages and results: its path, or ``"<array>"``.

    >>> input_name("vol.zarr"), input_name(np.zeros(3))
    ('vol.zarr', '<array>')
    """
    return ARRAY_NAME if is_array(value) else os.fspath(value)


def volume_from_array(
    array: Any,
    *,
    spatial_dims: int,
    physical: PhysicalSettings | None = None,
    chosen: InputSelection | None = None,
) -> Volume:
    """A :class:`Volume` over an in-memory (or opened) array.

    Examples
    --------
    >>> v = volume_from_array(np.arange(60).reshape(3, 4, 5), spatial_dims=2)
    >>> v.kind, v.path, v.shape, v.channels
    ('array', '<array>', (4, 5), 3)
    >>> from stitchsafe.geometry import Box
    >>> v.read(Box((1, 1), (2, 3)))[:, 0].tolist()
    [[6, 7], [26, 27], [46, 47]]
    >>> volume_from_array([1, 2], spatial_dims=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the input is a list, not an array...
    """
    if not is_array(array):
        raise StitchsafeError(
            f"the input is a {type(array).__name__}, not an array: pass a numpy, dask or "
            "zarr array (or the path of an image file)."
        )
    where = f"the input array of shape {tuple(array.shape)}"
    check_dtype(np.dtype(array.dtype), where)
    shape = tuple(int(s) for s in array.shape)
    n = len(shape)
    axes = map_axes(shape, [UNKNOWN] * n, [None] * n, spatial_dims, where, chosen)
    scale = resolve_physical([AxisValue()] * len(axes.space), axes.spatial_names, where, physical)
    return make_volume(
        ARRAY_NAME,
        "array",
        np.dtype(array.dtype),
        axes,
        ARRAY_NAME,
        physical=scale,
        chosen=chosen,
        memory=array,
    )
