"""Padded reads: index maps that extend an axis like ``numpy.pad``, and reads past the edge.

:func:`pad_indices` is a pure index map; :func:`read_padded` uses it to extend a read past
the volume edge exactly as ``numpy.pad`` would extend the whole volume, which is what makes
tiled output equal the whole-volume oracle.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import StitchsafeError
from ..geometry import Box
from ._volume import Volume

__all__ = ["PAD_MODES", "pad_indices", "read_padded"]

# The one list of padding modes stitchsafe offers (numpy.pad semantics), for predict,
# check and train alike.
PAD_MODES = ("reflect", "constant", "edge")


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
    if mode == "reflect":
        if size == 1:
            return np.zeros_like(i)
        period = 2 * (size - 1)
        m = i % period
        return np.where(m < size, m, period - m)
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
        One of :data:`PAD_MODES` with ``numpy.pad`` semantics: ``"reflect"``, ``"edge"`` or
        ``"constant"`` (value 0).
    transform
        Intensity normalisation applied to the voxels read *before* padding, so that
        constant padding is 0 in normalised space (float32 in, float32 out).

    Examples
    --------
    >>> import tempfile, zarr
    >>> from stitchsafe.io import open_volume
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
    sources = _source_indices(box, volume.shape, mode)
    if sources is None:  # constant mode, box entirely outside on some axis
        return out
    maps, keep = sources
    lo = tuple(int(m.min()) for m in maps)
    hi = tuple(int(m.max()) + 1 for m in maps)
    data = volume.read(Box(lo, hi)).astype(np.float32, copy=False)
    if transform is not None:
        data = np.asarray(transform(data), dtype=np.float32)
    data = _gather(data, maps, lo)
    if all(k.stop - k.start == n for k, n in zip(keep, box.shape, strict=True)):
        return np.ascontiguousarray(data)
    out[(slice(None), *keep)] = data
    return out


def _source_indices(
    box: Box, shape: tuple[int, ...], mode: str
) -> tuple[list[np.ndarray], list[slice]] | None:
    """Source indices of the box coordinates that read the volume, per axis.

    Returns the index maps and, per axis, the slice of the box they cover; ``None`` when
    on some axis no coordinate reads the volume (constant mode, box entirely outside).
    """
    maps = [pad_indices(b, e, s, mode) for b, e, s in zip(box.begin, box.end, shape, strict=True)]
    keep: list[slice] = []
    for m in maps:
        inside = np.flatnonzero(m >= 0)
        if inside.size == 0:
            return None
        # Outside positions only occur at the ends, so the kept ones are contiguous.
        keep.append(slice(int(inside[0]), int(inside[-1]) + 1))
    return [m[k] for m, k in zip(maps, keep, strict=True)], keep


def _gather(data: np.ndarray, maps: list[np.ndarray], lo: tuple[int, ...]) -> np.ndarray:
    """``data`` (read from ``lo`` on) indexed by the source ``maps`` of each spatial axis."""
    for a, (m, b) in enumerate(zip(maps, lo, strict=True)):
        local = m - b
        if local.size != data.shape[a + 1] or np.any(local != np.arange(local.size)):
            data = np.take(data, local, axis=a + 1)
    return data
