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
from ._read_errors import box_text
from ._volume import Volume

__all__ = ["PAD_MODES", "check_finite", "pad_indices", "read_padded"]

FLOAT32_MAX = float(np.finfo(np.float32).max)

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
    data = _read_float32(volume, Box(lo, hi), transform)
    data = _gather(data, maps, lo)
    if all(k.stop - k.start == n for k, n in zip(keep, box.shape, strict=True)):
        return np.ascontiguousarray(data)
    out[(slice(None), *keep)] = data
    return out


def _read_float32(
    volume: Volume, box: Box, transform: Callable[[np.ndarray], np.ndarray] | None
) -> np.ndarray:
    """``box`` (inside the volume) as float32, checked finite before and after ``transform``."""
    raw = volume.read(box)
    check_finite(volume, box, raw)
    data = raw.astype(np.float32, copy=False)
    if transform is None:
        return data
    with np.errstate(over="ignore", invalid="ignore"):
        data = np.asarray(transform(data), dtype=np.float32)
    if not np.isfinite(data).all():
        raise StitchsafeError(
            f"the intensity normalisation maps voxels of {volume.path!r} in "
            f"{box_text(box, volume.axes)} beyond the float32 range (+-3.4e38) that the "
            "network computes in; the volume's value range is too narrow or too wide for "
            "it. Pass another --normalize (zscore, or none), or rescale the data."
        )
    return data


def check_finite(
    volume: Volume, box: Box, data: np.ndarray, *, allow_non_finite: bool = False
) -> None:
    """Refuse voxel values the network cannot compute with: NaN, infinity, beyond float32.

    ``data`` is ``volume.read(box)`` (stored dtype). NaN and infinity would spread into
    every output voxel whose receptive field holds them; float64 values beyond the float32
    range (the network's) would become infinity. Integers always pass.
    ``allow_non_finite`` checks only the range (statistics that leave NaN out).

    >>> import tempfile, zarr
    >>> from stitchsafe.io import open_volume
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> _ = zarr.create_array(f"{d}/a.zarr", data=np.array([1.0, np.nan, 2.0]))
    >>> v = open_volume(f"{d}/a.zarr", spatial_dims=1)
    >>> check_finite(v, Box((0,), (3,)), v.read(Box((0,), (3,))))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the input ... in x 0:3 (1 of 3; the first at x 1)...

    >>> tmp.cleanup()
    """
    if data.dtype.kind != "f":
        return
    where = f"the input {volume.path!r}"
    if not allow_non_finite:
        bad = ~np.isfinite(data)
        if bad.any():
            raise StitchsafeError(
                f"{where} holds NaN or infinite voxel values in {box_text(box, volume.axes)} "
                f"({int(bad.sum())} of {bad.size}; the first at {_first(bad, box, volume)}). "
                "The network would spread them into the output (NaN embeddings, wrong "
                "labels). Replace them with finite values (e.g. numpy.nan_to_num, or the "
                "background value) and run again."
            )
    if data.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):
            big = np.abs(data) > FLOAT32_MAX
        if big.any():
            top = float(np.nanmax(np.abs(np.where(np.isfinite(data), data, 0.0))))
            raise StitchsafeError(
                f"{where} holds values up to {top:.3g} in {box_text(box, volume.axes)} (the "
                f"first at {_first(big, box, volume)}), beyond the float32 range (+-3.4e38) "
                "that the network computes in: they would become infinity and NaN. Rescale "
                "the data (e.g. divide it by a constant) or store it as float32, and run again."
            )


def _first(mask: np.ndarray, box: Box, volume: Volume) -> str:
    """The first voxel where ``mask`` (``(C, *box.shape)``) is set, in volume coordinates."""
    c, *local = (int(i) for i in np.argwhere(mask)[0])
    at = ", ".join(f"{n} {b + i}" for n, b, i in zip(volume.axes, box.begin, local))
    return f"{at}, channel {c}" if volume.channels > 1 else at


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
