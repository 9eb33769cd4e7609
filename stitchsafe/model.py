"""A model you keep: loaded, its geometry resolved and cross-checked once (:func:`load_model`).

Loading a model and finding its geometry (from its metadata, ``--pooling-factor``/
``--depth`` or probing, always cross-checked with a few forward passes) takes seconds to
minutes; a pipeline that calls :func:`stitchsafe.plan`, :func:`stitchsafe.predict` or
:func:`stitchsafe.check` on many images should pay it once. :func:`load_model` returns a
:class:`Model`; each of those functions takes it as ``model`` and then neither loads nor
probes again. The command-line tool takes the same path: every command loads its model
with :func:`load_model`. Between processes, a geometry found by probing is remembered for
the same model bytes and flags (:func:`stitchsafe.models.remembered_geometry`).

>>> import stitchsafe
>>> stitchsafe.load_model is load_model
True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .approximate import native_geometry
from .engine import Normalization, compute_normalization
from .errors import StitchsafeError, UnstitchableModelError
from .geometry import ModelGeometry, TilingSettings
from .io import Volume
from .models import LoadedModel, remembered_geometry
from .models import load_model as load_model_file

__all__ = [
    "Model",
    "default_normalization",
    "load_model",
    "refuse_inexact",
    "session_normalization",
]

_LOG = logging.getLogger("stitchsafe.model")

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Model:
    """A loaded model with its geometry: what :func:`load_model` returns.

    Attributes
    ----------
    loaded
        The network and its metadata (:class:`stitchsafe.models.LoadedModel`).
    path
        The model file it was loaded from.
    geometry
        How it tiles: period, halo, smallest input, channels (exact tiling; for a model
        that stitches only approximately, its own geometry on the period lattice, the halo
        to be measured per run).
    source
        Where the geometry came from: ``"metadata"``, ``"flags"``, ``"probe"``, or
        ``"native"`` for a model that stitches only approximately.
    exact
        Whether tiles equal one whole-volume pass exactly (``False``: same-padded or
        otherwise approximate, usable with ``allow_approximate=True`` only).
    flags
        The geometry flags it was resolved with (``--pooling-factor``, ``--depth``).
    unstitchable
        Why it cannot be tiled exactly (``None`` when it can).
    """

    loaded: LoadedModel
    path: str
    geometry: ModelGeometry
    source: str
    flags: TilingSettings = TilingSettings()
    unstitchable: str | None = None

    @property
    def exact(self) -> bool:
        """Whether tiles equal one whole-volume pass exactly (else approximate only)."""
        return self.unstitchable is None

    @property
    def dims(self) -> int:
        """Spatial dimensions the model takes: 2 or 3."""
        return self.geometry.dims

    @property
    def channels_in(self) -> int:
        """Input channels the model takes."""
        return self.geometry.channels_in

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The stitchsafe metadata stored with the model, if any."""
        return self.loaded.metadata

    def describe(self) -> str:
        """One line: the file, its format, dimensionality and geometry."""
        g = self.geometry
        kind = "exact" if self.exact else "approximate only"
        return (
            f"{self.path} ({self.loaded.format}, {self.dims}-D, {self.channels_in} input "
            f"channel(s)): period {g.period}, geometry from {self.source}, {kind}"
        )

    def check_flags(self, tiling: TilingSettings) -> None:
        """Refuse geometry flags given again that differ from those it was resolved with."""
        given = tiling.pooling(self.dims), tiling.depth
        if given != (None, None) and given != (self.flags.pooling(self.dims), self.flags.depth):
            raise StitchsafeError(
                f"the model {self.path!r} was loaded with --pooling-factor/--depth "
                f"{self.flags.pooling_factors}/{self.flags.depth}, not "
                f"{tiling.pooling_factors}/{tiling.depth}; load it again with those flags."
            )


def load_model(
    path: PathLike,
    *,
    trust_model: bool = False,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    depth: int | None = None,
    allow_approximate: bool = False,
) -> Model:
    """Load a model and resolve its geometry once; pass the result to plan/predict/check.

    Parameters
    ----------
    path
        A ``torch.export`` program, TorchScript file, stitchsafe checkpoint or bioimage.io
        package (as ``--model``).
    trust_model
        Let the file run code of its own while loaded (``--trust-model``).
    pooling_factors, depth
        Geometry for models without metadata (``--pooling-factor``, ``--depth``).
    allow_approximate
        Accept a model that stitches only approximately (same padding); its halo is
        measured by each run that uses it with ``allow_approximate=True``.

    Returns
    -------
    Model

    Raises
    ------
    StitchsafeError
        The file is not a model, is damaged or untrusted; its declared geometry disagrees
        with its behaviour; or it cannot be tiled exactly and ``allow_approximate`` is off.

    Examples
    --------
    >>> from stitchsafe.models import bundled_model
    >>> m = load_model(bundled_model(2))
    >>> m.dims, m.channels_in, m.source, m.exact
    (2, 1, 'metadata', True)
    """
    flags = TilingSettings(pooling_factors=pooling_factors, depth=depth)
    loaded = load_model_file(path, device="cpu", trust=trust_model)
    _LOG.info("loaded %s (%s)", os.fspath(path), loaded.format)
    given = {"pooling_factors": flags.pooling(loaded.dims), "depth": depth}
    unstitchable = None
    try:
        geometry, source = remembered_geometry(loaded, **given)
    except UnstitchableModelError as e:
        if not allow_approximate:
            raise
        # Tiles stay on the model's period lattice; each run measures the halo.
        geometry, source = native_geometry(loaded, **given)
        unstitchable = str(e)
    _LOG.info("%s: geometry from %s (period %s)", os.fspath(path), source, geometry.period)
    return Model(loaded, os.fspath(path), geometry, source, flags, unstitchable)


def default_normalization(model: LoadedModel) -> tuple[str, tuple[float, float]]:
    """Normalisation method and percentiles from the model's metadata (default: percentile)."""
    meta = (model.metadata or {}).get("normalization") or {}
    method = str(meta.get("method", "percentile"))
    pct = meta.get("percentiles", (1.0, 99.8))
    return method, (float(pct[0]), float(pct[1]))


def session_normalization(
    model: LoadedModel, volume: Volume, normalize: str | None
) -> Normalization:
    """Whole-volume intensity statistics: ``normalize`` or the model's declared method.

    Non-finite voxels (NaN, Inf) seen by the statistics are refused here, before any tile
    runs; tiles refuse any the statistics' sample did not see.
    """
    method, percentiles = default_normalization(model)
    return compute_normalization(
        volume, method=normalize or method, percentiles=percentiles, refuse_non_finite=True
    )


def refuse_inexact(model: Model) -> None:
    """Refuse a model that stitches only approximately for a run that wants exact tiles."""
    if model.unstitchable is not None:
        raise UnstitchableModelError(model.unstitchable)
