"""The labels-only branch of ``run_predict``: labels from tiles in memory, no embeddings."""

from __future__ import annotations

import os
import time

from ..io import check_fingerprint, write_pyramid
from ..labels import LABELS_IMAGE, LabelsOnlyRun, run_labels_only
from ..session import Session
from ._settings import SPATIAL_AXES, PredictResult, PredictSettings
from ._steps import PreparedRun, pipeline_options, previous_run

__all__ = ["predict_labels_only"]


def predict_labels_only(
    session: Session, prepared: PreparedRun, settings: PredictSettings, start: float
) -> PredictResult:
    """The labels-only branch: labels from each tile in memory, no embeddings written."""
    params, label_dtype = prepared.params, settings.label.label_dtype
    # The labels depend on the labelling settings too: part of what a resume must share.
    fingerprint = {**prepared.fingerprint, "labels": params.to_dict(), "label_dtype": label_dtype}
    the_plan, group = session.result.plan, prepared.group
    previous = previous_run(group, LABELS_IMAGE) if settings.output.resume else None
    where = os.path.join(group, LABELS_IMAGE)
    result = run_labels_only(
        session.volume,
        session.model,
        the_plan,
        LabelsOnlyRun(
            group,
            params,
            {
                **prepared.attributes,
                "run": fingerprint,
                "params": params.to_dict(),
                "axes": list(SPATIAL_AXES[the_plan.dims]),
            },
            label_dtype=label_dtype,
            previous=previous,
            check_previous=lambda stored: check_fingerprint(stored.get("run"), fingerprint, where),
            overwrite=settings.output.overwrite,
            physical=session.volume.physical,
        ),
        options=pipeline_options(session, prepared, settings),
        transform=prepared.normalization,
    )
    if settings.output.pyramid:
        write_pyramid(result.spec, progress=settings.run.progress)
    return PredictResult(
        output=result.spec.group,
        embeddings=None,
        plan=session.result,
        tiles=result.tiles,
        seconds=time.perf_counter() - start,
        device=result.device,
        normalization=prepared.normalization.to_dict(),
        labels=result.spec.array,
        objects=result.objects,
        label_params=params.to_dict(),
        batch_size=prepared.batch_size,
    )
