"""The files of an exported package besides its description: weights, test tensors, cover, README.

The test input is a small synthetic image (bright blobs on a dark, noisy background) of a
valid input size; the test output is the network's output on it after the package's own
preprocessing (bioimage.io's ``scale_range`` / ``zero_mean_unit_variance``, eps included),
so that bioimage.io tools reproduce it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._save import save_torchscript
from .._unet import UNet
from ._export_rdf import NORMALIZATION_NOTE, export_sizes, normalization_of, output_channel_names

__all__: list[str] = []

ARCHITECTURE_FILE = "stitchsafe_unet.py"
ARCHITECTURE_CALLABLE = "build_unet"
ARCHITECTURE_SOURCE = '''"""The state-dict weights' architecture: stitchsafe's built-in valid U-Net.

Needs stitchsafe installed (pip install stitchsafe); the TorchScript weights need nothing.
"""

from stitchsafe.models import UNet, UNetConfig


def build_unet(**config):
    """The U-Net of this configuration (the kwargs of the weights entry)."""
    return UNet(UNetConfig(**config))
'''
_OUTPUT_SIZE = {1: 256, 2: 64, 3: 24}  # per space axis: pictures that show something
_EPS = 1e-6


def write_weights(net: UNet, meta: dict[str, Any], folder: Path) -> dict[str, str]:
    """TorchScript (with the stitchsafe metadata inside), state dict and architecture file.

    Returns the file names, keyed ``torchscript``, ``state_dict``, ``architecture``.
    """
    names = {
        "torchscript": "weights_torchscript.pt",
        "state_dict": "weights_state_dict.pt",
        "architecture": ARCHITECTURE_FILE,
    }
    save_torchscript(net, folder / names["torchscript"], metadata=meta)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save(state, folder / names["state_dict"])
    (folder / names["architecture"]).write_text(ARCHITECTURE_SOURCE)
    return names


def architecture_kwargs(net: UNet) -> dict[str, Any]:
    """The U-Net's configuration as the architecture's keyword arguments."""
    return dict(json.loads(net.config.to_json()))


def synthetic_input(meta: dict[str, Any], seed: int = 0) -> np.ndarray:
    """A small float32 test image ``(1, C, *spatial)`` of a valid size: blobs and noise."""
    mins, step, context = export_sizes(meta)
    target = _OUTPUT_SIZE[int(meta["dims"])]  # the test output's size, about
    shape = tuple(
        m + max(1, math.ceil((target - (m - c)) / s)) * s
        for m, s, c in zip(mins, step, context, strict=True)
    )
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    image = np.zeros(shape, dtype=np.float32)
    radius = max(2.0, min(shape) / 8)
    for _ in range(max(4, math.prod(shape) // int(radius ** len(shape) * 12))):
        centre = [rng.uniform(0, s) for s in shape]
        d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
        image = np.maximum(image, np.exp(-d2 / (2 * radius**2)))
    channels = int(meta["channels_in"])
    noise = rng.normal(0.0, 8.0, size=(1, channels, *shape))
    return (100.0 + 300.0 * image[None, None] + noise).astype(np.float32)


def package_preprocessing(x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """The package's preprocessing of ``x`` as bioimage.io defines it (eps included)."""
    method, percentiles = normalization_of(meta)
    x = x.astype(np.float32)
    if method == "percentile":
        lo, hi = np.percentile(x, list(percentiles))
        return ((x - lo) / (hi - lo + _EPS)).astype(np.float32)
    if method == "zscore":
        return ((x - x.mean()) / (x.std() + _EPS)).astype(np.float32)
    return x


def make_test_tensors(net: UNet, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(test input, test output)``: the synthetic image and the network's output on it."""
    x = synthetic_input(meta)
    with torch.inference_mode():
        y = net(torch.from_numpy(package_preprocessing(x, meta))).numpy()
    return x, y.astype(np.float32)


def write_cover(x: np.ndarray, y: np.ndarray, meta: dict[str, Any], path: Path) -> None:
    """A PNG: the test input's middle slice beside the first three embedding channels.

    The output is drawn centred on the input's frame, so its halo shows as a black border.
    """
    left = _grey(_middle(x[0, 0]))
    roles = meta.get("channel_roles") or ["embedding"] * y.shape[1]
    channels = [i for i, r in enumerate(roles) if r == "embedding"][:3] or [0]
    rgb = np.stack([_stretch(_middle(y[0, c])) for c in channels], axis=-1)
    rgb = np.concatenate([rgb, np.zeros((*rgb.shape[:2], 3 - rgb.shape[2]))], axis=-1)
    right = np.zeros_like(left)
    top = [(a - b) // 2 for a, b in zip(left.shape[:2], rgb.shape[:2], strict=True)]
    right[top[0] : top[0] + rgb.shape[0], top[1] : top[1] + rgb.shape[1]] = rgb
    picture = np.concatenate([left, right], axis=1)
    zoom = max(1, math.ceil(256 / picture.shape[0]))
    picture = picture.repeat(zoom, axis=0).repeat(zoom, axis=1)
    from matplotlib import image as mpimg  # noqa: PLC0415 - slow to import; only the cover needs it

    mpimg.imsave(path, np.clip(picture, 0.0, 1.0))


def _middle(a: np.ndarray) -> np.ndarray:
    """The middle 2-D slice of a 2-D or 3-D array (a 1-D one as one row)."""
    while a.ndim > 2:
        a = a[a.shape[0] // 2]
    return a.reshape(1, -1) if a.ndim == 1 else a


def _stretch(a: np.ndarray) -> np.ndarray:
    """``a`` mapped to 0..1 by its 1st and 99th percentiles."""
    lo, hi = np.percentile(a, [1, 99])
    return np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)


def _grey(a: np.ndarray) -> np.ndarray:
    """A grey RGB image of ``a``."""
    return np.repeat(_stretch(a)[..., None], 3, axis=-1)


def readme(meta: dict[str, Any], name: str, weights: Sequence[str]) -> str:
    """The package's documentation (``README.md``)."""
    mins, step, context = export_sizes(meta)
    method, (lo, hi) = normalization_of(meta)
    norm = {
        "percentile": f"percentile ({lo:g}, {hi:g}) normalisation (`scale_range`",
        "zscore": "zscore normalisation (`zero_mean_unit_variance`",
    }.get(method, "no normalisation (")
    labels = meta.get("labels") or {}
    halo = ", ".join(f"{a} before and {b} after" for a, b in meta["halo"])
    return f"""# {name}

A {meta["dims"]}-D U-Net with valid convolutions, exported by stitchsafe. It maps an image
of {meta["channels_in"]} channel(s) to {meta["channels_out"]} output channels
({", ".join(output_channel_names(meta))}): pixel embeddings for instance segmentation
(objects are the connected voxels whose embeddings lie close together), and foreground
logits where a channel is named so.

## Input sizes and geometry

- Valid input sizes: `{mins} + n * {step}` voxels per space axis ({"zyx"[3 - len(mins) :]}).
- The output is the input minus `{context}` voxels per axis (halo: {halo}): the
  network crops its own context; no further halo needs cropping.
- Period `{meta["period"]}`: tiles whose corners lie on this lattice stitch exactly into
  the output of one whole-volume pass. stitchsafe (`stitchsafe predict --model this.zip`)
  plans such tiles itself; other tools should offset tiles by multiples of it.

## Normalisation

Whole-volume {norm} over all channel and space axes). {NORMALIZATION_NOTE}

## Weights

{", ".join(weights)}. The TorchScript weights carry stitchsafe's metadata; the state-dict
weights are built by `{ARCHITECTURE_FILE}`, which imports stitchsafe.

## Labels

stitchsafe's labelling defaults (`config.stitchsafe.labels`): threshold
{labels.get("threshold", "(from the loss margin)")}, minimum size {labels.get("min_size", 0)}.
`config.stitchsafe` holds the whole stitchsafe metadata (period, halo, valid sizes,
channel roles, label defaults, training record).

## Validation

The test tensors are a synthetic image and this network's output on it, after the
preprocessing above. Evaluate on annotated images of your own (e.g. average precision at
IoU 0.5 of the labels); the training record in `config.stitchsafe.training` says what the
model was trained on.
"""
