"""A package's network wrapped to stitchsafe's convention: ``(N, C, *spatial)`` in and out.

The package's axes may come in any order, without a channel or batch axis, or with a
batch of one; the wrapper reorders and adds or drops axes, and runs the package's fixed
per-voxel pre- and postprocessing steps around the network.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import StitchsafeError
from ._spec import PackageSpec

__all__ = ["PackageModule"]


class PackageModule(nn.Module):
    """A package's network in stitchsafe's convention: ``(N, C, *spatial)`` in and out.

    Runs the fixed preprocessing steps, reorders the axes to the package's (dropping a
    channel or batch axis the package does not have; a package without a batch axis, or
    with batch size 1, gets one item per call), runs the network, reorders the output
    back and runs the fixed postprocessing steps.
    """

    def __init__(self, net: nn.Module, spec: PackageSpec) -> None:
        super().__init__()
        self.net = net
        self.pre = nn.Sequential(*(op.module() for op in spec.preprocessing))
        self.post = nn.Sequential(*(op.module() for op in spec.postprocessing))
        canon = ("batch", "channel", *spec.space)
        self.in_axes, self.out_axes = spec.input_axes, spec.output_axes
        present = [a for a in canon if a in self.in_axes]
        self.in_perm = [present.index(a) for a in self.in_axes]
        self.out_perm = [self.out_axes.index(a) for a in canon if a in self.out_axes]
        self.loop = spec.batch_one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        if self.loop and x.shape[0] != 1:
            y = torch.cat([self._run(x[i : i + 1]) for i in range(x.shape[0])])
        else:
            y = self._run(x)
        return self.post(y)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if "channel" not in self.in_axes:
            x = x[:, 0]
        if "batch" not in self.in_axes:
            x = x[0]
        if self.in_perm != sorted(self.in_perm):
            x = x.permute(self.in_perm)
        y = self.net(x)
        if isinstance(y, list | tuple) and len(y) == 1:
            y = y[0]
        if not isinstance(y, torch.Tensor) or y.ndim != len(self.out_axes):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise StitchsafeError(
                f"the package's network returned {got} where its description says axes "
                f"{list(self.out_axes)}."
            )
        if self.out_perm != sorted(self.out_perm):
            y = y.permute(self.out_perm)
        if "batch" not in self.out_axes:
            y = y[None]
        if "channel" not in self.out_axes:
            y = y[:, None]
        return y
