"""The default tile shape: the least forward work in all (tiles x input voxels) within the
budget, checked against a search over every period-multiple write box, and never more
work than the rule it replaced (shrink the longest axis until the input fits)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from stitchsafe.geometry import ModelGeometry, default_tile_shape, unet_geometry


def work(volume: tuple[int, ...], shape: tuple[int, ...], g: ModelGeometry) -> int:
    """Input voxels all tiles of ``shape`` read: the forward work of the plan."""
    tiles = math.prod(-(-v // w) for v, w in zip(volume, shape))
    return tiles * math.prod(g.input_for_output(shape))


def shrink_longest(volume: tuple[int, ...], g: ModelGeometry, budget: int) -> tuple[int, ...]:
    """The earlier default: from the volume rounded up to the period, the longest axis
    shrinks by one period until the input fits; then tiles as equal as the period allows."""
    shape = [max(p, -(-v // p) * p) for v, p in zip(volume, g.period)]
    while math.prod(g.input_for_output(shape)) > budget:
        candidates = [a for a in range(len(shape)) if shape[a] > g.period[a]]
        if not candidates:
            break
        a = max(candidates, key=lambda i: shape[i])
        shape[a] -= g.period[a]
    for a, (w, v, p) in enumerate(zip(shape, volume, g.period)):
        per_tile = -(-v // -(-v // w))
        shape[a] = min(w, max(p, -(-per_tile // p) * p))
    return tuple(shape)


def least_work(volume: tuple[int, ...], g: ModelGeometry, budget: int) -> int | None:
    """The least work of any period-multiple box whose input fits ``budget``, by trying
    them all."""
    ranges = [range(p, max(p, -(-v // p) * p) + 1, p) for v, p in zip(volume, g.period)]
    fits = [s for s in itertools.product(*ranges) if math.prod(g.input_for_output(s)) <= budget]
    return min((work(volume, s, g) for s in fits), default=None)


GEOMETRIES = [
    unet_geometry([(2, 2)] * 2),
    unet_geometry([(2, 2)]),
    unet_geometry([(1, 2), (2, 2)]),
]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(range(len(GEOMETRIES))),
    st.tuples(st.integers(1, 160), st.integers(1, 160)),
    st.integers(400, 40_000),
)
def test_default_is_the_least_work_of_all_boxes_that_fit(
    which: int, volume: tuple[int, int], budget: int
) -> None:
    g = GEOMETRIES[which]
    shape = default_tile_shape(volume, g, max_input_voxels=budget)
    best = least_work(volume, g, budget)
    if best is not None:
        assert math.prod(g.input_for_output(shape)) <= budget
        assert work(volume, shape, g) == best
    old = shrink_longest(volume, g, budget)
    if math.prod(g.input_for_output(old)) <= budget:
        assert work(volume, shape, g) <= work(volume, old, g)


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(st.integers(1, 400), st.integers(1, 2000), st.integers(1, 2000)),
    st.integers(100_000, 8_000_000),
)
def test_3d_never_more_work_than_shrinking_the_longest_axis(
    volume: tuple[int, int, int], budget: int
) -> None:
    g = unet_geometry([(1, 2, 2), (2, 2, 2)])
    shape = default_tile_shape(volume, g, max_input_voxels=budget)
    assert math.prod(g.input_for_output(shape)) <= budget
    old = shrink_longest(volume, g, budget)
    assert work(volume, shape, g) <= work(volume, old, g)


def test_a_large_volume_reads_a_seventh_less() -> None:
    """The bundled 3-D model's geometry (period 2 x 4 x 4, halo 24 x 40 x 40) on 128 x
    1024 x 1024 with the CPU budget: the old rule's 288 tiles of 64 x 88 x 88 read 3.09
    input voxels per voxel of the volume, the least-work box (176 tiles) 2.64."""
    g = unet_geometry([(1, 2, 2), (2, 2, 2)], convs_per_level=2)
    volume, budget = (128, 1024, 1024), 2**21
    shape = default_tile_shape(volume, g, max_input_voxels=budget)
    old = shrink_longest(volume, g, budget)
    assert old == (64, 88, 88) and shape == (64, 128, 96)
    assert work(volume, old, g) / math.prod(volume) == 3.09375
    assert round(work(volume, shape, g) / math.prod(volume), 2) == 2.64
