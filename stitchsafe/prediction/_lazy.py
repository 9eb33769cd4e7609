"""``predict_lazy``: the stitched result as a lazy dask array, computed when asked.

A pipeline that wants the embeddings as an array, not a file, gets them here: the same
session as :func:`stitchsafe.predict` (model, geometry, tiles on the period lattice, one
whole-volume normalisation), then a dask array whose blocks are the tiles' write boxes.
Computing a slice runs exactly the tiles under it; computing all of it, on any dask
scheduler, equals one whole-volume pass as a written run does. Nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..approximate import ApproximateSettings
from ..engine import RunSettings, TileJob, lazy_output
from ..geometry import TilingSettings
from ..io import InputSelection, PhysicalScale, PhysicalSettings, file_sha256
from ..labels import choose_roles, parse_channel_roles
from ..model import Model, session_normalization
from ..session import PlanResult, Session, Sources, open_session
from ._settings import PathLike

__all__ = ["LazyPrediction", "predict_lazy"]


@dataclass(frozen=True)
class LazyPrediction:
    """What :func:`predict_lazy` returns.

    Attributes
    ----------
    embeddings
        The stitched float32 network output ``(C, *spatial)`` as a dask array, one block
        per tile write box (``plan.plan.tile_shape``); nothing has run yet.
    plan
        The plan and where its geometry came from (as :func:`stitchsafe.plan` returns).
    physical
        Voxel size, unit and translation of the input's spatial axes.
    channel_roles
        What each output channel is (``"embedding"``, ``"foreground"``,
        ``"probability"``, ``"ignore"``): the ``channel_roles`` given, else the model's
        own; ``None`` when neither says.
    """

    embeddings: Any
    plan: PlanResult
    physical: PhysicalScale
    channel_roles: tuple[str, ...] | None


def predict_lazy(  # noqa: PLR0913 - the public keywords; they become settings values at once
    model: PathLike | Model | None,
    input: PathLike,
    *,
    input_key: str | None = None,
    tile_shape: Sequence[int] | int | None = None,
    device: str = "auto",
    pad_mode: str = "reflect",
    normalize: str | None = None,
    precision: str = "fp32",
    allow_approximate: bool = False,
    tolerance: float | None = None,
    trust_model: bool = False,
    voxel_size: float | Sequence[float] | str | None = None,
    unit: str | None = None,
    channel: int | Sequence[int] | str | None = None,
    timepoint: int | None = None,
    level: int | None = None,
    axes: str | None = None,
    channel_roles: str | Sequence[str] | None = None,
) -> LazyPrediction:
    """The stitched result of ``model`` over ``input`` as a lazy dask array.

    The keywords are :func:`stitchsafe.predict`'s that shape the result, and its
    ``channel_roles`` (:func:`stitchsafe.labels.parse_channel_roles`; checked against the
    model's output channels) for :attr:`LazyPrediction.channel_roles`. The model is
    loaded (or kept from :func:`stitchsafe.load_model`) and the normalisation computed now,
    the tiles when the array is computed: here with this model, elsewhere (processes, dask
    workers) with the model file loaded once per process (same SHA-256).

    Examples
    --------
    >>> import tempfile, numpy as np, zarr
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> _ = zarr.create_array(f"{d}/v.zarr", data=np.random.default_rng(0).random((48, 40)))
    >>> lazy = predict_lazy(None, f"{d}/v.zarr", tile_shape=16)
    >>> lazy.embeddings.shape, lazy.embeddings.chunksize, lazy.channel_roles[-1]
    ((7, 48, 40), (7, 16, 16), 'foreground')
    >>> float(lazy.embeddings[:, :16, :16].std().compute()) > 0; tmp.cleanup()
    True
    """
    chosen = InputSelection.parse(channel, timepoint, level, axes)
    flag = None if channel_roles is None else parse_channel_roles(channel_roles)
    sources = Sources(
        model, input, input_key, trust_model, PhysicalSettings(voxel_size, unit), chosen
    )
    run = RunSettings(device=device, pad_mode=pad_mode, normalize=normalize, precision=precision)
    session = open_session(
        sources,
        tiling=TilingSettings(tile_shape=tile_shape),
        run=run,
        approximate=ApproximateSettings(allow=allow_approximate, tolerance=tolerance),
    )
    job = _tile_job(session, run, trust_model)
    return LazyPrediction(
        embeddings=lazy_output(job, session.geometry.channels_out, session.model),
        plan=session.result,
        physical=session.volume.physical,
        channel_roles=_roles(session, flag),
    )


def _roles(session: Session, flag: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The roles given (checked against the model's output channels), else the model's."""
    stored = (session.model.metadata or {}).get("channel_roles") or None
    return choose_roles(flag, stored, channels=session.geometry.channels_out).roles


def _tile_job(session: Session, run: RunSettings, trust_model: bool) -> TileJob:
    """What each block needs: the model file, the plan, the normalisation (nothing written)."""
    norm = session_normalization(session.model, session.volume, run.normalize)
    path = os.path.abspath(session.result.model_path)
    return TileJob(
        model=path,
        model_sha256=file_sha256(path),
        volume=session.volume,
        plan=session.result.plan,
        output=None,
        output_dtype="float32",
        normalization=norm.to_dict(),
        pad_mode=run.pad_mode,
        precision=run.precision,
        device=str(session.device),
        trust_model=trust_model,
    )
