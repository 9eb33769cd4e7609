"""The order tiles run in: blocks of columns are a permutation of the grid, each block whole,
and the C order wherever the chunks under a plane of tiles fit the budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stitchsafe.geometry import blocked_order, cache_block, make_plan, unet_geometry


@given(
    grid=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    sides=st.lists(st.integers(1, 7), min_size=3, max_size=3),
)
def test_blocked_order_runs_every_tile_once_block_by_block(
    grid: list[int], sides: list[int]
) -> None:
    outer = next((a for a, g in enumerate(grid) if g > 1), 0)
    block = sides[: len(grid) - outer - 1]
    order = blocked_order(grid, block)
    assert sorted(order.tolist()) == list(range(math.prod(grid)))
    # Consecutive runs of one block each: a block's tiles never come back after another's.
    index = np.array(np.unravel_index(order, grid)).T
    keys = [tuple(i[outer + 1 :] // np.array(block, dtype=int)) for i in index]
    seen, previous = set(), None
    for key in keys:
        if key != previous:
            assert key not in seen
            seen.add(key)
        previous = key
    # Inside a block, C order (the outer axis slowest).
    for key in seen:
        mine = [o for o, k in zip(order.tolist(), keys) if k == key]
        assert mine == sorted(mine)
    if all(b >= g for b, g in zip(block, grid[outer + 1 :])):
        assert order.tolist() == list(range(math.prod(grid)))


def test_a_block_that_does_not_fit_the_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        blocked_order((3, 4), (2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        blocked_order((3, 4), (0,))


def test_the_block_shrinks_with_the_budget() -> None:
    plan = make_plan((128, 2048, 2048), unet_geometry([(1, 2, 2)]), tile_shape=(64, 128, 128))
    chunk, grid = (64, 256, 256), plan.grid_shape[1:]
    assert cache_block(plan, chunk, 2, 1 << 32) is None  # a plane fits: C order
    blocks = [cache_block(plan, chunk, 2, fits) for fits in (1 << 29, 1 << 27, 1 << 25, 1 << 10)]
    assert all(b is not None and len(set(b)) == 1 for b in blocks)  # equal sides
    sides = [b[0] for b in blocks if b is not None]
    assert sides == sorted(sides, reverse=True) and sides[0] < grid[0] and sides[-1] == 1
    assert blocked_order(plan.grid_shape, None).tolist() == list(range(len(plan)))
