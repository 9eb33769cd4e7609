"""Declared geometry (metadata or flags) checked against the model with a few forward passes.

One forward on a valid input enlarged by a step on every side (output size, channels),
one window of it (locality), and per axis one shift by the period (must match) and one by
the period over each of its prime factors (must not match: else the declared period is a
multiple of the real one). Only when that fails does the full probe run, to name the
measured values in the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..errors import GeometryMismatchError, StitchsafeError, UnstitchableModelError
from ..geometry import ModelGeometry
from ._loaded import LoadedModel
from ._locality import unstitchable_error
from ._probe import probe_geometry
from ._probe_runner import Lattice, Runner, differs, error_text, format_diff, log_probe
from ._size_scan import scan_sizes

__all__ = ["cross_check", "probe_with_period"]


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
    lat, problems = _run_declared(model, declared, who, runner)
    if lat is not None and not problems:
        problems = _window_problems(model, lat, who, runner.rtol)
    period_notes = _period_notes(lat, runner.rtol) if lat is not None and not problems else []
    if lat is not None and not problems and not period_notes:
        what = "metadata" if who.startswith("metadata") else "--pooling-factor/--depth"
        log_probe(model, f"geometry from {what}, cross-checked by probing: {runner.cost()}.")
        return replace(declared, channels_in=model.channels_in, channels_out=int(lat.y.shape[1]))
    raise _mismatch(model, declared, who, problems, period_notes, declares_sizes)


def _run_declared(
    model: LoadedModel, declared: ModelGeometry, who: str, runner: Runner
) -> tuple[Lattice | None, list[str]]:
    """The lattice of the declared sizes (None if the model fails), and what disagrees."""
    try:
        lat = Lattice(runner, declared)
    except StitchsafeError:
        raise
    except Exception as e:
        shape = tuple(m + 2 * s for m, s in zip(declared.min_input, declared.step, strict=True))
        return None, [
            f"{who} input size {shape} is valid but the model fails on it ({error_text(e)})"
        ]
    problems = []
    got = tuple(lat.y.shape[2:])
    for a, (n, want, g) in enumerate(zip(lat.shape, lat.expected, got, strict=True)):
        if want != g:
            problems.append(
                f"{who} output size {want} for input {n} but the model returns {g} (axis {a})"
            )
    meta_out = (model.metadata or {}).get("channels_out") if who.startswith("metadata") else None
    if meta_out is not None and int(meta_out) != lat.y.shape[1]:
        problems.append(f"{who} {meta_out} output channels but the model returns {lat.y.shape[1]}")
    return lat, problems


def _window_problems(model: LoadedModel, lat: Lattice, who: str, rtol: float) -> list[str]:
    """The window one step in: a wrong size is a problem, a different output a refusal."""
    d = lat.window(lat.geometry.step)
    if not isinstance(d, float):
        return [
            f"{who} output size {lat.base_out} for input {lat.base} but the model returns "
            f"{format_diff(d)}"
        ]
    if d > rtol:
        raise unstitchable_error(model, lat.geometry, d, rtol)
    return []


def _period_notes(lat: Lattice, rtol: float) -> list[str]:
    """How the declared period disagrees with shifting the input (empty when it agrees)."""
    notes = []
    for a, p in enumerate(lat.geometry.period):
        d = lat.shifted(a, p)
        if differs(d, rtol):
            notes.append(f"shifting by {p} along axis {a} changes the output ({format_diff(d)})")
        for q in _primes(p):
            if not differs(lat.shifted(a, p // q), rtol):
                notes.append(f"shifting by {p // q} along axis {a} already matches")
    return notes


def _primes(n: int) -> list[int]:
    """The prime factors of ``n``, each once.

    >>> _primes(12)
    [2, 3]
    """
    return [p for p in range(2, n + 1) if n % p == 0 and all(p % q for q in range(2, p))]


def _mismatch(
    model: LoadedModel,
    declared: ModelGeometry,
    who: str,
    problems: list[str],
    period_notes: list[str],
    declares_sizes: bool,
) -> GeometryMismatchError:
    """The error naming declared and measured values (measured by the full probe)."""
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
