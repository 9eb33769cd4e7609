"""Locality: whether a model's tiles can stitch into its whole-volume output, and why not.

On a valid input enlarged by one step on every side, a window at offset ``step`` must
give the same output as the matching region of the whole input's output. Same-padded
convolutions and normalisation over spatial statistics fail this. The verdict comes from
behaviour; layer names (where visible) only enrich the refusal.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..errors import GeometryMismatchError, UnstitchableModelError
from ..geometry import ModelGeometry
from ._loaded import LoadedModel
from ._probe_runner import Lattice, Runner, format_diff
from ._size_scan import scan_sizes

__all__ = ["check_stitchable", "suspect_layers", "unstitchable_error"]

_NORM_LAYERS = ("InstanceNorm", "GroupNorm", "LayerNorm", "LocalResponseNorm")
_NORM_OPS = ("instance_norm", "group_norm", "native_group_norm", "layer_norm", "native_layer_norm")
_CONV_OPS = ("conv1d", "conv2d", "conv3d", "convolution")
_CONV_LAYERS = ("Conv1d", "Conv2d", "Conv3d")

_NORMALISATION = (
    "the model's output in a region depends on input beyond its receptive field: "
    "normalisation over spatial statistics (InstanceNorm/GroupNorm/LayerNorm over space, "
    "or BatchNorm in training mode) normalises every tile with its own statistics"
)
_NORMALISATION_FIX = "Retrain with BatchNorm (used in eval mode) or no normalisation."
_APPROXIMATE_HINT = (
    "or pass --allow-approximate to tile it anyway, with a halo measured so that the tiles "
    "deviate from one whole-volume pass by at most --tolerance (default 1e-3 of max |output|)."
)


def check_stitchable(model: LoadedModel, geometry: ModelGeometry | None = None) -> None:
    """Refuse a model whose tiles would not stitch into the whole-volume output.

    A window of a valid input, one step in from every side, must give the same output as
    the matching region of the whole input's output. Decided by behaviour; layer names
    (where visible) only enrich the message.

    Raises
    ------
    UnstitchableModelError
        Saying why (same padding vs. normalisation over space) and what would work.
    """
    runner = Runner(model)
    if geometry is None:
        geometry = scan_sizes(runner, needed=3).geometry(channels_in=model.channels_in)
    lat = Lattice(runner, geometry)
    if tuple(lat.y.shape[2:]) != lat.expected:
        raise GeometryMismatchError(
            f"{model.path!r}: the geometry says output {lat.expected} for input {lat.shape} but "
            f"the model returns {tuple(lat.y.shape[2:])}."
        )
    require_local(runner, lat)


def require_local(runner: Runner, lat: Lattice) -> None:
    """Refuse a model whose window one step in differs from its whole output's region."""
    d = lat.window(lat.geometry.step)
    if not isinstance(d, float):
        raise GeometryMismatchError(
            f"{runner.model.path!r}: input size {lat.base} should give output {lat.base_out} "
            f"but the model returns {format_diff(d)}."
        )
    if d > runner.rtol:
        raise unstitchable_error(runner.model, lat.geometry, d, runner.rtol)


def suspect_layers(model: LoadedModel) -> list[str]:
    """Layers that usually break exact stitching, as ``"InstanceNorm2d x4"`` strings."""
    counts = _suspect_ops(model) if model.format == "export" else _suspect_modules(model)
    return [f"{k} x{v}" for k, v in counts.items()]


def _suspect_ops(model: LoadedModel) -> Counter[str]:
    """Normalisation and padded convolution calls in an exported program's graph."""
    counts: Counter[str] = Counter()
    graph = getattr(model.module, "graph", None)
    for node in graph.nodes if graph is not None else ():
        if node.op != "call_function":
            continue
        parts = str(node.target).split(".")
        op = parts[1] if len(parts) > 1 and parts[0] == "aten" else parts[0]
        if op in _NORM_OPS:
            counts[op] += 1
        elif op in _CONV_OPS:
            if op == "convolution" and len(node.args) > 6 and node.args[6]:
                continue  # transposed
            pad = node.args[4] if len(node.args) > 4 else node.kwargs.get("padding", 0)
            if _padded(pad):
                counts[f"{op}(padding={pad})"] += 1
    return counts


def _suspect_modules(model: LoadedModel) -> Counter[str]:
    """Normalisation, training-mode BatchNorm and padded convolution modules."""
    counts: Counter[str] = Counter()
    for m in model.module.modules():
        name = str(getattr(m, "original_name", type(m).__name__))
        if name.startswith(_NORM_LAYERS):
            counts[name] += 1
        elif name.startswith("BatchNorm") and getattr(m, "training", False):
            counts[f"{name} in training mode"] += 1
        elif name in _CONV_LAYERS:
            pad = getattr(m, "padding", 0)
            if _padded(pad):
                counts[f"{name}(padding={pad})"] += 1
    return counts


def _padded(pad: Any) -> bool:
    """Whether a convolution's ``padding`` pads at all.

    >>> _padded("same"), _padded((0, 0)), _padded(1)
    (True, False, True)
    """
    if isinstance(pad, str):
        return pad != "valid"
    if isinstance(pad, (list, tuple)):
        return any(int(p) != 0 for p in pad)
    return int(pad) != 0


def unstitchable_error(
    model: LoadedModel, geometry: ModelGeometry, diff: float, tol: float
) -> UnstitchableModelError:
    """The one-paragraph refusal: what was measured, why it happens, what would work."""
    layers = suspect_layers(model)
    why, fix = _cause(layers, geometry)
    found = f" Layers found that cause this: {', '.join(layers)}." if layers else ""
    return UnstitchableModelError(
        f"{model.path!r} cannot be tiled and stitched exactly: {why}. A window's output differs "
        f"from the matching region of a larger input's output by {diff:.2g} of max |output| "
        f"(tolerance {tol:.0e}).{found} {fix}"
    )


def _cause(layers: list[str], geometry: ModelGeometry) -> tuple[str, str]:
    """``(why, fix)``: the likely cause of non-locality, from layers and geometry."""
    norms = [n for n in layers if "norm" in n.lower()]
    padded = [n for n in layers if "padding=" in n]
    if norms and not padded:
        return _NORMALISATION, _NORMALISATION_FIX
    if all(c == 0 for c in geometry.context):
        why = (
            "the model keeps the output the same size as its input (same-padded convolutions): "
            "zero padding at every tile border makes tiles disagree with a whole-volume pass"
        )
        fix = (
            "Use valid convolutions (padding=0), so that the output shrinks by a fixed halo that "
            f"stitchsafe reads around each tile; {_APPROXIMATE_HINT}"
        )
        return why, fix
    if padded and not norms:
        why = (
            "some convolutions pad their input with zeros (padding != 0), so tile borders see "
            "zeros where a whole-volume pass sees image"
        )
        return why, f"Use valid convolutions (padding=0) throughout; {_APPROXIMATE_HINT}"
    return _NORMALISATION, _NORMALISATION_FIX
