"""Fixed per-voxel processing steps, run inside the wrapped network.

A package's fixed pre- and postprocessing steps (``scale_linear``, ``clip`` with fixed
bounds, ``sigmoid``, ...) treat every voxel alike, so they commute with tiling and run as
modules on ``(N, C, *spatial)`` tensors; per-channel values are buffers, so that they move
with the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PointwiseOp"]


@dataclass(frozen=True)
class PointwiseOp:
    """A fixed per-voxel step, run inside the wrapped network on ``(N, C, *spatial)``.

    ``kind`` is ``"affine"`` (``x * gain + offset``), ``"clip"`` (to ``[low, high]``),
    ``"sigmoid"``, ``"binarize"`` (``x > threshold``) or ``"softmax"`` (over channels).
    ``gain``, ``offset`` and ``threshold`` hold one value, or one per channel.

    >>> PointwiseOp("scale_linear", "affine", gain=(2.0,), offset=(1.0,)).module()(
    ...     torch.ones(1, 1, 2)).tolist()
    [[[3.0, 3.0]]]
    """

    name: str
    kind: str
    gain: tuple[float, ...] = (1.0,)
    offset: tuple[float, ...] = (0.0,)
    low: float | None = None
    high: float | None = None
    threshold: tuple[float, ...] = (0.5,)

    def module(self) -> nn.Module:
        """The step as a module (per-channel values as buffers, so they move with it)."""
        if self.kind == "affine":
            return Affine(self.gain, self.offset)
        if self.kind == "clip":
            return Clip(self.low, self.high)
        if self.kind == "sigmoid":
            return nn.Sigmoid()
        if self.kind == "binarize":
            return Binarize(self.threshold)
        if self.kind == "softmax":
            return nn.Softmax(dim=1)
        raise ValueError(f"unknown pointwise step kind {self.kind!r}")


class Affine(nn.Module):
    """``x * gain + offset``, one value or one per channel."""

    gain: torch.Tensor
    offset: torch.Tensor

    def __init__(self, gain: Sequence[float], offset: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("gain", torch.tensor(list(gain), dtype=torch.float32))
        self.register_buffer("offset", torch.tensor(list(offset), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        gain, offset = self.gain.reshape(shape), self.offset.reshape(shape)
        return x * gain.to(x.dtype) + offset.to(x.dtype)


class Clip(nn.Module):
    """``x`` clipped to ``[low, high]`` (None: no bound)."""

    def __init__(self, low: float | None, high: float | None) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=self.low, max=self.high)


class Binarize(nn.Module):
    """``x > threshold`` as 0/1 in ``x``'s dtype, one threshold or one per channel."""

    threshold: torch.Tensor

    def __init__(self, threshold: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(list(threshold), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.threshold.reshape((1, -1) + (1,) * (x.ndim - 2)).to(x.dtype)
        return (x > t).to(x.dtype)
