"""The check's picture: where stitchsafe's and a naive tiling deviate, side by side.

Each panel maps ``|tiled - whole|`` (relative to ``max |whole|``, log scale) with the
tilings' borders drawn, on the 2-D output or on one z slice of a 3-D one (drawn by
:func:`stitchsafe.reports.save_deviation_maps`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry import Box, Plan
from ._pictures import relative_log_deviation, save_deviation_maps
from ._result import CheckResult
from ._runs import CropOutputs

__all__ = ["PictureText", "save_check_picture", "save_deviation_picture"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PictureText:
    """The words on a deviation picture: a caption per panel, and the figure's title.

    ``title=None``: a title naming the slice shown.
    """

    captions: tuple[str, str] = (
        "stitchsafe: tiles on the period lattice",
        "naive: tiles off the lattice",
    )
    title: str | None = None


def _tile_edges(plan: Plan) -> list[list[int]]:
    """Where the tiles of ``plan`` meet on the last two axes (``[y_edges, x_edges]``)."""
    return [list(range(w, v, w)) for w, v in zip(plan.tile_shape[-2:], plan.volume_shape[-2:])]


def save_deviation_picture(
    path: PathLike | Path,
    stitched: np.ndarray,
    naive: np.ndarray,
    whole: np.ndarray,
    plan: Plan,
    naive_plan: Plan,
    *,
    z: int | None = None,
    text: PictureText = PictureText(),
) -> None:
    """Deviation maps of stitchsafe's and the naive tiling side by side, tile borders drawn.

    Parameters
    ----------
    path
        PNG file to write.
    stitched, naive, whole
        ``(C, Y, X)`` or ``(C, Z, Y, X)`` outputs of the two tilings and the whole pass.
    plan, naive_plan
        The tilings (their borders are drawn; both are anchored at voxel 0).
    z
        The z slice shown (3-D). Default: the one through the largest naive deviation.
    text
        Panel captions and the figure's title (default title: names the slice).
    """
    if whole.ndim == 4:
        if z is None:
            z = int(np.argmax(np.abs(naive - whole).max(axis=(0, 2, 3))))
        stitched, naive, whole = stitched[:, z], naive[:, z], whole[:, z]
    title = text.title
    if title is None:
        title = "Deviation from one whole-volume pass" + (f" (z = {z})" if z is not None else "")
    save_deviation_maps(
        path,
        [
            (text.captions[0], relative_log_deviation(stitched, whole)),
            (text.captions[1], relative_log_deviation(naive, whole)),
        ],
        tile_edges=[_tile_edges(plan), _tile_edges(naive_plan)],
        title=title,
    )


def _title(input_path: str, box: Box, volume_shape: Sequence[int], z: int | None) -> str:
    """The check picture's title: the input, the crop and the slice shown."""
    name = os.path.basename(os.path.normpath(input_path))
    where = "" if tuple(box.shape) == tuple(volume_shape) else f", crop {box.shape} at {box.begin}"
    if z is not None:
        where += f", z = {box.begin[0] + z} (largest naive deviation)"
    return f"Deviation from one whole-volume pass: {name}{where}"


def save_check_picture(result: CheckResult, outputs: CropOutputs) -> None:
    """Write ``result.picture``: the crop's deviation maps, through the largest naive one."""
    assert result.picture is not None
    box = result.crop
    z = result.naive.voxel[0] - box.begin[0] if result.plan.geometry.dims == 3 else None
    captions = (
        f"stitchsafe: {len(result.plan)} tiles on the period lattice\n"
        f"max {result.stitched.relative:.1e}",
        f"naive: {len(result.naive_plan)} tiles off the lattice\nmax {result.naive.relative:.1e}",
    )
    save_deviation_picture(
        result.picture,
        outputs.stitched,
        outputs.naive,
        outputs.whole,
        result.plan,
        result.naive_plan,
        z=z,
        text=PictureText(captions, _title(result.input_path, box, result.volume_shape, z)),
    )
