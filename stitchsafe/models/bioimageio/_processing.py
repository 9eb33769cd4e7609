"""A package's pre- and postprocessing steps mapped onto what stitchsafe runs.

Statistics steps of the preprocessing become stitchsafe's whole-volume normalisation
(``zero_mean_unit_variance`` -> ``zscore``, ``scale_range`` -> ``percentile``); fixed
per-voxel steps become ``PointwiseOp`` steps run inside the wrapped network. Whatever
cannot be mapped exactly (statistics per tile, per slice or per channel, statistics of the
output, values per position) is refused naming the step (the package overview in
``_package`` lists what is mapped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._axes import TensorAxes
from ._errors import UnusablePackage
from ._pointwise import PointwiseOp

__all__: list[str] = []

_FLOATS = ("float32", "float64")
_STATISTICS = {"zero_mean_unit_variance": "zscore", "scale_range": "percentile"}
_OUTPUT_STATISTICS = ("zero_mean_unit_variance", "scale_range", "scale_mean_variance")


def preprocessing(
    tin: Any, space: Sequence[str], axes: TensorAxes
) -> tuple[dict[str, Any], tuple[PointwiseOp, ...], list[str]]:
    """``(normalization metadata, fixed steps run in the network, step ids)``."""
    norm: dict[str, Any] = {"method": "none"}
    ops: list[PointwiseOp] = []
    ids: list[str] = []
    for step in tin.preprocessing or ():
        sid = str(step.id)
        ids.append(sid)
        if sid == "ensure_dtype" and str(_kw(step, "dtype")) not in _FLOATS:
            raise UnusablePackage(
                "its preprocessing step 'ensure_dtype' casts the input to "
                f"{_kw(step, 'dtype')}; stitchsafe feeds networks float32 and maps only "
                "ensure_dtype to float32/float64"
            )
        if sid in _STATISTICS:
            _check_statistics(step, space, axes)
            if norm["method"] != "none" or ops:
                earlier = ops[0].name if ops else "another statistics step"
                raise UnusablePackage(
                    f"its preprocessing step {sid!r} computes statistics after "
                    f"{earlier!r}; stitchsafe applies one whole-volume normalisation first and "
                    "fixed per-voxel steps after it, so this order cannot be mapped"
                )
            norm = _normalization(step)
            continue
        op = _fixed_op(step, axes, "preprocessing")
        if op is not None:
            ops.append(op)
    return norm, tuple(ops), ids


def postprocessing(
    tout: Any, axes: TensorAxes
) -> tuple[tuple[PointwiseOp, ...], list[str], list[str]]:
    """``(fixed steps run in the network, step ids, notes)``; statistics are refused."""
    ops: list[PointwiseOp] = []
    ids: list[str] = []
    notes: list[str] = []
    for step in tout.postprocessing or ():
        sid = str(step.id)
        ids.append(sid)
        if sid == "ensure_dtype":
            if str(_kw(step, "dtype")) not in _FLOATS:
                notes.append(
                    f"the package casts its output to {_kw(step, 'dtype')}; stitchsafe writes "
                    "float32 (or --embeddings-dtype) embeddings and does not apply the cast."
                )
            continue
        if sid in _OUTPUT_STATISTICS or (sid == "clip" and _percentile_clip(step)):
            raise UnusablePackage(
                f"its postprocessing step {sid!r} needs statistics of the output, which "
                "stitchsafe would have to compute per tile; that breaks exact stitching"
            )
        op = _fixed_op(step, axes, "postprocessing")
        if op is not None:
            ops.append(op)
    return tuple(ops), ids, notes


def _kw(step: Any, name: str, default: Any = None) -> Any:
    """A step's keyword argument ``name`` (``default`` when it has none)."""
    return getattr(step.kwargs, name, default) if step.kwargs is not None else default


def _normalization(step: Any) -> dict[str, Any]:
    """The normalisation metadata of a statistics step."""
    sid = str(step.id)
    norm: dict[str, Any] = {"method": _STATISTICS[sid]}
    if sid == "scale_range":
        lo, hi = (
            float(_kw(step, "min_percentile", 0.0)),
            float(_kw(step, "max_percentile", 100.0)),
        )
        norm["percentiles"] = [lo, hi]
    return norm


def _check_statistics(step: Any, space: Sequence[str], tensor_axes: TensorAxes) -> None:
    """Refuse statistics stitchsafe cannot compute as one whole-volume offset and scale."""
    sid = str(step.id)
    ref = _kw(step, "reference_tensor")
    if ref is not None:
        raise UnusablePackage(
            f"its preprocessing step {sid!r} takes its statistics from tensor "
            f"{str(ref)!r}; stitchsafe computes them from the input volume itself"
        )
    listed = _kw(step, "axes")
    if listed is None:
        return  # all axes jointly: the whole volume, all channels pooled
    axes = {tensor_axes.label(a) for a in listed}
    channels = tensor_axes.channels
    missing = [s for s in space if s not in axes]
    if missing:
        raise UnusablePackage(
            f"its preprocessing step {sid!r} computes statistics over axes "
            f"{sorted(axes)}, separately along {missing}; stitchsafe normalises with statistics "
            "of the whole volume only (never per tile or per slice)"
        )
    if channels > 1 and "channel" not in axes:
        raise UnusablePackage(
            f"its preprocessing step {sid!r} normalises each of its {channels} input "
            "channels separately; stitchsafe pools all channels into one whole-volume offset "
            "and scale"
        )


def _percentile_clip(step: Any) -> bool:
    """Whether a ``clip`` step clips at percentiles of the data (not at fixed bounds)."""
    return _kw(step, "min_percentile") is not None or _kw(step, "max_percentile") is not None


def _per_channel(step: Any, values: Any, axes: TensorAxes, what: str) -> tuple[float, ...]:
    """One value, or one per channel when the step runs along the channel axis."""
    channels = axes.channels
    if not isinstance(values, list | tuple):
        return (float(values),)
    axis = _kw(step, "axis")
    if axis is not None and axes.label(axis) != "channel":
        raise UnusablePackage(
            f"its {what} step {step.id!r} runs along axis {str(axis)!r} with one value per "
            "position; per-position values break shift equivariance, so tiles could not be "
            "stitched exactly. stitchsafe maps per-channel values only"
        )
    if len(values) not in (1, channels):
        raise UnusablePackage(
            f"its {what} step {step.id!r} has {len(values)} values for {channels} channel(s)"
        )
    return tuple(float(v) for v in values)


def _fixed_op(step: Any, axes: TensorAxes, what: str) -> PointwiseOp | None:
    """A fixed per-voxel step as a PointwiseOp; None for a no-op; refused otherwise."""
    sid = str(step.id)
    if sid == "ensure_dtype":
        return None
    if sid == "scale_linear":
        gain = _per_channel(step, _kw(step, "gain", 1.0), axes, what)
        offset = _per_channel(step, _kw(step, "offset", 0.0), axes, what)
        return PointwiseOp(sid, "affine", gain=gain, offset=offset)
    if sid == "fixed_zero_mean_unit_variance":
        mean = _per_channel(step, _kw(step, "mean"), axes, what)
        std = _per_channel(step, _kw(step, "std"), axes, what)
        gain = tuple(1.0 / s for s in std)
        offset = tuple(-m / s for m, s in zip(mean, std))
        return PointwiseOp(sid, "affine", gain=gain, offset=offset)
    if sid == "clip":
        if _percentile_clip(step):
            raise UnusablePackage(
                f"its {what} step 'clip' clips at percentiles of the data; stitchsafe maps clip "
                "with fixed bounds only"
            )
        return PointwiseOp(sid, "clip", low=_kw(step, "min"), high=_kw(step, "max"))
    if sid == "sigmoid":
        return PointwiseOp(sid, "sigmoid")
    if sid == "binarize":
        threshold = _per_channel(step, _kw(step, "threshold"), axes, what)
        return PointwiseOp(sid, "binarize", threshold=threshold)
    if sid == "softmax":
        axis = str(_kw(step, "axis", "channel"))
        if axes.label(axis) != "channel":
            raise UnusablePackage(
                f"its {what} step 'softmax' runs over axis {axis!r}; over space it mixes voxels "
                "across tile borders, so stitchsafe maps softmax over channels only"
            )
        return PointwiseOp(sid, "softmax")
    raise UnusablePackage(f"stitchsafe cannot map its {what} step {sid!r}")
