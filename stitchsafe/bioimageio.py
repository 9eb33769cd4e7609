"""bioimage.io model packages: ``--model pkg.zip`` or ``--model pkg/``.

A package is a folder, or a zip of one, holding ``bioimageio.yaml`` (or ``rdf.yaml``) and
the files it names. It is read offline with ``bioimageio.spec`` (an optional dependency:
``pip install "stitchsafe[bioimageio]"``): the description is validated without I/O
checks, so nothing is downloaded, and weights given as URLs are refused. Descriptions in
older format versions (0.4) are converted to 0.5 by ``bioimageio.spec``.

Two halves: :func:`parse_description` turns a validated description into a
:class:`PackageSpec` (pure: no torch, no files), and :func:`load_package` unpacks, reads,
builds the network and derives stitchsafe metadata (schema of :mod:`stitchsafe.model`).

What is taken from the package
------------------------------
- **Axes**: ``batch``, ``channel`` and 1-3 ``space`` axes in any order; the network is
  wrapped to take and return stitchsafe's ``(N, C, *spatial)`` (spatial axes ``z, y, x``).
  ``time`` and ``index`` axes, several inputs or outputs, and outputs whose size is not
  the input's minus a fixed amount are refused.
- **Geometry**: valid input sizes ``min + k * step`` and the output size offset (the halo
  the network crops itself; stitchsafe centres it, ``lo = context // 2``). The period is
  measured on the declared sizes with a few forward passes (the package does not state
  it), and :func:`stitchsafe.model.resolve_geometry` cross-checks the whole geometry as
  for any model, so a same-padded package is refused by the usual checks. An output
  ``halo`` (to be cropped from a same-padded output) is recorded, never used to stitch.
  Without a parameterised size on every space axis the valid sizes are probed.
- **Preprocessing**: ``zero_mean_unit_variance`` -> ``zscore`` and ``scale_range`` ->
  ``percentile`` (stitchsafe's whole-volume statistics, :mod:`stitchsafe.normalize`; the
  package's ``eps`` is not added); fixed per-voxel steps (``scale_linear``,
  ``fixed_zero_mean_unit_variance``, ``clip`` with fixed bounds, ``sigmoid``,
  ``binarize``, ``softmax`` over channels) run inside the wrapped network, after the
  whole-volume normalisation (so ``--pad-mode constant`` pads with zeros before them);
  ``ensure_dtype`` to a float type is a no-op. Anything else (statistics over only some
  axes, per-channel statistics of several channels, a fixed step before a statistics
  step) is an error naming the step.
- **Postprocessing**: fixed per-voxel steps run inside the wrapped network; steps that
  need output statistics would be computed per tile and are refused.
- **Channel names** are kept under ``metadata["bioimageio"]``; names ``"foreground"`` and
  ``"embedding..."`` become ``channel_roles``.
- **Weights**: ``torchscript`` (preferred: no package code runs) or
  ``pytorch_state_dict`` with ``architecture: {callable, source | import_from, kwargs}``;
  a ``source`` file is imported from the (unpacked) package, ``import_from`` names an
  importable module. Loading a state dict runs the package's architecture code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import math
import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import probe
from .errors import GeometryMismatchError, StitchsafeError
from .geometry import ModelGeometry

if TYPE_CHECKING:
    from .model import LoadedModel

__all__ = [
    "YAML_NAMES",
    "PackageModule",
    "PackageSpec",
    "PointwiseOp",
    "WeightsSpec",
    "find_yaml",
    "load_package",
    "parse_description",
    "read_description",
]

YAML_NAMES = ("bioimageio.yaml", "rdf.yaml")
WEIGHT_FORMATS = ("torchscript", "pytorch_state_dict")
_INSTALL = 'pip install "stitchsafe[bioimageio]"'
_FLOATS = ("float32", "float64")
_STATISTICS = {"zero_mean_unit_variance": "zscore", "scale_range": "percentile"}

Shape = tuple[int, ...]


def find_yaml(names: Iterable[str]) -> str | None:
    """The package description among top-level file ``names``, or None.

    Examples
    --------
    >>> find_yaml(["weights.pt", "rdf.yaml", "README.md"])
    'rdf.yaml'
    >>> find_yaml(["unet.bioimageio.yaml"]), find_yaml(["sub/rdf.yaml"])
    ('unet.bioimageio.yaml', None)
    """
    top = sorted(n for n in names if "/" not in n.rstrip("/"))
    for wanted in YAML_NAMES:
        for name in top:
            if name == wanted or name.endswith("." + wanted):
                return name
    return None


# ------------------------------------------------------------------------ parsing


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
            return _Affine(self.gain, self.offset)
        if self.kind == "clip":
            return _Clip(self.low, self.high)
        if self.kind == "sigmoid":
            return nn.Sigmoid()
        if self.kind == "binarize":
            return _Binarize(self.threshold)
        if self.kind == "softmax":
            return nn.Softmax(dim=1)
        raise ValueError(f"unknown pointwise step kind {self.kind!r}")


@dataclass(frozen=True)
class ArchitectureSpec:
    """The Python callable that builds a ``pytorch_state_dict`` network."""

    callable: str
    kwargs: dict[str, Any]
    source: str | None = None  # a file in the package (or a URL, refused when loading)
    import_from: str | None = None  # an importable module
    sha256: str | None = None


@dataclass(frozen=True)
class WeightsSpec:
    """The weights entry stitchsafe loads (``kind`` is one of :data:`WEIGHT_FORMATS`)."""

    kind: str
    source: str
    sha256: str | None = None
    architecture: ArchitectureSpec | None = None
    strict: bool = True


@dataclass(frozen=True)
class PackageSpec:
    """What stitchsafe takes from a package description.

    Axis lists name each tensor axis in the package's order: ``"batch"``, ``"channel"``
    or a space axis id; ``space`` holds the space axis ids in stitchsafe's order
    (``z, y, x``). ``min_input``/``step``/``context`` are ``None`` when the package does
    not declare them as a parameterised size and an output offset.
    """

    name: str
    id: str | None
    input_axes: tuple[str, ...]
    output_axes: tuple[str, ...]
    space: tuple[str, ...]
    batch_one: bool
    input_channel_names: tuple[str, ...]
    output_channel_names: tuple[str, ...]
    min_input: Shape | None
    step: Shape | None
    context: Shape | None
    output_halo: Shape
    normalization: dict[str, Any]
    preprocessing: tuple[PointwiseOp, ...]
    postprocessing: tuple[PointwiseOp, ...]
    weights: WeightsSpec
    notes: tuple[str, ...] = ()
    steps: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return len(self.space)

    @property
    def channels_in(self) -> int:
        return len(self.input_channel_names)

    @property
    def channels_out(self) -> int:
        return len(self.output_channel_names)

    def metadata(self, geometry: dict[str, Any] | None = None) -> dict[str, Any]:
        """stitchsafe metadata (schema of :mod:`stitchsafe.model`), ``geometry`` added.

        ``geometry`` holds ``period``, ``halo`` and ``valid_input`` when they are known.
        """
        meta: dict[str, Any] = {
            "stitchsafe_metadata": 1,
            "dims": self.dims,
            "channels_in": self.channels_in,
            "channels_out": self.channels_out,
            **(geometry or {}),
            "normalization": dict(self.normalization),
            "architecture": {
                "name": "bioimage.io package",
                "package": self.name,
                "weights": self.weights.kind,
            },
            "bioimageio": {
                "name": self.name,
                "id": self.id,
                "input_channels": list(self.input_channel_names),
                "output_channels": list(self.output_channel_names),
                "input_axes": list(self.input_axes),
                "output_axes": list(self.output_axes),
                "output_halo": list(self.output_halo),
                **{k: list(v) for k, v in self.steps.items()},
            },
        }
        roles = _channel_roles(self.output_channel_names)
        if roles is not None:
            meta["channel_roles"] = roles
        return meta


def _channel_roles(names: Sequence[str]) -> list[str] | None:
    """Roles from names in stitchsafe's own vocabulary; None for any other naming.

    >>> _channel_roles(["embedding0", "embedding1", "foreground"])
    ['embedding', 'embedding', 'foreground']
    >>> _channel_roles(["boundaries", "foreground"]) is None
    True
    """
    roles = []
    for name in names:
        if name.lower() == "foreground":
            roles.append("foreground")
        elif name.lower().startswith("embedding"):
            roles.append("embedding")
        else:
            return None
    return roles


class _Refuse(StitchsafeError):
    """A package stitchsafe cannot use (the message is completed by :func:`_bad`)."""


def _space_order(ids: Sequence[str]) -> tuple[str, ...]:
    """Space axis ids in stitchsafe's order: ``z, y, x`` when they are those, else as given.

    >>> _space_order(["x", "y"]), _space_order(["y", "x", "z"]), _space_order(["u", "v"])
    (('y', 'x'), ('z', 'y', 'x'), ('u', 'v'))
    """
    if set(ids) <= {"z", "y", "x"}:
        return tuple(sorted(ids, key="zyx".index))
    return tuple(ids)


def _axis_label(axis: Any) -> str:
    kind = str(axis.type)
    if kind in ("batch", "channel"):
        return kind
    if kind == "space":
        return str(axis.id)
    raise _Refuse(
        f"it has a {kind!r} axis ({str(axis.id)!r}); stitchsafe runs networks on batch, "
        "channel and 1-3 space axes only, so time series and index axes cannot be tiled. Use "
        "a package whose tensors have axes such as (batch, channel, z, y, x)"
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
    required = [t for t in descr.inputs if not getattr(t, "optional", False)]
    if len(required) != 1 or len(descr.outputs) != 1:
        raise _Refuse(
            f"it has {len(required)} required input tensor(s) and {len(descr.outputs)} output "
            "tensor(s); stitchsafe runs networks with one input and one output tensor"
        )
    tin, tout = required[0], descr.outputs[0]
    in_labels = tuple(_axis_label(a) for a in tin.axes)
    out_labels = tuple(_axis_label(a) for a in tout.axes)
    in_space = [a for a in in_labels if a not in ("batch", "channel")]
    out_space = [a for a in out_labels if a not in ("batch", "channel")]
    if not 1 <= len(in_space) <= 3 or sorted(in_space) != sorted(out_space):
        raise _Refuse(
            f"its input has space axes {in_space} and its output {out_space}; stitchsafe needs "
            "1-3 space axes, the same ones in input and output"
        )
    if ("batch" in in_labels) != ("batch" in out_labels):
        raise _Refuse("one of its input and output tensors has a batch axis and the other not")
    space = _space_order(in_space)
    in_axes = {_axis_label(a): a for a in tin.axes}
    out_axes = {_axis_label(a): a for a in tout.axes}
    batch = in_axes.get("batch")
    batch_one = batch is None or getattr(batch, "size", None) == 1

    def names(axes: dict[str, Any]) -> tuple[str, ...]:
        ch = axes.get("channel")
        return tuple(str(n) for n in ch.channel_names) if ch is not None else ("channel0",)

    cin, cout = names(in_axes), names(out_axes)
    min_input, step, context, halo, notes = _sizes(tin, in_axes, out_axes, space)
    norm, pre, pre_ids = _preprocessing(tin, space, _Axes.of(tin, len(cin)))
    post, post_ids, post_notes = _postprocessing(tout, _Axes.of(tout, len(cout)))
    return PackageSpec(
        name=str(descr.name),
        id=str(descr.id) if getattr(descr, "id", None) is not None else None,
        input_axes=in_labels,
        output_axes=out_labels,
        space=space,
        batch_one=batch_one,
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
        out = aout.size
        same_scale = math.isclose(float(ain.scale), float(aout.scale))
        if hasattr(out, "tensor_id") and str(out.tensor_id) == str(tin.id) and same_scale:
            if str(out.axis_id) != s:
                raise _Refuse(
                    f"its output axis {s!r} takes its size from input axis {str(out.axis_id)!r}; "
                    "stitchsafe needs each output space axis sized from the same input axis"
                )
            context.append(-int(out.offset))
        elif isinstance(out, int) and isinstance(size, int) and same_scale:
            context.append(size - out)
        else:
            raise _Refuse(
                f"its output axis {s!r} is not its input axis {s!r} minus a fixed number of "
                f"voxels (size {out!r}, scale {aout.scale} vs {ain.scale}); stitchsafe tiles "
                "networks whose output is the input minus a fixed halo"
            )
        if context[-1] < 0:
            raise _Refuse(
                f"its output axis {s!r} is {-context[-1]} voxels larger than its input; "
                "stitchsafe tiles networks whose output is the input minus a fixed halo"
            )
    notes = []
    if not declared:
        notes.append(
            "the package declares no parameterised input size (min, step) for every space "
            "axis; stitchsafe measures the valid sizes by probing the network."
        )
        return None, None, tuple(context), tuple(halo), notes
    return tuple(mins), tuple(steps), tuple(context), tuple(halo), notes


def _kw(step: Any, name: str, default: Any = None) -> Any:
    return getattr(step.kwargs, name, default) if step.kwargs is not None else default


@dataclass(frozen=True)
class _Axes:
    """A tensor's axis ids -> labels (``"batch"``, ``"channel"`` or the space id)."""

    labels: dict[str, str]
    channels: int

    @classmethod
    def of(cls, tensor: Any, channels: int) -> _Axes:
        return cls({str(a.id): _axis_label(a) for a in tensor.axes}, channels)

    def label(self, axis_id: Any) -> str:
        return self.labels.get(str(axis_id), str(axis_id))


def _per_channel(step: Any, values: Any, axes: _Axes, what: str) -> tuple[float, ...]:
    """One value, or one per channel when the step runs along the channel axis."""
    channels = axes.channels
    if not isinstance(values, list | tuple):
        return (float(values),)
    axis = _kw(step, "axis")
    if axis is not None and axes.label(axis) != "channel":
        raise _Refuse(
            f"its {what} step {step.id!r} runs along axis {str(axis)!r} with one value per "
            "position; per-position values break shift equivariance, so tiles could not be "
            "stitched exactly. stitchsafe maps per-channel values only"
        )
    if len(values) not in (1, channels):
        raise _Refuse(
            f"its {what} step {step.id!r} has {len(values)} values for {channels} channel(s)"
        )
    return tuple(float(v) for v in values)


def _percentile_clip(step: Any) -> bool:
    return _kw(step, "min_percentile") is not None or _kw(step, "max_percentile") is not None


def _fixed_op(step: Any, axes: _Axes, what: str) -> PointwiseOp | None:
    """A fixed per-voxel step as a PointwiseOp; None for a no-op; _Refuse otherwise."""
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
            raise _Refuse(
                f"its {what} step 'clip' clips at percentiles of the data; stitchsafe maps clip "
                "with fixed bounds only"
            )
        return PointwiseOp(sid, "clip", low=_kw(step, "min"), high=_kw(step, "max"))
    if sid == "sigmoid":
        return PointwiseOp(sid, "sigmoid")
    if sid == "binarize":
        return PointwiseOp(
            sid, "binarize", threshold=_per_channel(step, _kw(step, "threshold"), axes, what)
        )
    if sid == "softmax":
        axis = str(_kw(step, "axis", "channel"))
        if axes.label(axis) != "channel":
            raise _Refuse(
                f"its {what} step 'softmax' runs over axis {axis!r}; over space it mixes voxels "
                "across tile borders, so stitchsafe maps softmax over channels only"
            )
        return PointwiseOp(sid, "softmax")
    raise _Refuse(f"stitchsafe cannot map its {what} step {sid!r}")


def _preprocessing(
    tin: Any, space: Sequence[str], axes: _Axes
) -> tuple[dict[str, Any], tuple[PointwiseOp, ...], list[str]]:
    """``(normalization metadata, fixed steps run in the network, step ids)``."""
    norm: dict[str, Any] = {"method": "none"}
    ops: list[PointwiseOp] = []
    ids: list[str] = []
    for step in tin.preprocessing or ():
        sid = str(step.id)
        ids.append(sid)
        if sid == "ensure_dtype" and str(_kw(step, "dtype")) not in _FLOATS:
            raise _Refuse(
                "its preprocessing step 'ensure_dtype' casts the input to "
                f"{_kw(step, 'dtype')}; stitchsafe feeds networks float32 and maps only "
                "ensure_dtype to float32/float64"
            )
        if sid in _STATISTICS:
            _check_statistics(step, space, axes)
            if norm["method"] != "none" or ops:
                earlier = ops[0].name if ops else "another statistics step"
                raise _Refuse(
                    f"its preprocessing step {sid!r} computes statistics after "
                    f"{earlier!r}; stitchsafe applies one whole-volume normalisation first and "
                    "fixed per-voxel steps after it, so this order cannot be mapped"
                )
            norm = {"method": _STATISTICS[sid]}
            if sid == "scale_range":
                lo, hi = (
                    float(_kw(step, "min_percentile", 0.0)),
                    float(_kw(step, "max_percentile", 100.0)),
                )
                norm["percentiles"] = [lo, hi]
            continue
        op = _fixed_op(step, axes, "preprocessing")
        if op is not None:
            ops.append(op)
    return norm, tuple(ops), ids


def _check_statistics(step: Any, space: Sequence[str], tensor_axes: _Axes) -> None:
    """Refuse statistics stitchsafe cannot compute as one whole-volume offset and scale."""
    sid = str(step.id)
    ref = _kw(step, "reference_tensor")
    if ref is not None:
        raise _Refuse(
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
        raise _Refuse(
            f"its preprocessing step {sid!r} computes statistics over axes "
            f"{sorted(axes)}, separately along {missing}; stitchsafe normalises with statistics "
            "of the whole volume only (never per tile or per slice)"
        )
    if channels > 1 and "channel" not in axes:
        raise _Refuse(
            f"its preprocessing step {sid!r} normalises each of its {channels} input "
            "channels separately; stitchsafe pools all channels into one whole-volume offset "
            "and scale"
        )


def _postprocessing(tout: Any, axes: _Axes) -> tuple[tuple[PointwiseOp, ...], list[str], list[str]]:
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
        stats = sid in ("zero_mean_unit_variance", "scale_range", "scale_mean_variance") or (
            sid == "clip" and _percentile_clip(step)
        )
        if stats:
            raise _Refuse(
                f"its postprocessing step {sid!r} needs statistics of the output, which "
                "stitchsafe would have to compute per tile; that breaks exact stitching"
            )
        op = _fixed_op(step, axes, "postprocessing")
        if op is not None:
            ops.append(op)
    return tuple(ops), ids, notes


def _weights(weights: Any) -> WeightsSpec:
    present = [
        name
        for name in (
            "torchscript",
            "pytorch_state_dict",
            "onnx",
            "keras_hdf5",
            "keras_v3",
            "tensorflow_saved_model_bundle",
            "tensorflow_js",
        )
        if getattr(weights, name, None) is not None
    ]
    for kind in WEIGHT_FORMATS:
        entry = getattr(weights, kind, None)
        if entry is None:
            continue
        arch = None
        if kind == "pytorch_state_dict":
            a = entry.architecture
            arch = ArchitectureSpec(
                callable=str(a.callable),
                kwargs=dict(a.kwargs or {}),
                source=str(a.source) if getattr(a, "source", None) is not None else None,
                import_from=str(a.import_from) if hasattr(a, "import_from") else None,
                sha256=str(a.sha256) if getattr(a, "sha256", None) is not None else None,
            )
        return WeightsSpec(
            kind=kind,
            source=str(entry.source),
            sha256=str(entry.sha256) if entry.sha256 is not None else None,
            architecture=arch,
            strict=bool(getattr(entry, "strict", True)),
        )
    raise _Refuse(
        f"it has {' and '.join(present) or 'no'} weights; stitchsafe runs torchscript and "
        "pytorch_state_dict weights"
    )


# ------------------------------------------------------------------------ reading


def _spec_module() -> Any:
    try:
        import bioimageio.spec as spec
    except ImportError:
        raise StitchsafeError(
            "reading bioimage.io model packages needs the optional bioimageio.spec package; "
            f"install it with: {_INSTALL}"
        ) from None
    return spec


def read_description(yaml_path: str | os.PathLike[str], *, where: str) -> Any:
    """Read and validate a package description offline; return the 0.5 ``ModelDescr``.

    No I/O checks run (``perform_io_checks=False``): referenced files are neither
    downloaded nor hashed here (stitchsafe checks the files it loads itself), and
    ``bioimageio.spec`` logs and progress bars are off.

    Raises
    ------
    StitchsafeError
        Not installed, not a valid description, or not a model.
    """
    spec = _spec_module()
    with (
        spec.ValidationContext(perform_io_checks=False, log_warnings=False, progressbar=False),
        _quiet_spec_logs(),
        warnings.catch_warnings(),
    ):
        # e.g. "Conversion of channel size ... may be wrong" from the 0.4 -> 0.5 converter
        warnings.filterwarnings("ignore", module=r"bioimageio\.")
        try:
            descr = spec.load_description(
                Path(yaml_path), perform_io_checks=False, format_version="latest", progressbar=False
            )
        except Exception as e:  # unreadable YAML and the like
            raise StitchsafeError(
                f"{where} is not a valid bioimage.io package: {_first_line(e)}"
            ) from None
    if isinstance(descr, spec.InvalidDescr):
        reason = "; ".join(line.strip("- ").strip() for line in descr.get_reason().splitlines())
        raise StitchsafeError(
            f"{where} is not a valid bioimage.io model description: {reason[:800]}. Fix the "
            f"package's {Path(yaml_path).name} (bioimageio.spec validates it)."
        )
    if getattr(descr, "type", None) != "model":
        raise StitchsafeError(
            f"{where} is a bioimage.io {getattr(descr, 'type', 'resource')!r}, not a model."
        )
    return descr


@contextlib.contextmanager
def _quiet_spec_logs() -> Iterator[None]:
    """bioimageio.spec logs validation warnings with loguru; a CLI run shows none."""
    try:
        from loguru import logger
    except ImportError:
        yield
        return
    logger.disable("bioimageio")
    try:
        yield
    finally:
        logger.enable("bioimageio")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


# ------------------------------------------------------------------------ loading


@contextlib.contextmanager
def package_root(path: str | os.PathLike[str]) -> Iterator[tuple[Path, str]]:
    """``(folder, description file name)`` of a package folder or zip.

    A zip is unpacked into a temporary directory that is removed on exit (everything
    stitchsafe needs is in memory by then).
    """
    p = Path(path)
    if p.is_dir():
        name = find_yaml(c.name for c in p.iterdir() if c.is_file())
        if name is None:
            raise StitchsafeError(f"{str(p)!r} holds no bioimageio.yaml or rdf.yaml.")
        yield p, name
        return
    with zipfile.ZipFile(p) as zf:
        name = find_yaml(zf.namelist())
        if name is None:
            raise StitchsafeError(f"{str(p)!r} is a zip without a top-level rdf.yaml.")
        with tempfile.TemporaryDirectory(prefix="stitchsafe-bioimageio-") as tmp:
            zf.extractall(tmp)  # zipfile drops absolute and ".." parts of member names
            yield Path(tmp), name


def load_package(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a bioimage.io model package (folder or zip) as a stitchsafe model on the CPU.

    The network is wrapped (:class:`PackageModule`) to stitchsafe's axis convention with
    the package's fixed pre- and postprocessing inside; the metadata says the rest
    (geometry with the measured period, normalisation, channel roles).

    Raises
    ------
    StitchsafeError
        Saying what in the package stitchsafe cannot use, and why.
    """
    from .model import LoadedModel, validate_metadata

    where = f"model package {os.fspath(path)!r}"
    with package_root(path) as (root, yaml_name):
        descr = read_description(root / yaml_name, where=where)
        try:
            spec = parse_description(descr)
        except _Refuse as e:
            raise StitchsafeError(f"{where} cannot be used: {e}.") from None
        net = _load_network(spec.weights, root, where)
    module = PackageModule(net, spec).eval()
    _check_weights_dims(net, spec, where)
    inside = [op.name for op in (*spec.preprocessing, *spec.postprocessing)]
    notes = [
        f"bioimage.io package {spec.name!r}: {spec.weights.kind} weights, "
        f"{_describe_norm(spec.normalization)}"
        + (f"; {', '.join(inside)} inside the network" if inside else "")
        + ".",
        *spec.notes,
    ]
    model = LoadedModel(
        os.fspath(path), "bioimageio", module, None, spec.dims, spec.channels_in, notes
    )
    geometry = _declared_geometry(model, spec, where)
    model.metadata = validate_metadata(spec.metadata(geometry))
    return model


def _describe_norm(norm: dict[str, Any]) -> str:
    """The package's normalisation in words.

    >>> _describe_norm({"method": "percentile", "percentiles": [1.0, 99.8]})
    'whole-volume percentile (1, 99.8) normalisation'
    >>> _describe_norm({"method": "none"})
    'no intensity normalisation'
    """
    if norm["method"] == "none":
        return "no intensity normalisation"
    if norm["method"] == "percentile":
        lo, hi = norm["percentiles"]
        return f"whole-volume percentile ({lo:g}, {hi:g}) normalisation"
    return f"whole-volume {norm['method']} normalisation"


def _local_file(root: Path, source: str, what: str, where: str) -> Path:
    if "://" in source:
        raise StitchsafeError(
            f"{where}: its {what} is at {source}; stitchsafe reads packages offline. Download "
            "the package with its files (a bioimage.io zip) and pass that."
        )
    p = root / source
    if not p.is_file():
        raise StitchsafeError(
            f"{where}: its {what} {source!r} is missing from the package; the package is "
            "incomplete (repack it with all the files its rdf.yaml names)."
        )
    return p


def _check_sha256(p: Path, expected: str | None, what: str, where: str) -> None:
    if expected is None:
        return
    digest = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected.lower():
        raise StitchsafeError(
            f"{where}: its {what} {p.name!r} does not match the sha256 in its description "
            "(the file is corrupt or was replaced); repack the package."
        )


def _load_network(weights: WeightsSpec, root: Path, where: str) -> nn.Module:
    what = f"{weights.kind} weights file"
    p = _local_file(root, weights.source, what, where)
    _check_sha256(p, weights.sha256, what, where)
    if weights.kind == "torchscript":
        from .model import _quiet_torchscript

        try:
            with _quiet_torchscript():
                return torch.jit.load(str(p), map_location="cpu").eval()
        except Exception as e:
            raise StitchsafeError(
                f"{where}: its TorchScript weights {weights.source!r} could not be loaded "
                f"({_first_line(e)}); the file may be corrupt."
            ) from None
    assert weights.architecture is not None
    net = _build_architecture(weights.architecture, root, where)
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise StitchsafeError(
            f"{where}: its state dict {weights.source!r} could not be loaded with "
            f"torch.load(weights_only=True) ({_first_line(e)}); stitchsafe loads tensors and "
            "plain containers only."
        ) from None
    try:
        net.load_state_dict(state, strict=weights.strict)
    except Exception as e:
        raise StitchsafeError(
            f"{where}: its state dict does not fit the network built by "
            f"{weights.architecture.callable}(**kwargs) ({_first_line(e)})."
        ) from None
    return net.eval()


def _build_architecture(arch: ArchitectureSpec, root: Path, where: str) -> nn.Module:
    """Import the architecture callable (package file or module) and call it with kwargs."""
    if arch.source is not None:
        p = _local_file(root, arch.source, "architecture source", where)
        _check_sha256(p, arch.sha256, "architecture source", where)
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        name = f"stitchsafe_bioimageio_{p.stem}_{digest}"
        what = f"the architecture source {arch.source!r} in the package"
        try:
            module = sys.modules.get(name) or _import_file(name, p, root)
        except Exception as e:
            raise StitchsafeError(
                f"{where}: {what} cannot be imported ({_first_line(e)}); it may need a Python "
                "package that is not installed."
            ) from None
    else:
        what = f"the architecture module {arch.import_from!r}"
        try:
            module = importlib.import_module(str(arch.import_from))
        except Exception as e:
            raise StitchsafeError(
                f"{where}: {what} cannot be imported ({_first_line(e)}); install the Python "
                "package that provides it."
            ) from None
    fn = getattr(module, arch.callable, None)
    if not callable(fn):
        raise StitchsafeError(f"{where}: {what} has no callable {arch.callable!r}.")
    try:
        net = fn(**arch.kwargs)
    except Exception as e:
        raise StitchsafeError(
            f"{where}: building the network with {arch.callable}(**{arch.kwargs}) failed "
            f"({_first_line(e)})."
        ) from None
    if not isinstance(net, nn.Module):
        raise StitchsafeError(
            f"{where}: {arch.callable}(**kwargs) returned {type(net).__name__}, not a torch "
            "nn.Module."
        )
    return net


def _import_file(name: str, path: Path, root: Path) -> Any:
    """Import a package's source file; sibling modules import from the package folder.

    No bytecode is written into the package (its files are hashed for ``--resume``).
    """
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path.name}")
    module = importlib.util.module_from_spec(spec)
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    sys.path.insert(0, str(root))
    sys.dont_write_bytecode = True
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode
    return module


def _check_weights_dims(net: nn.Module, spec: PackageSpec, where: str) -> None:
    from .model import _dims_from_weights

    dims, cin = _dims_from_weights(net)
    if (dims is not None and dims != spec.dims) or (cin is not None and cin != spec.channels_in):
        raise StitchsafeError(
            f"{where}: its description says {spec.dims} space axes and {spec.channels_in} "
            f"input channel(s) but the network's first convolution takes {dims} and {cin}."
        )


def _declared_geometry(model: LoadedModel, spec: PackageSpec, where: str) -> dict[str, Any]:
    """``period``/``halo``/``valid_input`` metadata from the declared sizes; {} without them.

    The package states valid sizes and the output offset but no period: the period is
    measured on the declared sizes (a few forward passes), after checking that the
    network really returns the declared output size. A network whose output is not
    local (same padding...) keeps ``period = step``, and
    :func:`stitchsafe.model.resolve_geometry` refuses it with the reason.
    """
    if spec.min_input is None or spec.step is None or spec.context is None:
        return {}
    halo = tuple((c // 2, c - c // 2) for c in spec.context)
    try:
        declared = ModelGeometry(
            period=spec.step,
            halo=halo,
            min_input=spec.min_input,
            step=spec.step,
            channels_in=spec.channels_in,
            channels_out=spec.channels_out,
        )
    except StitchsafeError as e:
        raise StitchsafeError(f"{where}: its declared sizes make no tiling geometry: {e}") from None
    runner = probe.Runner(model)
    try:
        lat = probe.Lattice(runner, declared)
    except StitchsafeError:
        raise
    except Exception as e:
        shape = tuple(m + 2 * s for m, s in zip(declared.min_input, declared.step))
        raise GeometryMismatchError(
            f"{where}: its description says input size {shape} is valid but the network fails "
            f"on it ({_first_line(e)})."
        ) from None
    got = tuple(lat.y.shape[2:])
    if got != lat.expected or lat.y.shape[1] != spec.channels_out:
        raise GeometryMismatchError(
            f"{where}: its description says input {lat.shape} gives output "
            f"{lat.expected} with {spec.channels_out} channel(s), but the network returns "
            f"{got} with {lat.y.shape[1]}. Fix the package's axes (sizes, offsets, channels)."
        )
    period = declared.step
    d = lat.window(declared.step)
    if isinstance(d, float) and d <= runner.rtol:
        period = probe._measure_period(runner, lat)
    model.probe_log.append(f"period measured on the package's declared sizes: {runner.cost()}.")
    return {
        "period": list(period),
        "halo": [list(h) for h in halo],
        "valid_input": {"min": list(declared.min_input), "step": list(declared.step)},
    }


# ------------------------------------------------------------------------ the module


class _Affine(nn.Module):
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


class _Clip(nn.Module):
    def __init__(self, low: float | None, high: float | None) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=self.low, max=self.high)


class _Binarize(nn.Module):
    threshold: torch.Tensor

    def __init__(self, threshold: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(list(threshold), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.threshold.reshape((1, -1) + (1,) * (x.ndim - 2)).to(x.dtype)
        return (x > t).to(x.dtype)


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
