"""The full probe: a model's geometry measured by running it, with no hints.

Size scan (:func:`scan_sizes`: valid sizes and context), locality test
(:func:`require_local`), then the period: the smallest divisor ``s`` of the step such
that shifting the window by ``s`` along an axis still matches.

Declared geometry (metadata or flags) is cross-checked with a handful of forward passes
instead (:func:`stitchsafe.models.cross_check`); the full probe runs only when that check
fails, to report both values.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import UnstitchableModelError
from ..geometry import ModelGeometry
from ..progress import stage_progress
from ._loaded import LoadedModel
from ._locality import require_local
from ._probe_runner import Lattice, Runner, Shape, differs, log_probe
from ._size_scan import divisors, scan_sizes

__all__ = ["measure_period", "probe_geometry"]


def probe_geometry(model: LoadedModel, *, cap: int | None = None) -> ModelGeometry:
    """Measure the geometry with no hints: size scan, locality test, period search."""
    runner = Runner(model)
    with stage_progress("probing the model's geometry", unit="forward pass") as runner.bar:
        scan = scan_sizes(runner, cap=cap, needed=3)
        lat = Lattice(runner, scan.geometry(channels_in=model.channels_in))
        require_local(runner, lat)
        geometry = replace(lat.geometry, period=measure_period(runner, lat))
    log_probe(model, f"geometry measured by probing the model: {runner.cost()}.")
    return geometry


def measure_period(runner: Runner, lat: Lattice) -> Shape:
    """Per axis, the smallest divisor of the step that shifts the output along with the input.

    Raises
    ------
    UnstitchableModelError
        When not even the step itself does (the model is not shift-equivariant).
    """
    period = []
    for a, step in enumerate(lat.geometry.step):
        for s in divisors(step):
            if not differs(lat.shifted(a, s), runner.rtol):
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
