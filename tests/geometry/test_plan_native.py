"""Approximate tiling's plans: border tiles stay inside the model's own whole-volume input.

For a same-padded model tiled with a wider halo (``make_plan(..., native=...)``), the
write boxes still cover the volume once, every read stays inside the input of the
model's own whole-volume pass and on its period lattice, and every crop lands inside the
tile's raw output. Checked over periods, halos, tile shapes and odd volume shapes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stitchsafe.geometry import ModelGeometry, make_plan


def _same(period: tuple[int, ...], lo: int = 0) -> ModelGeometry:
    """A same-padded model's own geometry (halo ``lo``: a model with a little context)."""
    return ModelGeometry(
        period=period,
        halo=((lo, lo),) * len(period),
        min_input=tuple(p + 2 * lo for p in period),
        step=period,
    )


def _widen(native: ModelGeometry, extra: tuple[int, ...]) -> ModelGeometry:
    halo = tuple((lo + e, hi + e) for (lo, hi), e in zip(native.halo, extra))
    min_input = tuple(
        m + max(0, -(-(lo + hi + 1 - m) // s)) * s
        for m, s, (lo, hi) in zip(native.min_input, native.step, halo)
    )
    return ModelGeometry(period=native.period, halo=halo, min_input=min_input, step=native.step)


CASES = [
    # period, native halo, extra halo, tile, volume
    ((2, 2), 0, (4, 4), (8, 8), (45, 53)),
    ((2, 2), 0, (8, 8), (8, 8), (50, 66)),
    ((4, 2), 0, (8, 6), (12, 6), (37, 61)),
    ((2, 2), 0, (16, 16), (8, 8), (20, 20)),  # reads larger than the volume: clamped
    ((2, 2), 3, (4, 4), (6, 10), (31, 29)),  # a model with context of its own
    ((1, 4, 4), 0, (4, 8, 8), (4, 16, 8), (9, 37, 30)),
]


@pytest.mark.parametrize("period, lo, extra, tile, volume", CASES)
def test_reads_stay_inside_the_models_own_input(
    period: tuple[int, ...],
    lo: int,
    extra: tuple[int, ...],
    tile: tuple[int, ...],
    volume: tuple[int, ...],
) -> None:
    native = _same(period, lo)
    plan = make_plan(volume, _widen(native, extra), tile_shape=tile, native=native)
    canvas = native.input_for_output(volume)
    assert plan.canvas == canvas and plan.model_geometry is native
    assert plan.raw_output_shape == native.output_shape(plan.read_shape)
    assert all(r <= c for r, c in zip(plan.read_shape, canvas))
    covered = np.zeros(volume, np.int32)
    shifted = 0
    for t in plan:
        covered[t.write.to_slices()] += 1
        assert t.read.shape == plan.read_shape
        for a in range(len(volume)):
            # inside the whole pass's input, which starts at -lo; on its period lattice
            assert -lo <= t.read.begin[a] and t.read.end[a] <= canvas[a] - lo
            assert (t.read.begin[a] + lo) % period[a] == 0
            # the crop lands inside the raw output, on the write box
            assert 0 <= t.crop.begin[a] and t.crop.end[a] <= plan.raw_output_shape[a]
            assert t.read.begin[a] + lo + t.crop.begin[a] == t.write.begin[a]
        shifted += any(c != e for c, e in zip(t.crop.begin, extra))
    assert (covered == 1).all()
    assert shifted > 0  # the border tiles moved
    lows = [lo_ for lo_, _ in plan.pad]
    assert lows == [lo] * len(volume)  # nothing read before the whole pass's own start
    assert plan.to_dict()["border"] == "inside"


def test_interior_tiles_are_those_of_the_padded_plan() -> None:
    native = _same((2, 2))
    wide = _widen(native, (6, 6))
    inside = make_plan((64, 64), wide, tile_shape=(8, 8), native=native)
    padded = make_plan((64, 64), wide, tile_shape=(8, 8))
    assert padded.to_dict()["border"] == "padded"
    same = 0
    for a, b in zip(inside, padded):
        assert a.write == b.write
        if all(0 <= r and e <= 64 for r, e in zip(b.read.begin, b.read.end)):
            assert a.read == b.read and a.crop.begin == (6, 6)
            same += 1
    assert same == 36  # the 6 x 6 tiles whose padded reads stay inside the image


def test_a_geometry_that_does_not_widen_the_native_one_is_refused() -> None:
    native = _same((2, 2))
    other = _same((4, 4))
    with pytest.raises(ValueError, match="does not widen"):
        make_plan((20, 20), other, tile_shape=(8, 8), native=native)


def test_pad_of_plans_without_native_is_unchanged() -> None:
    geometry = ModelGeometry(period=(2, 2), halo=((5, 7), (5, 7)), min_input=(14, 14), step=(2, 2))
    for tile, volume in itertools.product([(4, 4), (6, 8)], [(9, 9), (17, 30)]):
        plan = make_plan(volume, geometry, tile_shape=tile)
        last = [(g - 1) * t - 5 + r for g, t, r in zip(plan.grid_shape, tile, plan.read_shape)]
        assert plan.pad == tuple((5, max(0, e - v)) for e, v in zip(last, volume))
