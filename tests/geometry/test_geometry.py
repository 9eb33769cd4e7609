"""Property and example tests of the pure tile geometry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import (
    Box,
    ModelGeometry,
    check_tile_shape,
    default_tile_shape,
    make_plan,
    normalize_pooling_factors,
    parse_ints,
    unet_geometry,
    unet_output_size,
)


def test_paper_example_remainder() -> None:
    # 2-D, l=4, f=2, two 3x3 convs per level: output sizes 4, 20, 36, ... so r = 4.
    g = unet_geometry([(2, 2)] * 4)
    outputs = [g.output_shape((n, n))[0] for n in (188, 204, 220)]
    assert outputs == [4, 20, 36]
    assert g.remainder == (4, 4)
    assert g.period == (16, 16)
    assert g.distinguishable_objects == 256


@pytest.mark.parametrize(
    "factors, period",
    [
        ([(2,)], (2,)),
        ([(2, 2)] * 3, (8, 8)),
        ([(3, 3)] * 2, (9, 9)),
        ([(1, 2, 2), (1, 2, 2), (2, 2, 2)], (2, 8, 8)),
        ([(2, 2, 2)] * 5, (32, 32, 32)),
        ([(3, 2)] * 4, (81, 16)),
    ],
    ids=["1d-d1", "2d-d3", "2d-f3", "3d-aniso", "3d-d5", "2d-mixed-d4"],
)
def test_unet_geometry_period_and_valid_sizes(factors: list, period: tuple) -> None:
    g = unet_geometry(factors)
    assert g.period == period
    assert g.step == period
    for a in range(g.dims):
        fa = [f[a] for f in factors]
        valid = [
            n
            for n in range(1, g.min_input[a] + 3 * g.step[a] + 1)
            if unet_output_size(n, fa) is not None
        ]
        # valid sizes are exactly min + k * step, and output = input - context on each
        assert valid == list(range(g.min_input[a], g.min_input[a] + 3 * g.step[a] + 1, g.step[a]))
        for n in valid:
            assert unet_output_size(n, fa) == n - g.context[a]


def test_geometry_rejects_inconsistent_values() -> None:
    with pytest.raises(StitchsafeError, match="multiple of the period"):
        ModelGeometry(period=(4,), halo=((2, 2),), min_input=(10,), step=(6,))
    with pytest.raises(StitchsafeError, match="inconsistent"):
        ModelGeometry(period=(4,), halo=((2, 2), (1, 1)), min_input=(10,), step=(4,))
    with pytest.raises(StitchsafeError, match="no output"):
        ModelGeometry(period=(4,), halo=((5, 5),), min_input=(10,), step=(4,))


def test_tile_shape_off_period_names_nearest_values() -> None:
    g = unet_geometry([(2, 2)] * 3)
    with pytest.raises(StitchsafeError, match="nearest valid values are 16 and 24"):
        check_tile_shape((16, 20), g)
    with pytest.raises(StitchsafeError, match="nearest valid values are 8"):
        check_tile_shape((3, 8), g)
    assert check_tile_shape((8, 24), g) == (8, 24)


def test_normalize_pooling_factors_forms() -> None:
    assert normalize_pooling_factors(2, dims=2, depth=3) == ((2, 2),) * 3
    assert normalize_pooling_factors([(1, 2, 2)], dims=3, depth=2) == ((1, 2, 2),) * 2
    with pytest.raises(StitchsafeError):
        normalize_pooling_factors(2, dims=2)
    with pytest.raises(StitchsafeError):
        normalize_pooling_factors([(2, 2)] * 2, dims=2, depth=3)


@pytest.mark.parametrize("text", ["a,b", "", "0,4", "-2", "2.5"])
def test_parse_ints_rejects(text: str) -> None:
    with pytest.raises(StitchsafeError, match="positive integers"):
        parse_ints(text, "--tile-shape")


# --- property tests of the plan -------------------------------------------------------

factor_st = st.sampled_from([1, 2, 3])


@st.composite
def plans(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    dims = draw(st.integers(1, 3))
    depth = draw(st.integers(1, 3))
    factors = [tuple(draw(factor_st) for _ in range(dims)) for _ in range(depth)]
    g = unet_geometry(factors)
    volume = tuple(draw(st.integers(1, 60)) for _ in range(dims))
    tile = tuple(p * draw(st.integers(1, 4)) for p in g.period)
    return make_plan(volume, g, tile_shape=tile)


@settings(max_examples=150, deadline=None)
@given(plans())
def test_plan_properties(plan) -> None:  # type: ignore[no-untyped-def]
    g = plan.geometry
    volume = Box.from_shape(plan.volume_shape)
    covered = np.zeros(plan.volume_shape, np.int32)
    seen_chunks = set()
    tiles = list(plan)
    assert len(tiles) == len(plan)
    for i, t in enumerate(tiles):
        assert plan.tile(i) == t
        # write boxes are inside the volume and partition it
        assert volume.contains(t.write) and not t.write.empty
        covered[t.write.to_slices()] += 1
        # the read box is a valid input, the write box plus the halo (up to the crop)
        assert g.is_valid_input(t.read.shape)
        assert t.read.shape == plan.read_shape
        assert t.read.begin == tuple(b - lo for b, lo in zip(t.write.begin, g.halo_lo))
        raw = Box.from_shape(g.output_shape(t.read.shape))
        assert raw.contains(t.crop) and t.crop.shape == t.write.shape
        # write origins are on the period lattice anchored at the volume origin, and read
        # origins are congruent with the whole-volume pass's origin (-halo_lo)
        assert all(b % p == 0 for b, p in zip(t.write.begin, g.period))
        assert all((b + lo) % p == 0 for b, lo, p in zip(t.read.begin, g.halo_lo, g.period))
        # no two tiles share an output chunk
        chunks = {
            tuple(c)
            for c in itertools.product(
                *(
                    range(b // w, -(-e // w))
                    for b, e, w in zip(t.write.begin, t.write.end, plan.chunks)
                )
            )
        }
        assert not chunks & seen_chunks
        seen_chunks |= chunks
        # reads stay within the padded extent
        padded = volume.grow([p[0] for p in plan.pad], [p[1] for p in plan.pad])
        assert padded.contains(t.read)
    assert (covered == 1).all()
    assert math.isclose(
        plan.halo_overhead, len(plan) * math.prod(plan.read_shape) / math.prod(plan.volume_shape)
    )


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda d: st.tuples(
            st.just(d),
            st.lists(st.integers(1, 500), min_size=d, max_size=d),
            st.integers(10_000, 5_000_000),
        )
    )
)
def test_default_tile_shape_fits_budget(args) -> None:  # type: ignore[no-untyped-def]
    dims, volume, budget = args
    g = unet_geometry([(2,) * dims] * 2)
    shape = default_tile_shape(volume, g, max_input_voxels=budget)
    check_tile_shape(shape, g)
    smallest = math.prod(g.input_for_output(g.period))
    if budget >= smallest:
        assert math.prod(g.input_for_output(shape)) <= budget
    for s, v, p in zip(shape, volume, g.period):
        assert s <= max(p, -(-v // p) * p)


def test_inexact_plan_allows_off_period_tiles() -> None:
    g = unet_geometry([(2, 2)] * 2)
    with pytest.raises(StitchsafeError):
        make_plan((20, 20), g, tile_shape=(5, 5))
    p = make_plan((20, 20), g, tile_shape=(5, 5), exact=False)
    assert not p.exact and len(p) == 16


def test_plan_rejects_wrong_dims_and_empty() -> None:
    g = unet_geometry([(2, 2)])
    with pytest.raises(StitchsafeError, match="spatial axes"):
        make_plan((10, 10, 10), g, tile_shape=4)
    with pytest.raises(StitchsafeError, match="empty"):
        make_plan((0, 10), g, tile_shape=4)
