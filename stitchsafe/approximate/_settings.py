"""The settings of approximate mode: the tolerance, and the caps of the halo search.

:class:`ApproximateSettings` is what ``--allow-approximate`` and ``--tolerance`` ask for,
validated once; :class:`SearchLimits` bounds the search for a halo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import StitchsafeError

# Largest deviation from one whole-volume pass, relative to max |output|, by default: well
# below what changes a thresholded mask or an embedding clustering, and reachable by
# same-padded U-Nets with a halo of about their receptive field's radius or less.
DEFAULT_TOLERANCE = 1e-3
# Write box of the probe runs' tiles per axis, at most (voxels, rounded up to the period).
PROBE_WRITE = 16
# Largest extra halo per side tried, in voxels.
DEFAULT_MAX_HALO = 128
# Input voxels the tiled run over the structured probe may read (tiles x read box), at
# most: the halo's cap for 3-D models (27 tiles of (16 + 2 * halo)**3: halo 45).
MAX_PROBE_VOXELS = 2**25
# Input voxels the tiled run over the real input may read, at most: one default CPU tile
# (more input is cropped, down to three tiles per axis).
INPUT_PROBE_VOXELS = 2**21
# Halo steps without a lower deviation before the search stops.
PATIENCE = 3


@dataclass(frozen=True)
class ApproximateSettings:
    """Whether approximate mode is allowed, and its tolerance (``None``: the default).

    The settings validate themselves on creation, with the messages of the
    ``--allow-approximate`` and ``--tolerance`` flags.

    >>> ApproximateSettings().tolerance_value is None
    True
    >>> ApproximateSettings(allow=True).tolerance_value
    0.001
    >>> ApproximateSettings(allow=True, tolerance=1e-4).tolerance_value
    0.0001
    >>> ApproximateSettings(tolerance=1e-4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --tolerance applies to approximate mode only; ...
    """

    allow: bool = False
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if not self.allow:
            if self.tolerance is not None:
                raise StitchsafeError(
                    "--tolerance applies to approximate mode only; add --allow-approximate "
                    "(for models that cannot be stitched exactly), or drop --tolerance."
                )
            return
        if self.tolerance is None:
            return
        t = float(self.tolerance)
        if not (math.isfinite(t) and 0.0 < t < 1.0):
            raise StitchsafeError(
                f"--tolerance {self.tolerance} must lie strictly between 0 and 1: it is the "
                "largest deviation from one whole-volume pass allowed, relative to max "
                f"|output| (default {DEFAULT_TOLERANCE:g})."
            )

    @property
    def tolerance_value(self) -> float | None:
        """The tolerance to use: ``None`` in exact mode, :data:`DEFAULT_TOLERANCE` by default."""
        if not self.allow:
            return None
        if self.tolerance is None:
            return DEFAULT_TOLERANCE
        return float(self.tolerance)


def check_tolerance(tolerance: float | None, *, allow_approximate: bool) -> float | None:
    """The tolerance to use: ``None`` in exact mode, :data:`DEFAULT_TOLERANCE` by default.

    >>> check_tolerance(None, allow_approximate=True)
    0.001
    >>> check_tolerance(None, allow_approximate=False) is None
    True
    >>> check_tolerance(2.0, allow_approximate=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --tolerance 2.0 must lie strictly between 0 and 1...
    """
    return ApproximateSettings(allow=allow_approximate, tolerance=tolerance).tolerance_value


@dataclass(frozen=True)
class SearchLimits:
    """Where the halo search gives up.

    Attributes
    ----------
    max_halo
        Largest extra halo per side tried, in voxels.
    max_probe_voxels
        Largest number of input voxels the tiled run over the first probe may read.
    patience
        Halo steps without a lower deviation before the search stops.
    """

    max_halo: int = DEFAULT_MAX_HALO
    max_probe_voxels: int = MAX_PROBE_VOXELS
    patience: int = PATIENCE
