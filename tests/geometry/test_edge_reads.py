"""Edge tiles read only what their writes need (``Tile.least_read``, ``batch_reads``).

A tile clipped at the volume's far edge keeps its read begin (so it stays on the period
lattice) and ends where the smallest valid input whose raw output covers its crop ends:
checked over geometries (a remainder ``r``, anisotropic and odd periods), tile shapes and
odd volume shapes. Batches stack one shape: a batch with a full tile reads full boxes.
Approximate plans (``native``) and negative controls (``exact=False``) never trim.
"""

from __future__ import annotations

import itertools
import math

import pytest

from stitchsafe.geometry import ModelGeometry, batch_reads, make_plan, unet_geometry

GEOMETRIES = {
    "2d-d2": unet_geometry([(2, 2)] * 2),
    "2d-d4-r": unet_geometry([(2, 2)] * 4),
    "2d-f3": unet_geometry([(3, 3), (3, 3)]),
    "3d-aniso": unet_geometry([(1, 2, 2), (2, 2, 2)]),
}


def _cases() -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    cases = []
    for name, g in GEOMETRIES.items():
        for k, extra in itertools.product((1, 2, 3), (1, 5, 0)):
            tile = tuple(k * p for p in g.period)
            volume = tuple(2 * t + extra + a for a, t in enumerate(tile))
            cases.append((name, tile, volume))
    return cases


@pytest.mark.parametrize("name, tile, volume", _cases())
def test_least_read_is_the_smallest_valid_read_covering_the_crop(
    name: str, tile: tuple[int, ...], volume: tuple[int, ...]
) -> None:
    g = GEOMETRIES[name]
    plan = make_plan(volume, g, tile_shape=tile)
    trimmed = 0
    for t in plan:
        least = t.least_read
        if least is None:
            # a full tile, or one whose clipped write still needs the whole read
            assert g.input_for_output(t.write.shape) == plan.read_shape or t.write.shape == tile
            continue
        trimmed += 1
        assert t.write.shape != plan.tile_shape
        assert least.begin == t.read.begin  # on the lattice: the same values
        assert all(s <= r for s, r in zip(least.shape, t.read.shape)) and least != t.read
        assert g.is_valid_input(least.shape)
        out = g.output_shape(least.shape)
        assert all(e <= o for e, o in zip(t.crop.end, out))
        # smallest: one step less on any trimmed axis no longer covers the crop
        for a in range(g.dims):
            if least.shape[a] < t.read.shape[a] and least.shape[a] - g.step[a] >= g.min_input[a]:
                assert least.shape[a] - g.step[a] - g.context[a] < t.crop.end[a]
    # some tile reads less iff on some axis the last tile's write fits a raw output one
    # step smaller than the full tile's (and still valid: no smaller than the least output)
    last = [v - (n - 1) * w for v, w, n in zip(volume, tile, plan.grid_shape)]
    least_out = [m - c for m, c in zip(g.min_input, g.context)]
    smaller = [o - s for o, s in zip(plan.raw_output_shape, g.step)]
    assert (trimmed > 0) == any(o >= max(e, m) for o, e, m in zip(smaller, last, least_out))


def test_batches_read_one_shape() -> None:
    g = GEOMETRIES["2d-d2"]
    plan = make_plan((50, 37), g, tile_shape=(16, 16))
    tiles = {t.index: t for t in plan}
    corner, edge, full = tiles[(3, 2)], tiles[(0, 2)], tiles[(0, 0)]
    assert corner.least_read is not None and edge.least_read is not None
    assert full.least_read is None
    # alone: its own least read; with a full tile: the full box; edges together: the max
    assert batch_reads([corner]) == [corner.least_read]
    assert [b.shape for b in batch_reads([corner, full])] == [plan.read_shape] * 2
    shapes = {b.shape for b in batch_reads([corner, edge])}
    want = tuple(max(a, b) for a, b in zip(corner.least_read.shape, edge.least_read.shape))
    assert shapes == {want}
    assert [b.begin for b in batch_reads([corner, edge])] == [corner.read.begin, edge.read.begin]


def test_trimmed_reads_save_forward_work() -> None:
    g = GEOMETRIES["3d-aniso"]
    volume, tile = (64, 512, 512), (64, 128, 88)
    plan = make_plan(volume, g, tile_shape=tile)
    full = len(plan) * math.prod(plan.read_shape)
    least = sum(math.prod((t.least_read or t.read).shape) for t in plan)
    # six columns of 88 cover 528 of 512: the last column writes 72 and reads 32 fewer
    assert least < full
    last = plan.tile_at((0, 0, 5))
    assert last.write.shape == (64, 128, 72)
    assert last.least_read.shape[2] == plan.read_shape[2] - 16


def test_approximate_and_inexact_plans_never_trim() -> None:
    native = ModelGeometry(period=(2, 2), halo=((0, 0),) * 2, min_input=(2, 2), step=(2, 2))
    wide = ModelGeometry(period=(2, 2), halo=((4, 4),) * 2, min_input=(10, 10), step=(2, 2))
    approximate = make_plan((45, 53), wide, tile_shape=(8, 8), native=native)
    naive = make_plan((45, 53), GEOMETRIES["2d-d2"], tile_shape=(10, 10), exact=False)
    for plan in (approximate, naive):
        assert all(t.least_read is None for t in plan)
