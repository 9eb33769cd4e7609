"""The oracle: one forward pass over the whole padded volume, what stitched tiles must equal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..geometry import ModelGeometry
from ._batch_io import Transform

if TYPE_CHECKING:
    from ..models import LoadedModel

__all__ = ["whole_volume_forward"]


def whole_volume_forward(
    data: np.ndarray,
    model: LoadedModel,
    geometry: ModelGeometry,
    *,
    pad_mode: str = "reflect",
    transform: Transform | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The oracle: one forward pass over the whole padded volume, cropped back.

    ``data`` is ``(C, *spatial)``. The volume is padded with ``numpy.pad(..., mode=pad_mode)``
    by the halo before and enough after to reach a valid input size; the raw output then
    starts at voxel 0 of the volume and is cropped to its shape.
    """
    x = data.astype(np.float32)
    if transform is not None:
        x = transform(x)
    spatial = x.shape[1:]
    need = geometry.input_for_output(spatial)
    widths = [(0, 0)] + [(lo, n - v - lo) for v, n, lo in zip(spatial, need, geometry.halo_lo)]
    kwargs: dict[str, Any] = {"constant_values": 0} if pad_mode == "constant" else {}
    xp = np.pad(x, widths, mode=pad_mode, **kwargs)  # type: ignore[call-overload]
    y = model(torch.from_numpy(xp[None]).to(device)).float().cpu().numpy()[0]
    return y[(slice(None), *(slice(0, v) for v in spatial))]
