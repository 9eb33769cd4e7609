"""A validated description turned into a :class:`PackageSpec` (pure: no torch, no files).

Axes and their order, valid input sizes and the output offset, processing steps
(``_processing``) and the weights entry; anything stitchsafe cannot tile exactly is
refused with :class:`UnusablePackage`, saying what and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._axes import TensorAxes, axis_label, space_order
from ._errors import UnusablePackage
from ._processing import postprocessing, preprocessing
from ._spec import WEIGHT_FORMATS, ArchitectureSpec, PackageSpec, Shape, WeightsSpec

__all__ = ["parse_description"]

_ALL_WEIGHT_FORMATS = (
    "torchscript",
    "pytorch_state_dict",
    "onnx",
    "keras_hdf5",
    "keras_v3",
    "tensorflow_saved_model_bundle",
    "tensorflow_js",
)


def parse_description(descr: Any) -> PackageSpec:
    """Turn a validated model description (format 0.5) into a :class:`PackageSpec`.

    Parameters
    ----------
    descr
        A ``bioimageio.spec.model.v0_5.ModelDescr`` (see :func:`read_description`).

    Raises
    ------
    StitchsafeError
        Unsupported axes, sizes, processing steps or weights, saying which and why.
    """
    tin, tout = _tensors(descr)
    in_labels, out_labels, space = _labels(tin, tout)
    in_axes = {axis_label(a): a for a in tin.axes}
    out_axes = {axis_label(a): a for a in tout.axes}
    batch = in_axes.get("batch")
    cin, cout = _channel_names(in_axes), _channel_names(out_axes)
    min_input, step, context, halo, notes = _sizes(tin, in_axes, out_axes, space)
    norm, pre, pre_ids = preprocessing(tin, space, TensorAxes.of(tin, len(cin)))
    post, post_ids, post_notes = postprocessing(tout, TensorAxes.of(tout, len(cout)))
    return PackageSpec(
        name=str(descr.name),
        id=str(descr.id) if getattr(descr, "id", None) is not None else None,
        input_axes=in_labels,
        output_axes=out_labels,
        space=space,
        batch_one=batch is None or getattr(batch, "size", None) == 1,
        input_channel_names=cin,
        output_channel_names=cout,
        min_input=min_input,
        step=step,
        context=context,
        output_halo=halo,
        normalization=norm,
        preprocessing=pre,
        postprocessing=post,
        weights=_weights(descr.weights),
        notes=(*notes, *post_notes),
        steps={"preprocessing": pre_ids, "postprocessing": post_ids},
    )


def _tensors(descr: Any) -> tuple[Any, Any]:
    """``(input, output)``: the one required input tensor and the one output tensor."""
    required = [t for t in descr.inputs if not getattr(t, "optional", False)]
    if len(required) != 1 or len(descr.outputs) != 1:
        raise UnusablePackage(
            f"it has {len(required)} required input tensor(s) and {len(descr.outputs)} output "
            "tensor(s); stitchsafe runs networks with one input and one output tensor"
        )
    return required[0], descr.outputs[0]


def _labels(tin: Any, tout: Any) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(input axis labels, output axis labels, space axes in stitchsafe's order)``."""
    in_labels = tuple(axis_label(a) for a in tin.axes)
    out_labels = tuple(axis_label(a) for a in tout.axes)
    in_space = [a for a in in_labels if a not in ("batch", "channel")]
    out_space = [a for a in out_labels if a not in ("batch", "channel")]
    if not 1 <= len(in_space) <= 3 or sorted(in_space) != sorted(out_space):
        raise UnusablePackage(
            f"its input has space axes {in_space} and its output {out_space}; stitchsafe needs "
            "1-3 space axes, the same ones in input and output"
        )
    if ("batch" in in_labels) != ("batch" in out_labels):
        raise UnusablePackage(
            "one of its input and output tensors has a batch axis and the other not"
        )
    return in_labels, out_labels, space_order(in_space)


def _channel_names(axes: dict[str, Any]) -> tuple[str, ...]:
    """The channel names of a tensor; ``("channel0",)`` without a channel axis."""
    ch = axes.get("channel")
    return tuple(str(n) for n in ch.channel_names) if ch is not None else ("channel0",)


def _sizes(
    tin: Any, in_axes: dict[str, Any], out_axes: dict[str, Any], space: Sequence[str]
) -> tuple[Shape | None, Shape | None, Shape | None, Shape, list[str]]:
    """``(min_input, step, context, output_halo, notes)`` per space axis."""
    mins: list[int] = []
    steps: list[int] = []
    context: list[int] = []
    halo: list[int] = []
    declared = True
    for s in space:
        ain, aout = in_axes[s], out_axes[s]
        size = ain.size
        if hasattr(size, "min") and hasattr(size, "step"):
            mins.append(int(size.min))
            steps.append(int(size.step))
        else:  # one fixed size, or a size tied to another axis: the valid sizes are probed
            declared = False
        halo.append(int(getattr(aout, "halo", 0) or 0))
        context.append(_context(tin, ain, aout, s))
    if not declared:
        note = (
            "the package declares no parameterised input size (min, step) for every space "
            "axis; stitchsafe measures the valid sizes by probing the network."
        )
        return None, None, tuple(context), tuple(halo), [note]
    return tuple(mins), tuple(steps), tuple(context), tuple(halo), []


def _context(tin: Any, ain: Any, aout: Any, s: str) -> int:
    """Input minus output size along space axis ``s``; refused unless fixed and >= 0."""
    size, out = ain.size, aout.size
    same_scale = math.isclose(float(ain.scale), float(aout.scale))
    if hasattr(out, "tensor_id") and str(out.tensor_id) == str(tin.id) and same_scale:
        if str(out.axis_id) != s:
            raise UnusablePackage(
                f"its output axis {s!r} takes its size from input axis {str(out.axis_id)!r}; "
                "stitchsafe needs each output space axis sized from the same input axis"
            )
        context = -int(out.offset)
    elif isinstance(out, int) and isinstance(size, int) and same_scale:
        context = size - out
    else:
        raise UnusablePackage(
            f"its output axis {s!r} is not its input axis {s!r} minus a fixed number of "
            f"voxels (size {out!r}, scale {aout.scale} vs {ain.scale}); stitchsafe tiles "
            "networks whose output is the input minus a fixed halo"
        )
    if context < 0:
        raise UnusablePackage(
            f"its output axis {s!r} is {-context} voxels larger than its input; "
            "stitchsafe tiles networks whose output is the input minus a fixed halo"
        )
    return context


def _weights(weights: Any) -> WeightsSpec:
    """The first weights entry stitchsafe can run (torchscript preferred)."""
    for kind in WEIGHT_FORMATS:
        entry = getattr(weights, kind, None)
        if entry is None:
            continue
        arch = _architecture(entry.architecture) if kind == "pytorch_state_dict" else None
        return WeightsSpec(
            kind=kind,
            source=str(entry.source),
            sha256=str(entry.sha256) if entry.sha256 is not None else None,
            architecture=arch,
            strict=bool(getattr(entry, "strict", True)),
        )
    present = [name for name in _ALL_WEIGHT_FORMATS if getattr(weights, name, None) is not None]
    raise UnusablePackage(
        f"it has {' and '.join(present) or 'no'} weights; stitchsafe runs torchscript and "
        "pytorch_state_dict weights"
    )


def _architecture(a: Any) -> ArchitectureSpec:
    """A ``pytorch_state_dict`` entry's architecture."""
    return ArchitectureSpec(
        callable=str(a.callable),
        kwargs=dict(a.kwargs or {}),
        source=str(a.source) if getattr(a, "source", None) is not None else None,
        import_from=str(a.import_from) if hasattr(a, "import_from") else None,
        sha256=str(a.sha256) if getattr(a, "sha256", None) is not None else None,
    )
