"""Small test networks shared by all test modules.

``make_net(name)`` returns a seeded, eval-mode built-in U-Net and its config. Features are
kept at 2-4 so forward passes take milliseconds; Kaiming initialisation (``build_unet``)
keeps the deepest levels' contribution large enough for shift tests to see it.

``write_model`` / ``write_all_formats`` save a net as a stitchsafe checkpoint, a
TorchScript file and a ``torch.export`` program. Exporting is slow (~1-6 s per net on 2
CPU cores, plus ~4 s for the first export in a process) and so is ``torch.export.load``
(~1 s): ``saved_model(name, fmt)`` and ``loaded_model(name, fmt)`` write/load each net
once per test process and share the result between test modules.
"""

from __future__ import annotations

import atexit
import functools
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from stitchsafe.models import UNet, UNetConfig, build_unet

FORMATS = ("stitchsafe", "torchscript", "export")
SUFFIX = {"stitchsafe": ".pt", "torchscript": ".ts.pt", "export": ".pt2"}

NETS: dict[str, dict[str, Any]] = {
    # stitch-safe
    "2d-d1-f2": dict(dims=2, pooling_factors=((2, 2),), features=4),
    "2d-d2-f3": dict(dims=2, pooling_factors=((3, 3), (3, 3)), features=3),
    "2d-d4-f2": dict(dims=2, pooling_factors=((2, 2),) * 4, features=2),  # r = 4
    "2d-d3-nearest": dict(dims=2, pooling_factors=((2, 2),) * 3, features=2, upsampling="nearest"),
    "2d-batchnorm": dict(dims=2, pooling_factors=((2, 2),), features=4, norm="batch"),
    "2d-c3-d1": dict(dims=2, in_channels=3, out_channels=5, pooling_factors=((2, 2),), features=4),
    "2d-d2-f3-c3": dict(
        dims=2, in_channels=3, out_channels=5, pooling_factors=((3, 3), (3, 3)), features=3
    ),
    "3d-d1-f2": dict(dims=3, pooling_factors=((2, 2, 2),), features=2),
    "3d-aniso-122-d2": dict(dims=3, pooling_factors=((1, 2, 2), (2, 2, 2)), features=2),
    "3d-d2-nearest": dict(
        dims=3, pooling_factors=((2, 2, 2),) * 2, features=2, upsampling="nearest"
    ),
    # not stitch-safe
    "2d-same": dict(dims=2, pooling_factors=((2, 2),), features=4, padding="same"),
    "2d-instancenorm": dict(dims=2, pooling_factors=((2, 2),), features=4, norm="instance"),
    "3d-groupnorm": dict(dims=3, pooling_factors=((2, 2, 2),), features=4, norm="group"),
    "2d-groupnorm": dict(dims=2, pooling_factors=((2, 2),), features=4, norm="group"),
}
SAFE = [
    n
    for n, kw in NETS.items()
    if kw.get("padding", "valid") == "valid" and kw.get("norm") in (None, "batch")
]
UNSAFE = [n for n in NETS if n not in SAFE]


def make_net(name: str, seed: int = 0, **overrides: Any) -> tuple[UNet, UNetConfig]:
    """A seeded eval-mode test U-Net and its config; ``overrides`` replace config fields.

    >>> net, cfg = make_net("2d-d2-f3")
    >>> cfg.geometry().period
    (9, 9)
    """
    if name not in NETS:
        raise KeyError(f"unknown test net {name!r}; known: {sorted(NETS)}")
    cfg = UNetConfig(**{**NETS[name], **overrides})
    net = build_unet(cfg, seed=seed)
    if cfg.norm == "batch":
        _randomise_batchnorm(net, seed)
    return net.eval(), cfg


def _randomise_batchnorm(net: UNet, seed: int) -> None:
    """Give BatchNorm non-trivial running statistics (as a trained net would have)."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def example_shape(cfg: UNetConfig) -> tuple[int, ...]:
    """A valid example input ``(1, C, *spatial)`` for exporting ``cfg``'s net."""
    if cfg.padding == "valid":
        g = cfg.geometry()
        spatial = tuple(m + s for m, s in zip(g.min_input, g.step, strict=True))
    else:
        spatial = tuple(
            4 * math.prod(level[a] for level in cfg.pooling_factors) for a in range(cfg.dims)
        )
    return (1, cfg.in_channels, *spatial)


def write_model(
    net: UNet, cfg: UNetConfig, path: Path, fmt: str, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Save ``net`` as ``fmt`` (one of :data:`FORMATS`) at ``path``."""
    from stitchsafe.models import save_checkpoint, save_export, save_torchscript

    path = Path(path)
    if fmt == "stitchsafe":
        save_checkpoint(net, path, metadata=metadata)
    elif fmt == "torchscript":
        save_torchscript(net, path, metadata=metadata)
    elif fmt == "export":
        save_export(net, path, example_shape=example_shape(cfg), metadata=metadata)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return path


def write_all_formats(
    name: str,
    directory: Path,
    *,
    metadata: bool | dict[str, Any] | None = True,
    formats: tuple[str, ...] = FORMATS,
    seed: int = 0,
) -> dict[str, Path]:
    """Write test net ``name`` in each of ``formats`` into ``directory``.

    ``metadata=True`` stores :func:`stitchsafe.models.unet_metadata`, ``False``/``None``
    stores none, a dict stores that dict.
    """
    from stitchsafe.models import unet_metadata

    net, cfg = make_net(name, seed=seed)
    if metadata is True:
        meta: dict[str, Any] | None = unet_metadata(cfg)
    elif metadata is False or metadata is None:
        meta = None
    else:
        meta = metadata
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tag = "meta" if meta is not None else "nometa"
    return {
        fmt: write_model(net, cfg, directory / f"{name}-{tag}{SUFFIX[fmt]}", fmt, metadata=meta)
        for fmt in formats
    }


_CACHE: list[Path] = []


def cache_dir() -> Path:
    """A temporary directory for :func:`saved_model`, removed when the process exits."""
    if not _CACHE:
        _CACHE.append(Path(tempfile.mkdtemp(prefix="stitchsafe-test-nets-")))
        atexit.register(shutil.rmtree, _CACHE[0], ignore_errors=True)
    return _CACHE[0]


@functools.cache
def saved_model(name: str, fmt: str, metadata: bool = True) -> Path:
    """Test net ``name`` saved as ``fmt``, written once per test process: do not modify it.

    Exports cost seconds each; every test module that needs one should come through here.
    """
    return write_all_formats(name, cache_dir(), metadata=metadata, formats=(fmt,))[fmt]


@functools.cache
def _loaded(name: str, fmt: str, metadata: bool) -> Any:
    from stitchsafe.models import load_model

    return load_model(saved_model(name, fmt, metadata))


def loaded_model(name: str, fmt: str, metadata: bool = True) -> Any:
    """:func:`saved_model`, loaded once per process (``torch.export.load`` takes ~1 s).

    Returns a shallow copy with its own ``notes`` and ``probe_log``; the module is shared,
    so do not move or modify it.
    """
    import dataclasses

    model = _loaded(name, fmt, metadata)
    return dataclasses.replace(model, notes=list(model.notes), probe_log=[])


LABELLED_ROLES = ["embedding", "embedding", "foreground"]


def labelled_setup(tmp: Path) -> dict[str, Path]:
    """A small 3-D net with embeddings and a foreground channel (label defaults in its
    metadata) and a 16x48x40 zarr volume of wavy objects, written into ``tmp``."""
    import numpy as np
    import zarr

    from stitchsafe.models import save_checkpoint, unet_metadata

    net, cfg = make_net("3d-d1-f2", out_channels=3)
    meta = unet_metadata(
        cfg, channel_roles=LABELLED_ROLES, labels={"threshold": 0.05, "min_size": 2}
    )
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    zz, yy, xx = np.mgrid[:16, :48, :40]
    wave = np.sin(zz / 2.0) * np.cos(yy / 3.0) * np.sin(xx / 4.0)
    data = (1000 * (wave > 0.1) + 50 * (xx % 7)).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 24, 20))
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}
