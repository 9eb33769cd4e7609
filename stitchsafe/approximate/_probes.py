"""Probe volumes: the inputs over which tiled runs are compared with one whole pass.

Two probes: a seeded structured input (:func:`stitchsafe.models.structured_input`) of
three tiles per axis, and the real input, normalised as the run normalises it: all of it
where a tiled run over it reads at most :data:`INPUT_PROBE_VOXELS` voxels, else the
largest centred crop that does (three tiles per axis at least).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..geometry import Box
from ..io import Volume, read_padded
from ..models import structured_input
from ._settings import INPUT_PROBE_VOXELS

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Probe:
    """A deterministic probe volume.

    ``shape(tile_shape, read_shape)`` is the probe volume's spatial shape for tiles of
    that write and read shape, ``read(shape)`` its ``(C, *shape)`` float32 voxels (already
    normalised), ``describe(shape)`` what was read, for reports.
    """

    name: str
    shape: Callable[[Shape, Shape], Shape]
    read: Callable[[Shape], np.ndarray]
    describe: Callable[[Shape], str]


def structured_probe(channels: int, *, seed: int = 0, tiles: int = 3) -> Probe:
    """Seeded noise plus ramps and slow waves (:func:`stitchsafe.models.structured_input`).

    The probe volume holds ``tiles`` tiles per axis: the middle one has seams on every
    side.

    >>> p = structured_probe(2)
    >>> p.shape((4, 8), (20, 24))
    (12, 24)
    >>> p.read((3, 4)).shape, p.read((3, 4)).dtype
    ((2, 3, 4), dtype('float32'))
    """

    def read(shape: Shape) -> np.ndarray:
        x = structured_input(shape, channels, seed=seed)[0]
        return x.numpy().astype(np.float32)

    return Probe(
        "structured",
        lambda tile, _: tuple(tiles * t for t in tile),
        read,
        lambda shape: f"seeded noise, ramps and waves ({' x '.join(map(str, shape))})",
    )


def input_probe(
    volume: Volume,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    pad_mode: str = "reflect",
    max_voxels: int = INPUT_PROBE_VOXELS,
    min_tiles: int = 3,
) -> Probe:
    """A centred crop of the real input, normalised as the run normalises it.

    The crop is the whole volume when a tiled run over it reads at most ``max_voxels``
    input voxels (the measured deviation is then the run's own, for the probe's tiles);
    else the largest centred crop that does, shrinking the axis with the most tiles first,
    but never below ``min_tiles`` tiles per axis (nor above the volume). The crop is
    treated as a volume of its own: padded at its borders with ``pad_mode``.
    """

    def shape(tile: Shape, read_shape: Shape) -> Shape:
        return _crop_shape(volume.shape, tile, read_shape, max_voxels, min_tiles)

    def box(shape: Shape) -> Box:
        begin = tuple((v - n) // 2 for v, n in zip(volume.shape, shape, strict=True))
        return Box.from_shape(shape, begin)

    def read(shape: Shape) -> np.ndarray:
        return read_padded(volume, box(shape), mode=pad_mode, transform=transform)

    def describe(shape: Shape) -> str:
        b = box(shape)
        if tuple(shape) == tuple(volume.shape):
            return f"the whole input ({' x '.join(map(str, shape))})"
        span = ", ".join(f"{lo}:{hi}" for lo, hi in zip(b.begin, b.end, strict=True))
        return f"centred crop [{span}] of the input"

    return Probe("input", shape, read, describe)


def _crop_shape(
    volume_shape: Shape, tile: Shape, read_shape: Shape, max_voxels: int, min_tiles: int
) -> Shape:
    """The largest crop of ``volume_shape`` whose tiled run reads at most ``max_voxels``.

    Tiles are removed from the axis with the most tiles first, down to ``min_tiles`` per
    axis (or the volume's own count where it has fewer).

    >>> _crop_shape((100, 40), (10, 10), (20, 20), 400 * 12, 3)
    (30, 40)
    >>> _crop_shape((100, 40), (10, 10), (20, 20), 1, 3)
    (30, 30)
    >>> _crop_shape((25, 40), (10, 10), (20, 20), 10**6, 3)
    (25, 40)
    """
    counts = [-(-v // t) for v, t in zip(volume_shape, tile, strict=True)]
    floor = [min(c, min_tiles) for c in counts]
    per_tile = math.prod(read_shape)
    while math.prod(counts) * per_tile > max_voxels and counts != floor:
        a = max((i for i in range(len(counts)) if counts[i] > floor[i]), key=counts.__getitem__)
        counts[a] -= 1
    return tuple(min(v, c * t) for v, c, t in zip(volume_shape, counts, tile, strict=True))
