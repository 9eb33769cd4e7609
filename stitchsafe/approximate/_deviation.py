"""How far a tiled run strays from one whole-volume pass over the same probe volume.

A tiled run over a probe volume (the plan's tiles, border tiles shifted inside the
model's own input, run, cropped: what the engine does) is compared with one whole-volume
pass of the model over it (:func:`stitchsafe.engine.whole_volume_forward` with the model's
own geometry: for a same-padded model of a valid size, ``model(volume)`` itself). The
deviation is ``max |tiled - whole| / max |whole|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..engine import whole_volume_forward
from ..geometry import ModelGeometry, Plan, make_plan
from ..models import LoadedModel

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ProbeRun:
    """How the probe runs tile and run: the same for every probe and every halo tried.

    Attributes
    ----------
    tile_shape
        Write box per tile (a multiple of the period).
    pad_mode
        ``numpy.pad`` mode at the probe's borders (the run's pad mode).
    device
        Where the passes run (float32).
    batch_voxels
        Input voxels per forward pass of tiles, at most (one tile at least).

    >>> ProbeRun((8, 8.0)).tile_shape
    (8, 8)
    """

    tile_shape: Shape
    pad_mode: str = "reflect"
    device: torch.device | str = "cpu"
    batch_voxels: int = 2**22

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile_shape", tuple(int(t) for t in self.tile_shape))


def tiled_deviation(
    model: LoadedModel,
    geometry: ModelGeometry,
    data: np.ndarray,
    run: ProbeRun,
    *,
    native: ModelGeometry | None = None,
) -> tuple[float, int]:
    """Relative deviation of a tiled run over ``data`` from one whole pass over it.

    The tiles are those of :func:`stitchsafe.geometry.make_plan` (with ``native``: border
    tiles inside the model's own input), read from ``data`` padded like
    ``numpy.pad(data, ..., mode=run.pad_mode)`` (as the engine reads a volume), run in
    batches and cropped; the whole pass is :func:`stitchsafe.engine.whole_volume_forward`
    with the model's own geometry.

    Parameters
    ----------
    model, geometry
        The model and the geometry it is tiled with.
    native
        The model's own geometry, when ``geometry`` widens it (approximate tiling);
        ``None``: ``geometry`` is the model's own.
    data
        ``(C, *spatial)`` probe volume, float32, already normalised.
    run
        The tiles' write box, the pad mode, the device and the batch size.

    Returns
    -------
    tuple
        ``max |tiled - whole| / max |whole|`` (divided by 1 where the whole output is 0;
        infinite where the tiled output is not finite), and the forward passes run.

    Examples
    --------
    A valid-convolution model tiles exactly:

    >>> from stitchsafe.models import LoadedModel
    >>> from stitchsafe.geometry import ModelGeometry
    >>> conv = torch.nn.Conv2d(1, 1, 3).eval()
    >>> m = LoadedModel("conv", "stitchsafe", conv, None, dims=2, channels_in=1)
    >>> g = ModelGeometry(period=(1, 1), halo=((1, 1), (1, 1)), min_input=(3, 3), step=(1, 1))
    >>> d, passes = tiled_deviation(m, g, np.ones((1, 9, 7), np.float32), ProbeRun((4, 4)))
    >>> d < 1e-6, passes
    (True, 2)
    """
    plan = make_plan(data.shape[1:], geometry, tile_shape=run.tile_shape, native=native)
    whole = whole_volume_forward(
        data, model, plan.model_geometry, pad_mode=run.pad_mode, device=run.device
    )
    tiled = np.zeros_like(whole)
    passes = _run_tiles(model, plan, _pad(data, plan, run.pad_mode), tiled, run)
    return _relative_deviation(tiled, whole), 1 + passes


def _pad(data: np.ndarray, plan: Plan, pad_mode: str) -> np.ndarray:
    """``data`` padded by the plan's padding, as the engine pads a volume."""
    kwargs: dict[str, Any] = {"constant_values": 0} if pad_mode == "constant" else {}
    widths = [(0, 0), *plan.pad]
    return np.pad(data, widths, mode=pad_mode, **kwargs)  # type: ignore[call-overload]


def _run_tiles(
    model: LoadedModel, plan: Plan, padded: np.ndarray, out: np.ndarray, run: ProbeRun
) -> int:
    """Run the plan's tiles over ``padded`` in batches, writing into ``out``; the passes run."""
    tiles = list(plan)
    per_batch = max(1, run.batch_voxels // math.prod(plan.read_shape))
    before = tuple(lo for lo, _ in plan.pad)
    passes = 0
    for i in range(0, len(tiles), per_batch):
        batch = tiles[i : i + per_batch]
        x = np.stack([padded[(slice(None), *t.read.shift(before).to_slices())] for t in batch])
        y = model(torch.from_numpy(x).to(run.device)).float().cpu().numpy()
        passes += 1
        for t, yt in zip(batch, y, strict=True):
            out[(slice(None), *t.write.to_slices())] = yt[(slice(None), *t.crop.to_slices())]
    return passes


def _relative_deviation(tiled: np.ndarray, whole: np.ndarray) -> float:
    """``max |tiled - whole| / max |whole|``: infinite where ``tiled`` is not finite.

    The scale is the largest finite ``|whole|``, or 1 where there is none or it is 0.

    >>> _relative_deviation(np.array([1.0, 2.5]), np.array([1.0, 2.0]))
    0.25
    >>> _relative_deviation(np.array([np.nan]), np.array([0.0]))
    inf
    """
    diff = np.abs(tiled.astype(np.float64) - whole)
    diff[~np.isfinite(diff)] = np.inf
    finite = np.abs(whole[np.isfinite(whole)])
    scale = float(finite.max()) if finite.size else 0.0
    return float(diff.max()) / (scale or 1.0)
