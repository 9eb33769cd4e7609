"""The default tile: the write box whose tiles cost the least forward work in all.

A forward pass costs about as much as its input has voxels, so a plan's work is its tiles'
input voxels: ``tiles x read voxels``. Large tiles waste less of it on the halo, and tiles
that fit the volume well waste less past its far edge; each tile's input must fit a
budget (device memory). Per axis the candidates are the *balanced* widths, one per tile
count ``n`` (the volume cut into ``n`` tiles as equal as the period allows), each with the
work it costs on that axis (``n x read width``); the plan's work is the product over the
axes. A candidate that reads more than another for no less work is never better, so each
axis keeps only the others. The search goes through the axes' candidates cheapest first
and stops as soon as the least work the remaining axes could add makes the combination
worse than the best found; the last axis's candidate is the widest read left room for.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from ._model_geometry import ModelGeometry
from ._shape import Shape

__all__ = ["default_tile_shape"]


def default_tile_shape(
    volume_shape: Sequence[int], geometry: ModelGeometry, *, max_input_voxels: int
) -> Shape:
    """The period-multiple write box whose plan reads the fewest input voxels in all, each
    tile's input within ``max_input_voxels`` (the period on every axis if nothing fits).

    The box never exceeds the volume rounded up to the period.

    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(2, 2)] * 2)
    >>> default_tile_shape((1000, 1000), g, max_input_voxels=200 * 200)  # 6 x 7 tiles
    (168, 144)
    >>> default_tile_shape((5, 1000), g, max_input_voxels=200 * 200)
    (8, 500)
    >>> default_tile_shape((1000, 1000), g, max_input_voxels=10)
    (4, 4)
    """
    fronts = [_front(_candidates(v, a, geometry)) for a, v in enumerate(volume_shape)]
    search = _Search(fronts, max_input_voxels)
    search.visit(0, max_input_voxels, 1, ())
    return tuple(geometry.period) if search.best is None else search.best


class _Search:
    """Branch and bound over the axes' candidates (``(read, work, width)``, by read)."""

    def __init__(self, fronts: list[list[tuple[int, int, int]]], budget: int) -> None:
        self.fronts = fronts
        n = len(fronts)
        # The least work and the narrowest read the axes after ``a`` can add.
        self.floor = [math.prod(min(c[1] for c in f) for f in fronts[a + 1 :]) for a in range(n)]
        self.narrow = [math.prod(f[0][0] for f in fronts[a + 1 :]) for a in range(n)]
        self.last_reads = [c[0] for c in fronts[-1]]
        self.least: float = math.inf
        self.best: Shape | None = None

    def visit(self, a: int, room: int, work: int, widths: tuple[int, ...]) -> None:
        """Try the candidates of axis ``a`` with ``room`` input voxels left per tile."""
        front = self.fronts[a]
        if a == len(self.fronts) - 1:
            i = bisect.bisect_right(self.last_reads, room) - 1
            if i >= 0 and work * front[i][1] < self.least:
                self.least, self.best = work * front[i][1], (*widths, front[i][2])
            return
        for read, cost, width in reversed(front):  # widest read, least work, first
            if read * self.narrow[a] > room:
                continue
            if work * cost * self.floor[a] >= self.least:
                break  # every narrower candidate costs more still
            self.visit(a + 1, room // read, work * cost, (*widths, width))


def _candidates(volume: int, axis: int, geometry: ModelGeometry) -> list[tuple[int, int, int]]:
    """``(read width, work, write width)`` of each balanced width on ``axis``: one per tile
    count, from one tile covering the volume rounded up to the period to the period."""
    p = geometry.period[axis]
    out: dict[int, tuple[int, int, int]] = {}
    for n in range(1, max(1, -(-volume // p)) + 1):
        per_tile = -(-volume // n)
        width = max(p, -(-per_tile // p) * p)
        if width not in out:
            read = _read_width(geometry, axis, width)
            out[width] = (read, -(-volume // width) * read, width)
    return list(out.values())


def _read_width(geometry: ModelGeometry, axis: int, width: int) -> int:
    """The input width a tile ``width`` wide on ``axis`` reads."""
    shape = list(geometry.period)
    shape[axis] = width
    return geometry.input_for_output(shape)[axis]


def _front(axis: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The candidates no narrower read does with as little work, by read ascending: for a
    read limit the best is then the widest that fits."""
    out: list[tuple[int, int, int]] = []
    for c in sorted(axis):
        if not out or c[1] < out[-1][1]:
            out.append(c)
    return out
