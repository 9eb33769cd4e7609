"""The check's three passes over its crop: both tilings, and one whole-volume pass.

All three use ``predict``'s model, normalisation (over the whole input) and pad mode.

The crop is copied to a scratch zarr and treated as a volume of its own, so that the tiled
engine (:func:`stitchsafe.engine.run_plan`, the code ``predict`` runs) and the oracle
(:func:`stitchsafe.engine.whole_volume_forward`) pad it the same way at its borders.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
import zarr

from ..engine import Normalization, RunSettings, run_plan, whole_volume_forward
from ..geometry import ModelGeometry, Plan
from ..io import Volume, open_volume, prepare_output
from ..models import LoadedModel
from ..session import Session, session_normalization
from ._crop import CropPlans

__all__ = ["CropOutputs", "CropRunner", "run_crop"]


@dataclass(frozen=True)
class CropOutputs:
    """The ``(C, *crop)`` outputs of both tilings and of the whole-volume pass."""

    stitched: np.ndarray
    naive: np.ndarray
    whole: np.ndarray


@dataclass(frozen=True)
class CropRunner:
    """How the check runs the model: as ``predict`` would (normalisation, pad mode, device).

    Attributes
    ----------
    model, geometry
        The session's model (on ``device``) and its own geometry (what one whole-volume
        pass of it reads; in approximate mode not the tiles' wider one).
    transform
        The intensity normalisation, computed over the whole input.
    run
        The run settings (``pad_mode`` and ``progress`` are used).
    device
        Where the model runs.
    """

    model: LoadedModel
    geometry: ModelGeometry
    transform: Normalization
    run: RunSettings
    device: torch.device

    @classmethod
    def for_session(cls, session: Session, run: RunSettings) -> CropRunner:
        """The runner of ``session``, with its whole-input normalisation computed."""
        transform = session_normalization(session.model, session.volume, run.normalize)
        return cls(session.model, session.model_geometry, transform, run, session.device)

    def tiled(self, volume: Volume, plan: Plan, group: str, image: str) -> np.ndarray:
        """Run ``plan`` with the tiled engine into a scratch OME-Zarr image and read it back."""
        spec = prepare_output(
            group,
            image=image,
            shape=volume.shape,
            channels=plan.geometry.channels_out,
            chunks=plan.chunks,
            axes=tuple(f"a{i}" for i in range(plan.dims)),
            attributes={"note": "stitchsafe check scratch output"},
        )
        run_plan(
            volume,
            self.model,
            plan,
            spec,
            transform=self.transform,
            pad_mode=self.run.pad_mode,
            device=self.device,
            progress=self.run.progress,
        )
        return np.asarray(zarr.open_array(store=os.path.join(group, image, "0"), mode="r"))

    def whole(self, data: np.ndarray) -> np.ndarray:
        """One whole-volume forward pass over ``data`` (the oracle)."""
        return whole_volume_forward(
            data,
            self.model,
            self.geometry,
            pad_mode=self.run.pad_mode,
            transform=self.transform,
            device=self.device,
        )


def _tiled_outputs(
    runner: CropRunner, data: np.ndarray, plans: CropPlans, scratch: str
) -> tuple[np.ndarray, np.ndarray]:
    """The crop, copied to a scratch zarr, run through the tiled engine with both plans."""
    chunks = (data.shape[0], *(min(s, 64) for s in data.shape[1:]))
    zarr.create_array(os.path.join(scratch, "crop.zarr"), data=data, chunks=chunks)
    crop_volume = open_volume(os.path.join(scratch, "crop.zarr"), spatial_dims=plans.plan.dims)
    group = os.path.join(scratch, "out.zarr")
    try:
        stitched = runner.tiled(crop_volume, plans.plan, group, "stitched")
        naive = runner.tiled(crop_volume, plans.naive, group, "naive")
    finally:
        crop_volume.close()
    return stitched, naive


def run_crop(runner: CropRunner, volume: Volume, plans: CropPlans) -> CropOutputs:
    """Read the crop of ``volume`` and run it through both tilings and the whole pass."""
    data = volume.read(plans.box)
    with tempfile.TemporaryDirectory(prefix="stitchsafe-check-") as scratch:
        stitched, naive = _tiled_outputs(runner, data, plans, scratch)
    return CropOutputs(stitched=stitched, naive=naive, whole=runner.whole(data))
