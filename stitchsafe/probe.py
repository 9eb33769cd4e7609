"""Measure a model's geometry by running it, and test that it can be stitched exactly.

Nothing here trusts that a forward pass *succeeded*: exported and TorchScript U-Nets run
on invalid sizes too (pooling floors, skip crops hide it) and return misaligned output.

- **Valid sizes and context.** Cubes of size ``n, n + 1, ...`` (batch 1, seeded random
  input) are run from the smallest size the model runs on (found by trying 1, 2, 4, ...
  and bisecting) and the output size per axis recorded. The context ``C`` of an axis is
  the smallest ``n - out(n)`` seen; the valid sizes are those with ``n - out(n) == C``;
  the step is the gcd of their gaps. Each axis is then refined alone, the others held at
  a valid size (anisotropic models have smaller valid sizes on some axes than any cube
  shows). The halo is centred: ``(C // 2, C - C // 2)``; only ``C`` is observable.
- **Locality.** On a valid input enlarged by one step on every side, a window at offset
  ``step`` must give the same output as the matching region of the whole input's
  output. Same-padded convolutions and normalisation over spatial statistics fail this.
- **Period.** The smallest divisor ``s`` of the step such that shifting the window by
  ``s`` along an axis still matches. Comparisons run in float64 on a copy of the module
  where possible (own checkpoints, TorchScript), with tolerance ``1e-6 x max|output|``;
  otherwise float32 with ``1e-4`` (the exactness tolerance of the stitched output). The
  input is noise plus smooth ramps, so that window statistics differ.

Declared geometry (metadata or flags) is cross-checked with a handful of forward passes
(:func:`cross_check`); the full probe runs only when that check fails, to report both
values.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from .errors import GeometryMismatchError, StitchsafeError, UnstitchableModelError
from .geometry import ModelGeometry

if TYPE_CHECKING:
    from .model import LoadedModel

Shape = tuple[int, ...]
logger = logging.getLogger(__name__)

RTOL = {torch.float64: 1e-6, torch.float32: 1e-4}
DEFAULT_CAP = {1: 1024, 2: 256, 3: 160}
_NORM_LAYERS = ("InstanceNorm", "GroupNorm", "LayerNorm", "LocalResponseNorm")
_NORM_OPS = ("instance_norm", "group_norm", "native_group_norm", "layer_norm", "native_layer_norm")
_HINT = (
    "Give the geometry instead: metadata stored with the model (see stitchsafe.model), or "
    "--pooling-factor/--depth."
)


def structured_input(shape: Sequence[int], channels: int, *, seed: int = 0) -> torch.Tensor:
    """Seeded float64 input ``(1, channels, *shape)``: noise plus ramps and slow waves.

    The ramps make windows at different positions differ in mean and variance, so that
    normalisation over spatial statistics shows in a comparison.

    >>> tuple(structured_input((3, 4), 2).shape)
    (1, 2, 3, 4)
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, channels, *shape), generator=gen, dtype=torch.float64)
    for a, n in enumerate(shape):
        c = torch.arange(n, dtype=torch.float64)
        ramp = 0.05 * c + 0.002 * c**2 + 0.5 * torch.sin(0.37 * c + a)
        x += ramp.reshape((1, 1) + tuple(n if b == a else 1 for b in range(len(shape))))
    return x


@contextmanager
def _no_tf32(device: torch.device) -> Iterator[None]:
    """Full float32 precision on CUDA: TF32 convolutions err by ~1e-3, above the tolerance."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class Runner:
    """Runs a model for probing and counts forward passes.

    ``run(x, precise=True)`` uses a float64 copy of the module where the format allows
    (own checkpoints, TorchScript), else the model itself in float32.
    """

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.dims = model.dims
        self.channels = model.channels_in
        self.device = model.device
        self.forwards = 0
        self.started = time.perf_counter()
        self.last_error: BaseException | None = None
        self._precise: tuple[Callable[[torch.Tensor], Any], torch.dtype] | None = None

    @property
    def precise_dtype(self) -> torch.dtype:
        return self._precise_fn()[1]

    @property
    def rtol(self) -> float:
        return RTOL[self.precise_dtype]

    def _precise_fn(self) -> tuple[Callable[[torch.Tensor], Any], torch.dtype]:
        if self._precise is None:
            self._precise = (self.model.module, torch.float32)
            try:
                if self.model.format == "stitchsafe":
                    module = copy.deepcopy(self.model.module).double()
                    self._precise = (module, torch.float64)
                elif self.model.format == "torchscript":
                    # a fresh load: deep copies of ScriptModules have non-leaf parameters
                    from .model import _quiet_torchscript

                    with _quiet_torchscript():
                        module = torch.jit.load(self.model.path, map_location=self.device)
                    self._precise = (module.eval().double(), torch.float64)
            except Exception:  # some scripted modules cannot be cast; float32 will do
                pass
        return self._precise

    def drop_precision(self) -> bool:
        """Fall back to float32 (when the float64 copy fails); False if already float32."""
        if self.precise_dtype == torch.float32:
            return False
        self._precise = (self.model.module, torch.float32)
        return True

    def run(self, x: torch.Tensor, *, precise: bool = False) -> torch.Tensor:
        fn, dtype = self._precise_fn() if precise else (self.model.module, torch.float32)
        self.forwards += 1
        with torch.inference_mode(), _no_tf32(self.device):
            y = fn(x.to(device=self.device, dtype=dtype))
        if not isinstance(y, torch.Tensor) or y.ndim != x.ndim or y.shape[0] != x.shape[0]:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise StitchsafeError(
                f"the model returned {got} for an input of shape {tuple(x.shape)}; stitchsafe "
                "needs one tensor (N, C_out, *spatial) with the input's number of axes."
            )
        return y.to(device="cpu", dtype=torch.float64)

    def try_run(self, x: torch.Tensor, *, precise: bool = False) -> torch.Tensor | None:
        try:
            return self.run(x, precise=precise)
        except Exception as e:  # invalid sizes fail in many ways; remember why
            self.last_error = e
            return None

    def cost(self) -> str:
        return f"{self.forwards} forward passes, {time.perf_counter() - self.started:.1f} s"


# ------------------------------------------------------------------------ size scan


@dataclass(frozen=True)
class SizeScan:
    """What running the model on various sizes says about its valid sizes, per axis."""

    context: Shape
    min_input: Shape
    step: Shape
    channels_out: int
    outputs: dict[int, Shape]  # cube size -> output size, for messages

    def geometry(self, period: Sequence[int] | None = None, *, channels_in: int) -> ModelGeometry:
        """Geometry with the centred halo; ``period`` defaults to the step (refined later)."""
        step = self.step
        if period is not None:
            step = tuple(math.lcm(s, p) for s, p in zip(step, period, strict=True))
        return ModelGeometry(
            period=tuple(period) if period is not None else step,
            halo=tuple((c // 2, c - c // 2) for c in self.context),
            min_input=self.min_input,
            step=step,
            channels_in=channels_in,
            channels_out=self.channels_out,
        )


def scan_sizes(runner: Runner, *, cap: int | None = None, needed: int = 3) -> SizeScan:
    """Run cube inputs of size ``n`` until every axis has ``needed`` valid sizes.

    The linear scan ``n, n + 1, ...`` starts at the smallest size the model runs on, found
    by trying 1, 2, 4, 8, ... and bisecting (exact for models that run on every size above
    a minimum, as pooling-flooring ones do); when no power of two runs, it starts at 1.
    Cubes only show sizes valid on *all* axes, so each axis is then refined alone (the
    others held at a valid size): a finer step where the scan had gaps, and smaller valid
    sizes below the smallest cube (anisotropic models).
    """
    dims = runner.dims
    cap = cap if cap is not None else DEFAULT_CAP.get(dims, 128)
    outputs: dict[int, Shape] = {}
    channels: list[int] = []

    def run(shape: Shape) -> Shape | None:
        y = runner.try_run(structured_input(shape, runner.channels, seed=sum(shape)))
        if y is None:
            return None
        channels.append(int(y.shape[1]))
        return tuple(y.shape[2:])

    def runs(n: int) -> bool:
        if n not in outputs:
            out = run((n,) * dims)
            if out is None:
                return False
            outputs[n] = out
        return True

    start = 1
    trials = sorted({min(2**k, cap) for k in range(cap.bit_length() + 1)})
    hit = next((n for n in trials if runs(n)), None)
    if hit is not None:
        lo = max([t for t in trials if t < hit], default=0)
        while hit - lo > 1:
            mid = (lo + hit) // 2
            lo, hit = (lo, mid) if runs(mid) else (mid, hit)
        start = hit
    context: list[int] = []
    valid: list[list[int]] = []
    gaps = False
    for n in range(start, cap + 1):
        if not runs(n):
            gaps = True
            continue
        # the stopping rule and the gcd use the contiguous range only: sparse samples from
        # the bisection would make the step look coarser than it is
        seen = {k: outputs[k] for k in range(start, n + 1) if k in outputs}
        context = [min(k - o[a] for k, o in outputs.items()) for a in range(dims)]
        valid = [[k for k, o in seen.items() if k - o[a] == context[a]] for a in range(dims)]
        if all(len(v) >= needed for v in valid):
            break
    else:
        if not outputs:
            why = f"it failed on every cube input of size 1 to {cap}"
            if runner.last_error is not None:
                why += f" (last error: {_error_text(runner.last_error)})"
        else:
            pairs = ", ".join(f"{n}->{o}" for n, o in sorted(outputs.items())[:8])
            more = ", ..." if len(outputs) > 8 else ""
            why = (
                f"up to size {cap} it found no {needed} input sizes per axis whose output is the "
                f"input minus a constant (input->output: {pairs}{more})"
            )
        raise StitchsafeError(
            f"could not measure the geometry of {runner.model.path!r} by probing: {why}. {_HINT}"
        )
    if any(c < 0 for c in context):
        raise StitchsafeError(
            f"{runner.model.path!r}: the model's output is larger than its input "
            f"({min(outputs.items())}); stitchsafe tiles models whose output is the input minus "
            "a fixed halo."
        )
    steps = [math.gcd(*[b - a for a, b in zip(v, v[1:], strict=False)]) for v in valid]
    mins = [v[0] for v in valid]
    common = sorted(set(valid[0]).intersection(*valid[1:]))
    if common:
        m = common[0]

        def axis_valid(a: int, n: int) -> bool:
            shape = tuple(n if b == a else m for b in range(dims))
            out = run(shape)
            return out is not None and out == _minus(shape, context)

        for a in range(dims):
            if gaps:
                steps[a] = next(
                    d for d in _divisors(steps[a]) if axis_valid(a, m + d) or d == steps[a]
                )
            while mins[a] - steps[a] >= 1 and axis_valid(a, mins[a] - steps[a]):
                mins[a] -= steps[a]
    return SizeScan(tuple(context), tuple(mins), tuple(steps), channels[-1], outputs)


# ------------------------------------------------------------- window comparisons


class Lattice:
    """A valid input enlarged by one step on every side, and windows of it.

    The window at ``offset`` (a multiple of the period per axis, for an equivariant model)
    must give the output region ``[offset, offset + out)`` of the whole input's output.
    """

    def __init__(self, runner: Runner, geometry: ModelGeometry) -> None:
        self.runner = runner
        self.geometry = geometry
        self.base = geometry.min_input
        self.base_out = _minus(self.base, geometry.context)
        self.shape = tuple(m + 2 * s for m, s in zip(self.base, geometry.step, strict=True))
        self.expected = _minus(self.shape, geometry.context)
        self.x = structured_input(self.shape, runner.channels, seed=12345)
        try:
            y = runner.run(self.x, precise=True)
        except StitchsafeError:
            raise
        except Exception:
            # a float64 copy that fails where float32 runs: fall back to float32
            if runner.precise_dtype == torch.float32 or runner.try_run(self.x) is None:
                raise
            runner.drop_precision()
            y = runner.run(self.x, precise=True)
        self.y = y
        self.scale = float(y.abs().max())
        if not math.isfinite(self.scale) or self.scale == 0.0:
            raise StitchsafeError(
                f"{runner.model.path!r}: the model returns "
                f"{'all zeros' if self.scale == 0.0 else 'NaN or infinite values'} for the probe "
                f"input of shape {self.shape}; stitchsafe cannot compare outputs to measure its "
                f"geometry. {_HINT}"
            )

    def window(self, offset: Sequence[int]) -> float | Shape | str:
        """Relative max difference; else the wrong output shape, or why the model failed."""
        try:
            y = self.runner.run(self.x[_box(offset, self.base)], precise=True)
        except StitchsafeError:
            raise
        except Exception as e:
            return _error_text(e)
        if tuple(y.shape[2:]) != self.base_out:
            return tuple(y.shape[2:])
        ref = self.y[_box(offset, self.base_out)]
        return float((y - ref).abs().max()) / self.scale

    def shifted(self, axis: int, shift: int) -> float | Shape | str:
        offset = list(self.geometry.step)
        offset[axis] += shift
        return self.window(offset)


def _box(offset: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    """Index of the spatial box ``[offset, offset + shape)``, all batch items and channels."""
    spatial = (slice(o, o + n) for o, n in zip(offset, shape, strict=True))
    return (slice(None), slice(None), *spatial)


def _minus(a: Sequence[int], b: Sequence[int]) -> Shape:
    return tuple(x - y for x, y in zip(a, b, strict=True))


def _error_text(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}"


def _differs(d: float | Shape | str, tol: float) -> bool:
    return not isinstance(d, float) or d > tol


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _primes(n: int) -> list[int]:
    return [p for p in range(2, n + 1) if n % p == 0 and all(p % q for q in range(2, p))]


def _require_local(runner: Runner, lat: Lattice) -> None:
    d = lat.window(lat.geometry.step)
    if not isinstance(d, float):
        raise GeometryMismatchError(
            f"{runner.model.path!r}: input size {lat.base} should give output {lat.base_out} "
            f"but the model returns {_fmt(d)}."
        )
    if d > runner.rtol:
        raise unstitchable_error(runner.model, lat.geometry, d, runner.rtol)


def _measure_period(runner: Runner, lat: Lattice) -> Shape:
    period = []
    for a, step in enumerate(lat.geometry.step):
        for s in _divisors(step):
            if not _differs(lat.shifted(a, s), runner.rtol):
                period.append(s)
                break
        else:
            raise UnstitchableModelError(
                f"{runner.model.path!r} cannot be tiled and stitched exactly: shifting the input "
                f"by the valid-size step {step} along axis {a} does not shift the output by the "
                "same amount, so tiles at different positions see different networks. Only "
                "models equivariant to shifts by a fixed period (valid-convolution U-Nets "
                "without normalisation over space) can be stitched exactly."
            )
    return tuple(period)


# ----------------------------------------------------------------------- public API


def probe_geometry(model: LoadedModel, *, cap: int | None = None) -> ModelGeometry:
    """Measure the geometry with no hints: size scan, locality test, period search."""
    runner = Runner(model)
    scan = scan_sizes(runner, cap=cap, needed=3)
    lat = Lattice(runner, scan.geometry(channels_in=model.channels_in))
    _require_local(runner, lat)
    geometry = replace(lat.geometry, period=_measure_period(runner, lat))
    _log(model, f"geometry measured by probing the model: {runner.cost()}.")
    return geometry


def probe_with_period(
    model: LoadedModel, period: Sequence[int], *, who: str, cap: int | None = None
) -> ModelGeometry:
    """Geometry for a known period: scan for valid sizes, then cross-check the period."""
    period = tuple(int(p) for p in period)
    if len(period) != model.dims:
        raise GeometryMismatchError(
            f"{who} period {period} ({len(period)} axes) but the model has {model.dims} "
            "spatial axes."
        )
    runner = Runner(model)
    scan = scan_sizes(runner, cap=cap, needed=2)
    geometry = scan.geometry(period, channels_in=model.channels_in)
    return cross_check(model, geometry, who=who, runner=runner, declares_sizes=False)


def cross_check(
    model: LoadedModel,
    declared: ModelGeometry,
    *,
    who: str = "metadata says",
    runner: Runner | None = None,
    declares_sizes: bool = True,
) -> ModelGeometry:
    """Check declared geometry with a few forward passes; return it with measured channels.

    One forward on a valid input enlarged by a step on every side (output size, channels),
    one window of it (locality), and per axis one shift by the period (must match) and one
    by the period over each of its prime factors (must not match: else the declared
    period is a multiple of the real one).

    Raises
    ------
    GeometryMismatchError
        Naming the declared and the measured values (the full probe runs to measure them).
    UnstitchableModelError
        When the model's output is not local (same padding, spatial normalisation...).
    """
    runner = runner or Runner(model)
    meta_out = (model.metadata or {}).get("channels_out") if who.startswith("metadata") else None
    problems: list[str] = []
    period_notes: list[str] = []
    try:
        lat: Lattice | None = Lattice(runner, declared)
    except StitchsafeError:
        raise
    except Exception as e:
        lat = None
        shape = tuple(m + 2 * s for m, s in zip(declared.min_input, declared.step, strict=True))
        problems.append(
            f"{who} input size {shape} is valid but the model fails on it ({_error_text(e)})"
        )
    if lat is not None:
        got = tuple(lat.y.shape[2:])
        for a, (n, want, g) in enumerate(zip(lat.shape, lat.expected, got, strict=True)):
            if want != g:
                problems.append(
                    f"{who} output size {want} for input {n} but the model returns {g} (axis {a})"
                )
        if meta_out is not None and int(meta_out) != lat.y.shape[1]:
            problems.append(
                f"{who} {meta_out} output channels but the model returns {lat.y.shape[1]}"
            )
    if lat is not None and not problems:
        d = lat.window(declared.step)
        if not isinstance(d, float):
            out = lat.base_out
            problems.append(
                f"{who} output size {out} for input {lat.base} but the model returns {_fmt(d)}"
            )
        elif d > runner.rtol:
            raise unstitchable_error(model, declared, d, runner.rtol)
    if lat is not None and not problems:
        for a, p in enumerate(declared.period):
            d = lat.shifted(a, p)
            if _differs(d, runner.rtol):
                period_notes.append(
                    f"shifting by {p} along axis {a} changes the output ({_fmt(d)})"
                )
            for q in _primes(p):
                if not _differs(lat.shifted(a, p // q), runner.rtol):
                    period_notes.append(f"shifting by {p // q} along axis {a} already matches")
    if not problems and not period_notes and lat is not None:
        what = "metadata" if who.startswith("metadata") else "--pooling-factor/--depth"
        _log(model, f"geometry from {what}, cross-checked by probing: {runner.cost()}.")
        return replace(declared, channels_in=model.channels_in, channels_out=int(lat.y.shape[1]))
    raise _mismatch(model, declared, who, problems, period_notes, declares_sizes)


def _log(model: LoadedModel, message: str) -> None:
    """Record what probing cost (``model.probe_log``; logged at INFO, not a stderr note)."""
    model.probe_log.append(message)
    logger.info("%s: %s", model.path, message)


def _fmt(d: float | Shape | str) -> str:
    if isinstance(d, tuple):
        return f"output shape {d}"
    if isinstance(d, str):
        return f"an error ({d})"
    return f"by {d:.2g} of max |output|"


def _mismatch(
    model: LoadedModel,
    declared: ModelGeometry,
    who: str,
    problems: list[str],
    period_notes: list[str],
    declares_sizes: bool,
) -> GeometryMismatchError:
    try:
        measured: ModelGeometry | None = probe_geometry(model)
        failure = ""
    except UnstitchableModelError:
        raise
    except StitchsafeError as e:
        measured, failure = None, f" (probing could not measure the geometry either: {e})"
    msgs = []
    if measured is not None and measured.period != declared.period:
        msgs.append(
            f"{who} period {declared.period} but shifting the input shows {measured.period}"
        )
    elif period_notes:
        msgs.append(f"{who} period {declared.period} but " + "; ".join(period_notes))
    if measured is not None and declares_sizes and measured.context != declared.context:
        msgs.append(
            f"{who} halo {declared.halo} (input - output = {declared.context}) but the model's "
            f"output is {measured.context} smaller than its input"
        )
    msgs.extend(problems)
    tail = ""
    if measured is not None:
        tail = (
            f" Measured: period {measured.period}, halo {measured.halo}, valid input sizes "
            f"{measured.describe_valid_sizes()}."
        )
    fix = (
        "Fix or remove the model's metadata."
        if who.startswith("metadata")
        else "Fix the --pooling-factor/--depth flags, or leave them out to let stitchsafe probe."
    )
    return GeometryMismatchError(
        f"{model.path!r}: " + "; ".join(msgs) + "." + failure + tail + " " + fix
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
    _require_local(runner, lat)


def suspect_layers(model: LoadedModel) -> list[str]:
    """Layers that usually break exact stitching, as ``"InstanceNorm2d x4"`` strings."""
    counts: Counter[str] = Counter()
    if model.format == "export":
        graph = getattr(model.module, "graph", None)
        for node in graph.nodes if graph is not None else ():
            if node.op != "call_function":
                continue
            parts = str(node.target).split(".")
            op = parts[1] if len(parts) > 1 and parts[0] == "aten" else parts[0]
            if op in _NORM_OPS:
                counts[op] += 1
            elif op in ("conv1d", "conv2d", "conv3d", "convolution"):
                if op == "convolution" and len(node.args) > 6 and node.args[6]:
                    continue  # transposed
                pad = node.args[4] if len(node.args) > 4 else node.kwargs.get("padding", 0)
                if _padded(pad):
                    counts[f"{op}(padding={pad})"] += 1
        return [f"{k} x{v}" for k, v in counts.items()]
    for m in model.module.modules():
        name = str(getattr(m, "original_name", type(m).__name__))
        if name.startswith(_NORM_LAYERS):
            counts[name] += 1
        elif name.startswith("BatchNorm") and getattr(m, "training", False):
            counts[f"{name} in training mode"] += 1
        elif name in ("Conv1d", "Conv2d", "Conv3d"):
            pad = getattr(m, "padding", 0)
            if _padded(pad):
                counts[f"{name}(padding={pad})"] += 1
    return [f"{k} x{v}" for k, v in counts.items()]


def _padded(pad: Any) -> bool:
    if isinstance(pad, str):
        return pad != "valid"
    if isinstance(pad, (list, tuple)):
        return any(int(p) != 0 for p in pad)
    return int(pad) != 0


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


def unstitchable_error(
    model: LoadedModel, geometry: ModelGeometry, diff: float, tol: float
) -> UnstitchableModelError:
    """The one-paragraph refusal: what was measured, why it happens, what would work."""
    layers = suspect_layers(model)
    norms = [n for n in layers if "norm" in n.lower()]
    padded = [n for n in layers if "padding=" in n]
    if norms and not padded:
        why = _NORMALISATION
        fix = _NORMALISATION_FIX
    elif all(c == 0 for c in geometry.context):
        why = (
            "the model keeps the output the same size as its input (same-padded convolutions): "
            "zero padding at every tile border makes tiles disagree with a whole-volume pass"
        )
        fix = (
            "Use valid convolutions (padding=0), so that the output shrinks by a fixed halo that "
            f"stitchsafe reads around each tile; {_APPROXIMATE_HINT}"
        )
    elif padded and not norms:
        why = (
            "some convolutions pad their input with zeros (padding != 0), so tile borders see "
            "zeros where a whole-volume pass sees image"
        )
        fix = f"Use valid convolutions (padding=0) throughout; {_APPROXIMATE_HINT}"
    else:
        why, fix = _NORMALISATION, _NORMALISATION_FIX
    found = f" Layers found that cause this: {', '.join(layers)}." if layers else ""
    return UnstitchableModelError(
        f"{model.path!r} cannot be tiled and stitched exactly: {why}. A window's output differs "
        f"from the matching region of a larger input's output by {diff:.2g} of max |output| "
        f"(tolerance {tol:.0e}).{found} {fix}"
    )
