"""The built-in U-Net: valid convolutions, per-level per-axis pooling, 1-3 spatial dims.

Its geometry is known in closed form (:func:`stitchsafe.geometry.unet_geometry`). The
``padding="same"`` and ``norm="instance"|"group"`` variants exist so that tests and the
``check`` command can show what stitchsafe refuses; they are not stitch-safe.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import StitchsafeError
from ..geometry import ModelGeometry, normalize_pooling_factors, unet_geometry

__all__ = ["ConvBlock", "UNet", "UNetConfig", "Upsample", "build_unet", "center_crop"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCENORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the built-in U-Net (stored as JSON beside the weights).

    Parameters
    ----------
    dims
        Spatial dimensions (1, 2 or 3).
    in_channels, out_channels
        Channel counts.
    pooling_factors
        One tuple per level, one factor per axis, e.g. ``((1, 2, 2), (2, 2, 2))``.
    features
        Feature maps at the first level; multiplied by ``growth`` per level.
    upsampling
        ``"transposed"`` (transposed convolution, kernel = stride = factor) or
        ``"nearest"`` (nearest-neighbour upsampling then a 1x1 convolution).
    padding
        ``"valid"`` (stitch-safe) or ``"same"`` (not stitch-safe; for comparisons).
    norm
        ``None``, ``"batch"`` (fine in eval mode), ``"instance"`` or ``"group"`` (spatial
        statistics: not stitch-safe).
    """

    dims: int = 3
    in_channels: int = 1
    out_channels: int = 1
    pooling_factors: tuple[tuple[int, ...], ...] = ((2, 2, 2),)
    features: int = 16
    growth: int = 2
    convs_per_level: int = 2
    kernel_size: int = 3
    upsampling: str = "transposed"
    padding: str = "valid"
    norm: str | None = None
    final_activation: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pf = normalize_pooling_factors(self.pooling_factors, dims=self.dims)
        object.__setattr__(self, "pooling_factors", pf)
        if self.dims not in (1, 2, 3):
            raise StitchsafeError(f"the built-in U-Net supports 1-3 spatial dims, not {self.dims}.")
        if self.upsampling not in ("transposed", "nearest"):
            raise StitchsafeError(f"unknown upsampling {self.upsampling!r}.")
        if self.padding not in ("valid", "same"):
            raise StitchsafeError(f"unknown padding {self.padding!r}.")
        if self.norm not in (None, "batch", "instance", "group"):
            raise StitchsafeError(f"unknown norm {self.norm!r}.")

    @property
    def depth(self) -> int:
        return len(self.pooling_factors)

    def geometry(self) -> ModelGeometry:
        """Closed-form geometry (only meaningful for ``padding="valid"``)."""
        return unet_geometry(
            self.pooling_factors,
            convs_per_level=self.convs_per_level,
            kernel_size=self.kernel_size,
            channels_in=self.in_channels,
            channels_out=self.out_channels,
        )

    @property
    def stitch_safe(self) -> bool:
        return self.padding == "valid" and self.norm in (None, "batch")

    def to_json(self) -> str:
        d = asdict(self)
        d["pooling_factors"] = [list(f) for f in self.pooling_factors]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["pooling_factors"] = tuple(tuple(int(v) for v in f) for f in d["pooling_factors"])
        return cls(**known)


def _norm(kind: str | None, dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return _BATCHNORM[dims](channels)
    if kind == "instance":
        return _INSTANCENORM[dims](channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 4), channels)
    return nn.Identity()


class ConvBlock(nn.Module):
    """``convs_per_level`` x (convolution, optional norm, ReLU)."""

    def __init__(self, cfg: UNetConfig, cin: int, cout: int) -> None:
        super().__init__()
        pad = cfg.kernel_size // 2 if cfg.padding == "same" else 0
        layers: list[nn.Module] = []
        for i in range(cfg.convs_per_level):
            layers.append(
                _CONV[cfg.dims](cin if i == 0 else cout, cout, cfg.kernel_size, padding=pad)
            )
            layers.append(_norm(cfg.norm, cfg.dims, cout))
            layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Upsample by per-axis ``factor`` and halve channels."""

    def __init__(self, cfg: UNetConfig, cin: int, cout: int, factor: tuple[int, ...]) -> None:
        super().__init__()
        self.mode = cfg.upsampling
        if cfg.upsampling == "transposed":
            convt: Any = _CONVT[cfg.dims]  # per-axis tuples are fine at run time
            self.up: nn.Module = convt(cin, cout, kernel_size=factor, stride=factor)
        else:
            self.up = nn.Upsample(scale_factor=tuple(float(f) for f in factor), mode="nearest")
        self.proj: nn.Module = (
            _CONV[cfg.dims](cin, cout, 1) if cfg.upsampling == "nearest" else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.up(x))


def center_crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop the spatial axes of ``x`` symmetrically to the spatial shape of ``like``."""
    for d in range(2, x.dim()):
        diff = x.shape[d] - like.shape[d]
        x = x.narrow(d, diff // 2, like.shape[d])
    return x


class UNet(nn.Module):
    """Valid-convolution U-Net built from a :class:`UNetConfig`."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.config = cfg
        feats = [cfg.features * cfg.growth**i for i in range(cfg.depth + 1)]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        cin = cfg.in_channels
        for i, f in enumerate(cfg.pooling_factors):
            self.down.append(ConvBlock(cfg, cin, feats[i]))
            self.pool.append(_MAXPOOL[cfg.dims](kernel_size=f, stride=f))
            cin = feats[i]
        self.bottom = ConvBlock(cfg, cin, feats[-1])
        self.up = nn.ModuleList()
        self.decode = nn.ModuleList()
        for i in reversed(range(cfg.depth)):
            self.up.append(Upsample(cfg, feats[i + 1], feats[i], cfg.pooling_factors[i]))
            self.decode.append(ConvBlock(cfg, 2 * feats[i], feats[i]))
        self.head = _CONV[cfg.dims](feats[0], cfg.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block, pool in zip(self.down, self.pool):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x)
        for i, (up, block) in enumerate(zip(self.up, self.decode)):
            x = up(x)
            skip = skips[len(skips) - 1 - i]
            x = block(torch.cat([center_crop(skip, x), x], dim=1))
        return self.head(x)


def build_unet(cfg: UNetConfig, *, seed: int | None = None, init: str = "kaiming") -> UNet:
    """Build a U-Net; ``init="kaiming"`` keeps signal variance through deep levels.

    With PyTorch's default initialisation the deepest levels' contribution decays so much
    that misaligned tilings differ from the oracle by ~1e-5 relative, below the exactness
    tolerance; tests and probes need the deep levels to matter.

    Examples
    --------
    >>> cfg = UNetConfig(dims=2, pooling_factors=((2, 2),), features=4)
    >>> net = build_unet(cfg, seed=0)
    >>> tuple(net(torch.zeros(1, 1, 20, 22)).shape)
    (1, 1, 4, 6)
    """
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    net = UNet(cfg)
    if init == "kaiming":
        for m in net.modules():
            if isinstance(m, nn.modules.conv._ConvNd):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
                if m.bias is not None:
                    nn.init.normal_(m.bias, std=0.1, generator=gen)
    elif init != "default":
        raise StitchsafeError(f"unknown init {init!r}.")
    return net.eval()
