"""The size scan: which input sizes a model runs on validly, and how much it crops.

Cubes of size ``n, n + 1, ...`` (batch 1, seeded random input) are run from the smallest
size the model runs on (found by trying 1, 2, 4, ... and bisecting) and the output size
per axis recorded. The context ``C`` of an axis is the smallest ``n - out(n)`` seen; the
valid sizes are those with ``n - out(n) == C``; the step is the gcd of their gaps. Each
axis is then refined alone, the others held at a valid size (anisotropic models have
smaller valid sizes on some axes than any cube shows). The halo is centred:
``(C // 2, C - C // 2)``; only ``C`` is observable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StitchsafeError
from ..geometry import ModelGeometry
from ._probe_runner import PROBE_HINT, Runner, Shape, error_text, minus, structured_input

__all__ = ["DEFAULT_CAP", "SizeScan", "scan_sizes"]

DEFAULT_CAP = {1: 1024, 2: 256, 3: 160}


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
    cap = cap if cap is not None else DEFAULT_CAP.get(runner.dims, 128)
    sampler = _Sampler(runner, cap)
    start = _smallest_size(sampler)
    context, valid, gaps = _linear_scan(sampler, start, needed)
    if any(c < 0 for c in context):
        raise StitchsafeError(
            f"{runner.model.path!r}: the model's output is larger than its input "
            f"({min(sampler.outputs.items())}); stitchsafe tiles models whose output is the "
            "input minus a fixed halo."
        )
    mins, steps = _refine_axes(sampler, context, valid, gaps)
    return SizeScan(
        tuple(context), tuple(mins), tuple(steps), sampler.channels[-1], sampler.outputs
    )


class _Sampler:
    """Runs the model on input sizes; remembers cube outputs and output channel counts."""

    def __init__(self, runner: Runner, cap: int) -> None:
        self.runner = runner
        self.dims = runner.dims
        self.cap = cap
        self.outputs: dict[int, Shape] = {}
        self.channels: list[int] = []

    def run(self, shape: Shape) -> Shape | None:
        """The output's spatial shape for input ``shape``; None when the model fails."""
        y = self.runner.try_run(structured_input(shape, self.runner.channels, seed=sum(shape)))
        if y is None:
            return None
        self.channels.append(int(y.shape[1]))
        return tuple(y.shape[2:])

    def runs(self, n: int) -> bool:
        """Whether the model runs on the cube of size ``n`` (each size run once)."""
        if n not in self.outputs:
            out = self.run((n,) * self.dims)
            if out is None:
                return False
            self.outputs[n] = out
        return True


def _smallest_size(sampler: _Sampler) -> int:
    """The smallest cube size the model runs on: powers of two, then bisection; else 1."""
    cap = sampler.cap
    trials = sorted({min(2**k, cap) for k in range(cap.bit_length() + 1)})
    hit = next((n for n in trials if sampler.runs(n)), None)
    if hit is None:
        return 1
    lo = max([t for t in trials if t < hit], default=0)
    while hit - lo > 1:
        mid = (lo + hit) // 2
        lo, hit = (lo, mid) if sampler.runs(mid) else (mid, hit)
    return hit


def _linear_scan(
    sampler: _Sampler, start: int, needed: int
) -> tuple[list[int], list[list[int]], bool]:
    """``(context, valid sizes, gaps)`` per axis from cubes ``start, start + 1, ...``.

    ``gaps`` says whether some size in the scan failed to run.
    """
    dims, outputs = sampler.dims, sampler.outputs
    gaps = False
    for n in range(start, sampler.cap + 1):
        if not sampler.runs(n):
            gaps = True
            continue
        # the stopping rule and the gcd use the contiguous range only: sparse samples from
        # the bisection would make the step look coarser than it is
        seen = {k: outputs[k] for k in range(start, n + 1) if k in outputs}
        context = [min(k - o[a] for k, o in outputs.items()) for a in range(dims)]
        valid = [[k for k, o in seen.items() if k - o[a] == context[a]] for a in range(dims)]
        if all(len(v) >= needed for v in valid):
            return context, valid, gaps
    raise _scan_failed(sampler, needed)


def _scan_failed(sampler: _Sampler, needed: int) -> StitchsafeError:
    """The error when the scan found too few valid sizes up to the cap."""
    runner, outputs, cap = sampler.runner, sampler.outputs, sampler.cap
    if not outputs:
        why = f"it failed on every cube input of size 1 to {cap}"
        if runner.last_error is not None:
            why += f" (last error: {error_text(runner.last_error)})"
    else:
        pairs = ", ".join(f"{n}->{o}" for n, o in sorted(outputs.items())[:8])
        more = ", ..." if len(outputs) > 8 else ""
        why = (
            f"up to size {cap} it found no {needed} input sizes per axis whose output is the "
            f"input minus a constant (input->output: {pairs}{more})"
        )
    return StitchsafeError(
        f"could not measure the geometry of {runner.model.path!r} by probing: {why}. {PROBE_HINT}"
    )


def _refine_axes(
    sampler: _Sampler, context: list[int], valid: list[list[int]], gaps: bool
) -> tuple[list[int], list[int]]:
    """``(min sizes, steps)`` per axis, each axis refined alone, the others held valid."""
    dims = sampler.dims
    steps = [math.gcd(*[b - a for a, b in zip(v, v[1:], strict=False)]) for v in valid]
    mins = [v[0] for v in valid]
    common = sorted(set(valid[0]).intersection(*valid[1:]))
    if not common:
        return mins, steps
    m = common[0]

    def axis_valid(a: int, n: int) -> bool:
        shape = tuple(n if b == a else m for b in range(dims))
        out = sampler.run(shape)
        return out is not None and out == minus(shape, context)

    for a in range(dims):
        if gaps:
            steps[a] = next(d for d in divisors(steps[a]) if axis_valid(a, m + d) or d == steps[a])
        while mins[a] - steps[a] >= 1 and axis_valid(a, mins[a] - steps[a]):
            mins[a] -= steps[a]
    return mins, steps


def divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending.

    >>> divisors(12)
    [1, 2, 3, 4, 6, 12]
    """
    return [d for d in range(1, n + 1) if n % d == 0]
