"""Where ``stitchsafe check`` looks: the centred crop, and its two tilings.

The crop is the largest centred box whose whole-volume forward pass fits a memory budget
(or the user's ``--crop``). It is tiled twice: on the period lattice, as ``predict`` tiles
(shrunk so that the crop holds a seam), and naively, off the lattice, for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StitchsafeError
from ..geometry import Box, ModelGeometry, Plan, check_tile_shape, make_plan

__all__ = [
    "MAX_CROP_INPUT_VOXELS",
    "CropPlans",
    "centred_crop",
    "crop_plans",
    "crop_tile_shape",
    "naive_tiling",
]

# Input voxels of the whole-crop forward pass at most (the CPU's per-tile budget is 2**21).
MAX_CROP_INPUT_VOXELS = 2**22


def naive_tiling(
    volume_shape: Sequence[int],
    geometry: ModelGeometry,
    tile_shape: Sequence[int],
    *,
    native: ModelGeometry | None = None,
) -> Plan:
    """What tools that ignore the period do: write boxes one voxel shorter than ``tile_shape``.

    Tile origins then drift off the period lattice (on every axis whose period exceeds 1),
    so the stitched output differs from a whole-volume pass. ``native`` as in
    :func:`stitchsafe.geometry.make_plan` (approximate tiling).

    >>> from stitchsafe.geometry import unet_geometry
    >>> p = naive_tiling((20, 20), unet_geometry([(2, 2)]), (8, 8))
    >>> p.tile_shape, [t.write.begin[0] for t in p][::3], p.exact
    ((7, 7), [0, 7, 14], False)
    """
    shape = tuple(max(1, int(t) - 1) for t in tile_shape)
    return make_plan(volume_shape, geometry, tile_shape=shape, exact=False, native=native)


def centred_crop(
    volume_shape: Sequence[int],
    geometry: ModelGeometry,
    *,
    crop: Sequence[int] | int | None = None,
    max_input_voxels: int = MAX_CROP_INPUT_VOXELS,
) -> Box:
    """The centred box the check runs on.

    ``crop`` (clipped to the volume) if given; otherwise the largest centred box whose
    whole-volume forward pass reads at most ``max_input_voxels`` (halo and padding to a
    valid size included), shrinking the longest axis first.

    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(2, 2)])
    >>> centred_crop((40, 50), g)
    Box(begin=(0, 0), end=(40, 50))
    >>> centred_crop((1000, 30), g, crop=64)
    Box(begin=(468, 0), end=(532, 30))
    >>> b = centred_crop((1000, 1000), g, max_input_voxels=100 * 100)
    >>> b.shape, math.prod(g.input_for_output(b.shape)) <= 100 * 100
    ((84, 84), True)
    """
    vshape = [int(v) for v in volume_shape]
    if crop is not None:
        shape = _given_crop(vshape, crop)
    else:
        shape = _largest_crop(vshape, geometry, max_input_voxels)
    begin = [(v - c) // 2 for v, c in zip(vshape, shape)]
    return Box.from_shape(shape, begin)


def _given_crop(vshape: list[int], crop: Sequence[int] | int) -> list[int]:
    """The user's ``--crop``, one value per axis (or one for all), clipped to the volume."""
    want = (crop,) if isinstance(crop, int) else tuple(int(c) for c in crop)
    if len(want) == 1:
        want = want * len(vshape)
    if len(want) != len(vshape) or any(c < 1 for c in want):
        raise StitchsafeError(
            f"--crop {tuple(want)} needs {len(vshape)} positive values (one per axis of the "
            f"volume {tuple(vshape)}), or one for all axes."
        )
    return [min(c, v) for c, v in zip(want, vshape)]


def _largest_crop(vshape: list[int], geometry: ModelGeometry, max_input_voxels: int) -> list[int]:
    """The largest crop shape whose whole-volume pass reads at most ``max_input_voxels``."""

    def fits(s: Sequence[int]) -> bool:
        return math.prod(geometry.input_for_output(s)) <= max_input_voxels

    shape = list(vshape)
    while not fits(shape) and max(shape) > 1:  # coarse steps down, longest axis first
        a = max(range(len(shape)), key=lambda i: shape[i])
        shape[a] = max(1, shape[a] - max(geometry.period[a], shape[a] // 16))
    grown = True
    while grown:  # then back up a voxel at a time, shortest axis first
        grown = False
        for a in sorted(range(len(shape)), key=lambda i: shape[i]):
            trial = [s + (i == a) for i, s in enumerate(shape)]
            if shape[a] < vshape[a] and fits(trial):
                shape, grown = trial, True
    return shape


def crop_tile_shape(
    crop_shape: Sequence[int], geometry: ModelGeometry, tile_shape: Sequence[int]
) -> tuple[int, ...]:
    """``tile_shape`` made small enough that the crop holds two tiles or more per axis.

    A crop inside a single tile has no seam to test. Each axis keeps a multiple of the
    period, and at least one period.

    >>> from stitchsafe.geometry import unet_geometry
    >>> crop_tile_shape((40, 50), unet_geometry([(3, 3), (3, 3)]), (54, 18))
    (18, 18)
    """
    out = []
    for c, t, p in zip(crop_shape, tile_shape, geometry.period):
        cap = max(p, (int(c) // 2) // p * p)
        out.append(min(int(t), cap))
    return tuple(out)


@dataclass(frozen=True)
class CropPlans:
    """The crop the check runs on, tiled on the period lattice (``plan``) and off it."""

    box: Box
    plan: Plan
    naive: Plan

    def seam_note(self) -> str | None:
        """Why the check tests no seam (the crop fits in one tile), ``None`` if it does."""
        if len(self.plan) != 1:
            return None
        return (
            f"the crop {self.box.shape} fits in one tile of {self.plan.tile_shape}, so no seam "
            "is tested; pass a larger --crop or a smaller --tile-shape."
        )


def crop_plans(
    box: Box,
    geometry: ModelGeometry,
    tile_shape: Sequence[int],
    *,
    shrink: bool,
    native: ModelGeometry | None = None,
) -> CropPlans:
    """Both tilings of ``box``; with ``shrink``, tiles small enough to leave a seam in it.

    ``native``: the model's own geometry in approximate tiling (``make_plan``).

    >>> from stitchsafe.geometry import unet_geometry
    >>> p = crop_plans(Box.from_shape((40, 50)), unet_geometry([(2, 2)]), (40, 40), shrink=True)
    >>> p.plan.tile_shape, p.naive.tile_shape, p.seam_note() is None
    ((20, 24), (19, 23), True)
    """
    tiles = crop_tile_shape(box.shape, geometry, tile_shape) if shrink else tuple(tile_shape)
    plan = make_plan(
        box.shape, geometry, tile_shape=check_tile_shape(tiles, geometry), native=native
    )
    naive = naive_tiling(box.shape, geometry, plan.tile_shape, native=native)
    return CropPlans(box, plan, naive)
