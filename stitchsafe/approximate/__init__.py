"""Approximate tiling for models that cannot be stitched exactly (same-padded U-Nets).

The halo is measured, not guessed: tiled runs over probe volumes are compared with one
whole-volume pass until the deviation is within the tolerance (the method is described in
``_search``). Inside: the settings and caps, the model's own geometry and its widening,
the probes, the deviation measurement, the search and the resulting :class:`Approximation`.

The modules inside are private; import from here.
"""

from __future__ import annotations

from ._deviation import ProbeRun, tiled_deviation
from ._halo import halo_steps, native_geometry, widen
from ._probes import Probe, input_probe, structured_probe
from ._result import Approximation, Trial
from ._search import approximate_tiling, choose_halo, probe_tiles
from ._settings import (
    DEFAULT_MAX_HALO,
    DEFAULT_TOLERANCE,
    INPUT_PROBE_VOXELS,
    MAX_PROBE_VOXELS,
    PATIENCE,
    PROBE_WRITE,
    ApproximateSettings,
    SearchLimits,
    check_tolerance,
)

__all__ = [
    "DEFAULT_MAX_HALO",
    "DEFAULT_TOLERANCE",
    "INPUT_PROBE_VOXELS",
    "MAX_PROBE_VOXELS",
    "PATIENCE",
    "PROBE_WRITE",
    "ApproximateSettings",
    "Approximation",
    "Probe",
    "ProbeRun",
    "SearchLimits",
    "Trial",
    "approximate_tiling",
    "check_tolerance",
    "choose_halo",
    "halo_steps",
    "input_probe",
    "native_geometry",
    "probe_tiles",
    "structured_probe",
    "tiled_deviation",
    "widen",
]
