"""What a prediction is asked to do, and what it did."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..approximate import ApproximateSettings
from ..engine import RunSettings, SlurmOptions
from ..errors import StitchsafeError
from ..geometry import TilingSettings
from ..io import InputSelection, OutputSettings, PhysicalSettings
from ..labels import LabelSettings, ResultStats, nonfinite_warning, result_warnings
from ..progress import plural
from ..session import PlanResult

__all__ = ["PredictResult", "PredictSettings", "SPATIAL_AXES"]


PathLike = str | os.PathLike[str]
SPATIAL_AXES = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}


@dataclass(frozen=True)
class PredictSettings:
    """Everything a prediction needs besides the model and the input, checked once.

    ``labels``/``embeddings`` say what is written; ``cluster`` starts SLURM workers instead
    of ``run.scheduler``; ``trust_model`` lets the model file run code of its own when it is
    loaded (here and on the workers); ``physical`` (``--voxel-size``, ``--unit``) replaces
    the input's own voxel size or unit in what is written; ``selection`` (``--channel``,
    ``--timepoint``, ``--level``) says what of the input is read.
    """

    input_key: str | None = None
    tiling: TilingSettings = TilingSettings()
    run: RunSettings = RunSettings()
    output: OutputSettings = OutputSettings()
    label: LabelSettings = LabelSettings()
    approximate: ApproximateSettings = ApproximateSettings()
    cluster: SlurmOptions | None = None
    labels: bool = True
    embeddings: bool = True
    trust_model: bool = False
    physical: PhysicalSettings = PhysicalSettings()
    selection: InputSelection = InputSelection()

    def __post_init__(self) -> None:
        if not self.embeddings:
            self._check_labels_only()

    @property
    def remote(self) -> bool:
        """Whether the tiles run on dask workers rather than in this process."""
        return self.run.where.distributed or self.cluster is not None

    def _check_labels_only(self) -> None:
        """Refuse what a labels-only run cannot do, before anything is opened or written."""
        if not self.labels:
            raise StitchsafeError(
                "--no-embeddings with --no-labels would write nothing; drop one of them."
            )
        if self.remote:
            raise StitchsafeError(
                "--no-embeddings runs on --scheduler threads only (labels are computed from "
                "each tile in this process); drop --scheduler/--cluster, or write the "
                "embeddings."
            )
        if self.approximate.allow:
            raise StitchsafeError(
                "--no-embeddings is exact only: it cannot be combined with --allow-approximate."
            )
        if self.run.embeddings_dtype != "float32":
            raise StitchsafeError(
                "--embeddings-dtype has no effect with --no-embeddings (no embeddings are "
                "written; labels are computed from float32 outputs); drop it."
            )


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict` wrote and how long it took.

    ``labels`` (the label array's path inside ``output``) and ``objects`` are ``None``
    when labels were not requested. ``label_stats``: what the labels hold, counted while
    they were made; ``warnings`` says what in it looks wrong.
    """

    output: str
    embeddings: str | None
    plan: PlanResult
    tiles: int
    seconds: float
    device: str
    normalization: dict[str, Any] = field(default_factory=dict)
    labels: str | None = None
    objects: int | None = None
    label_params: dict[str, Any] | None = None
    batch_size: int = 1
    label_stats: ResultStats | None = None
    nonfinite: int | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What looks wrong in the labels (:func:`stitchsafe.labels.result_warnings`), or,
        without labels, NaN or infinite embeddings (``nonfinite``: counted in the tiles
        this process ran; ``None`` when they ran on workers)."""
        if self.label_stats is None:
            return (nonfinite_warning(self.nonfinite),) if self.nonfinite else ()
        plan = self.plan  # the advice to fine-tune names the model if train can start from it
        model = plan.model_path if plan.model_format == "stitchsafe" else None
        return result_warnings(self.label_stats, command="predict", model=model)

    def to_dict(self) -> dict[str, Any]:
        physical = self.plan.physical
        return {
            "output": self.output,
            "embeddings": self.embeddings,
            "batch_size": self.batch_size,
            "labels": self.labels,
            "objects": self.objects,
            "plan": self.plan.to_dict(),
            "approximate": self.plan.approximate,
            "tiles": self.tiles,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "normalization": self.normalization,
            "label_params": self.label_params,
            "warnings": list(self.warnings),
            # What every image written carries: voxel size, units, translation.
            "physical": None if physical is None else physical.to_dict(),
        }

    def describe(self) -> str:
        """What was written, in a line or two for the terminal."""
        p = self.plan.plan
        what = (
            f"{self.embeddings}: {plural(p.geometry.channels_out, 'channel')} x "
            if self.embeddings is not None
            else "no embeddings (labels only) for "
        )
        text = (
            f"wrote {self.output}/{what}"
            + " x ".join(map(str, p.volume_shape))
            + f", {plural(self.tiles, 'tile')} of {' x '.join(map(str, p.tile_shape))} on "
            f"{self.device} in {self.seconds:.1f} s"
        )
        if self.labels is not None:
            text += f"\nwrote {self.output}/{self.labels}: {plural(self.objects, 'object')}"
        return text
