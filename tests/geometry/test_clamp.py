"""Tiles larger than the volume are clamped to the largest useful tile, and stay exact.

The clamp (:func:`stitchsafe.geometry.clamp_tile_shape`) keeps every axis a multiple of
the period that covers the volume, so the plan equals the one of the largest useful tile
(:func:`stitchsafe.geometry.default_tile_shape` with an unbounded budget) and the stitched
result still equals one whole-volume pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from hypothesis import given
from hypothesis import strategies as st
from nets import saved_model

import stitchsafe
from stitchsafe.engine import whole_volume_forward
from stitchsafe.geometry import clamp_tile_shape, default_tile_shape, make_plan, unet_geometry
from stitchsafe.models import load_model, resolve_geometry

UNBOUNDED = 2**62


def test_an_oversized_tile_on_512x512_plans_the_largest_useful_tile() -> None:
    g = unet_geometry([(2, 2)] * 4)  # period 16
    clamped = clamp_tile_shape((1024, 1024), (512, 512), g.period)
    assert clamped == (512, 512) == default_tile_shape((512, 512), g, max_input_voxels=UNBOUNDED)
    plan = make_plan((512, 512), g, tile_shape=clamped)
    assert len(plan) == 1 and plan.read_shape == g.input_for_output((512, 512))


@given(
    volume=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    period=st.tuples(st.sampled_from([1, 2, 3, 4, 8, 16]), st.sampled_from([1, 2, 4, 9])),
    tile=st.tuples(st.integers(1, 80), st.integers(1, 80)),
)
def test_clamp_covers_the_volume_on_the_period_and_never_grows(
    volume: tuple[int, int], period: tuple[int, int], tile: tuple[int, int]
) -> None:
    given_shape = tuple(t * p for t, p in zip(tile, period))
    clamped = clamp_tile_shape(given_shape, volume, period)
    for c, w, v, p in zip(clamped, given_shape, volume, period):
        assert c % p == 0 and c <= w  # on the lattice, never larger than asked
        assert c == w or c >= v > c - p  # kept, or the smallest multiple that covers v
    # Clamping changes no tile count: only the padding that fell outside the volume.
    assert clamp_tile_shape(clamped, volume, period) == clamped


def test_a_clamped_tile_is_still_exact(tmp_path: Path) -> None:
    path = saved_model("2d-d2-f3", "stitchsafe")  # period 9
    data = np.random.default_rng(3).random((37, 23)).astype(np.float32)
    zarr.create_array(tmp_path / "v.zarr", data=data, chunks=(16, 16))
    lazy = stitchsafe.predict_lazy(
        path, tmp_path / "v.zarr", tile_shape=9 * 100, normalize="none", device="cpu"
    )
    assert lazy.plan.plan.tile_shape == (45, 27)  # 37 and 23 rounded up to the period 9
    assert any("larger than the volume" in n for n in lazy.plan.notes)
    model = load_model(path)
    geometry, _ = resolve_geometry(model)
    want = whole_volume_forward(data[None], model, geometry)
    got = np.asarray(lazy.embeddings.compute())
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
