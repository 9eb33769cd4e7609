"""The description (``rdf.yaml``) of an exported package, as plain values (no torch, no files).

What a stitchsafe checkpoint's metadata becomes in bioimage.io terms (format 0.5):

- **axes**: ``batch, channel, [z,] y, x`` in and out; input channels are named ``raw``
  (``raw0``, ``raw1``... for several), output channels after their roles
  (``embedding0``... and ``foreground``, the names the package reader turns back into
  ``channel_roles``).
- **valid input sizes**: ``min + n * step`` per space axis, ``step`` the least common
  multiple of the model's valid step and its period, so every size a consumer picks keeps
  the output on the period lattice; the **output** is the input minus ``lo + hi`` per axis
  (``size: {tensor_id, axis_id, offset: -(lo + hi)}``). No output ``halo`` is declared:
  the network's valid convolutions already cropped its context, and a halo would tell
  consumers to throw away correct voxels.
- **preprocessing**: stitchsafe's whole-volume normalisation (:data:`NORMALIZATION_NOTE`
  says how exactly it maps).
- **config**: ``config.stitchsafe`` holds the checkpoint's whole stitchsafe metadata
  (period, halo, valid sizes, channel roles, label defaults, training record).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__: list[str] = []

FORMAT_VERSION = "0.5.4"
INPUT_ID = "raw"
OUTPUT_ID = "embeddings"
SPACE = ("z", "y", "x")

NORMALIZATION_NOTE = (
    "stitchsafe normalises with statistics of the whole volume: percentile maps the "
    "low/high percentiles to 0/1, (x - p_low) / (p_high - p_low), zscore maps to "
    "(x - mean) / std, all channels pooled, in float32. The package says the same with "
    "scale_range / zero_mean_unit_variance over all channel and space axes, with two "
    "differences: bioimage.io requires an eps > 0 in the denominator (1e-6 here, a "
    "relative difference of 1e-6 / (p_high - p_low)), and stitchsafe computes the "
    "statistics of volumes with more than 2,000,000 values from a deterministic sample of "
    "them, where bioimage.io tools use the whole tensor they were given. A flat volume "
    "(p_high == p_low) is shifted only by stitchsafe, divided by eps by bioimage.io tools."
)

_EPS = 1e-6
CITATION = (
    "Rumberger et al., How Shift Equivariance Impacts Metric Learning for Instance "
    "Segmentation, ICCV 2021"
)


def space_axes(dims: int) -> tuple[str, ...]:
    """The space axis ids of a ``dims``-D model.

    >>> space_axes(2), space_axes(3)
    (('y', 'x'), ('z', 'y', 'x'))
    """
    return SPACE[len(SPACE) - dims :]


def export_sizes(meta: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """``(min, step, context)`` per space axis: the declared valid input sizes and offsets.

    ``step`` is the least common multiple of the model's valid step and its period.

    >>> meta = {"period": [4, 4], "halo": [[20, 20], [20, 20]],
    ...         "valid_input": {"min": [44, 44], "step": [4, 4]}}
    >>> export_sizes(meta)
    ([44, 44], [4, 4], [40, 40])
    >>> export_sizes({**meta, "valid_input": {"min": [44, 44], "step": [2, 4]}})[1]
    [4, 4]
    """
    vi = meta["valid_input"]
    step = [math.lcm(int(s), int(p)) for s, p in zip(vi["step"], meta["period"], strict=True)]
    context = [int(lo) + int(hi) for lo, hi in meta["halo"]]
    return [int(m) for m in vi["min"]], step, context


def output_channel_names(meta: dict[str, Any]) -> list[str]:
    """Output channel names from the channel roles (every channel an embedding without).

    >>> roles = ["embedding", "embedding", "foreground"]
    >>> output_channel_names({"channels_out": 3, "channel_roles": roles})
    ['embedding0', 'embedding1', 'foreground']
    >>> output_channel_names({"channels_out": 2, "channel_roles": ["embedding", "ignored"]})
    ['embedding0', 'ignored1']
    """
    roles = meta.get("channel_roles") or ["embedding"] * int(meta["channels_out"])
    names, embeddings = [], 0
    for i, role in enumerate(roles):
        if role == "embedding":
            names.append(f"embedding{embeddings}")
            embeddings += 1
        elif role == "foreground" and roles.count(role) == 1:
            names.append("foreground")
        else:
            names.append(re.sub(r"[^A-Za-z0-9_-]", "_", role) + str(i))
    return names


def input_channel_names(channels: int) -> list[str]:
    """``["raw"]``, or ``["raw0", "raw1", ...]`` for several input channels.

    >>> input_channel_names(1), input_channel_names(2)
    (['raw'], ['raw0', 'raw1'])
    """
    return [INPUT_ID] if channels == 1 else [f"{INPUT_ID}{i}" for i in range(channels)]


def normalization_of(meta: dict[str, Any]) -> tuple[str, tuple[float, float]]:
    """The method and percentiles stitchsafe normalises with for this model.

    As ``predict`` reads them: the metadata's ``normalization``, percentile (1, 99.8) without.

    >>> normalization_of({})
    ('percentile', (1.0, 99.8))
    >>> normalization_of({"normalization": {"method": "zscore"}})[0]
    'zscore'
    """
    norm = meta.get("normalization") or {}
    pct = norm.get("percentiles") or (1.0, 99.8)
    return str(norm.get("method", "percentile")), (float(pct[0]), float(pct[1]))


def preprocessing_steps(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The input's preprocessing: the whole-volume normalisation, then float32.

    >>> [s["id"] for s in preprocessing_steps({"dims": 2})]
    ['ensure_dtype', 'scale_range', 'ensure_dtype']
    >>> preprocessing_steps({"dims": 2, "normalization": {"method": "none"}})[0]["id"]
    'ensure_dtype'
    """
    method, (lo, hi) = normalization_of(meta)
    axes = ["channel", *space_axes(int(meta["dims"]))]
    f32 = {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}
    if method == "percentile":
        kwargs = {"axes": axes, "min_percentile": lo, "max_percentile": hi, "eps": _EPS}
        return [f32, {"id": "scale_range", "kwargs": kwargs}, f32]
    if method == "zscore":
        kwargs = {"axes": axes, "eps": _EPS}
        return [f32, {"id": "zero_mean_unit_variance", "kwargs": kwargs}, f32]
    return [f32]


def _axes(meta: dict[str, Any], names: list[str], sizes: list[Any]) -> list[dict[str, Any]]:
    """Batch, channel and space axes with the given channel names and space sizes."""
    space = space_axes(int(meta["dims"]))
    return [
        {"type": "batch"},
        {"type": "channel", "channel_names": names},
        *({"type": "space", "id": s, "size": size} for s, size in zip(space, sizes, strict=True)),
    ]


def tensors(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(input, output)`` tensor descriptions (test tensors ``test_input/output.npy``)."""
    mins, step, context = export_sizes(meta)
    space = space_axes(int(meta["dims"]))
    in_sizes = [{"min": m, "step": s} for m, s in zip(mins, step, strict=True)]
    out_sizes = [
        {"tensor_id": INPUT_ID, "axis_id": s, "offset": -c}
        for s, c in zip(space, context, strict=True)
    ]
    tin = {
        "id": INPUT_ID,
        "description": "the image; any size min + n * step per space axis",
        "axes": _axes(meta, input_channel_names(int(meta["channels_in"])), in_sizes),
        "test_tensor": {"source": "test_input.npy"},
        "data": {"type": "float32"},
        "preprocessing": preprocessing_steps(meta),
    }
    tout = {
        "id": OUTPUT_ID,
        "description": "pixel embeddings (and foreground logits), the input minus its halo",
        "axes": _axes(meta, output_channel_names(meta), out_sizes),
        "test_tensor": {"source": "test_output.npy"},
        "data": {"type": "float32"},
    }
    return tin, tout


def description(
    meta: dict[str, Any],
    *,
    name: str,
    files: dict[str, str],
    weights: dict[str, Any],
    torch_version: str,
    tolerance: float,
) -> dict[str, Any]:
    """The whole ``rdf.yaml`` as a dict.

    ``files`` maps each file of the package to its sha256; ``weights`` holds the
    ``torchscript`` and ``pytorch_state_dict`` entries (their sources and hashes);
    ``tolerance`` is the absolute difference allowed when tools reproduce the test output
    (bioimage.io requires at most 1% of its largest absolute value).
    """
    tin, tout = tensors(meta)
    for tensor in (tin, tout):
        tensor["test_tensor"]["sha256"] = files[tensor["test_tensor"]["source"]]
    dims, roles = int(meta["dims"]), meta.get("channel_roles")
    return {
        "format_version": FORMAT_VERSION,
        "type": "model",
        "name": name,
        "description": (
            f"A {dims}-D valid-convolution U-Net from stitchsafe: pixel embeddings for "
            "instance segmentation, exactly stitchable from tiles."
        ),
        "authors": [{"name": "stitchsafe export"}],
        "cite": [{"text": CITATION, "url": "https://arxiv.org/abs/2101.05846"}],
        "license": "BSD-3-Clause",
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["stitchsafe", f"{dims}d", "unet", "instance-segmentation", "embeddings"],
        "inputs": [tin],
        "outputs": [tout],
        "weights": weights,
        "config": {
            "stitchsafe": meta,
            "bioimageio": {
                "architecture_type": "U-Net (valid convolutions)",
                "reproducibility_tolerance": [
                    {"relative_tolerance": 1e-3, "absolute_tolerance": tolerance}
                ],
                "target_structure": list(dict.fromkeys(roles or ["embedding"])),
            },
        },
        "packaged_by": [{"name": f"stitchsafe export (torch {torch_version})"}],
    }
