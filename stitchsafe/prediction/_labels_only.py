"""The labels-only branch of ``run_predict``: labels from tiles in memory, no embeddings."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from ..errors import StitchsafeError
from ..io import OutputSpec, check_fingerprint, input_image_path, place_isfile, write_pyramid
from ..labels import LABELS_IMAGE, LabelPlace, LabelsOnlyRun, run_labels_only
from ..session import Session
from ._location import previous_run, refuse_foreign_labels
from ._settings import SPATIAL_AXES, PredictResult, PredictSettings
from ._steps import PreparedRun, pipeline_options

__all__ = ["predict_labels_only"]


def predict_labels_only(
    session: Session, prepared: PreparedRun, settings: PredictSettings, start: float
) -> PredictResult:
    """The labels-only branch: labels from each tile in memory, no embeddings written."""
    params, label_dtype = prepared.params, settings.label.label_dtype
    # The labels depend on the labelling settings too: part of what a resume must share.
    fingerprint = {**prepared.fingerprint, "labels": params.to_dict(), "label_dtype": label_dtype}
    the_plan, group = session.result.plan, prepared.group
    home, previous = _home_and_previous(session, prepared, settings)
    image = prepared.image if home is None else LabelPlace(group, home, LABELS_IMAGE).final
    where = os.path.join(group, image) if image else group
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
            image=prepared.image,
            home=home,
            pyramid=settings.output.pyramid,
        ),
        options=pipeline_options(session, prepared, settings),
        transform=prepared.normalization,
    )
    if settings.output.pyramid:
        # Finishes an interrupted pass; with a home, the levels were written before the swap.
        write_pyramid(result.spec, progress=settings.run.progress, like=home)
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
        label_stats=result.labels.content,
    )


def _home_and_previous(
    session: Session, prepared: PreparedRun, settings: PredictSettings
) -> tuple[str | None, tuple[OutputSpec, dict[str, Any]] | None]:
    """The raw image the labels belong to (``None``: they stand alone at
    ``prepared.image``), and what an earlier run left to resume.

    An OME-Zarr input in its own container gets its labels under the raw image, unless a
    run of an earlier version left its labels-only ``instances`` beside it to resume
    (that keeps its layout). Foreign labels ``instances`` of the raw image are refused
    before anything runs; a resume continues the label image being built in the
    bookkeeping folder, or finds the complete one in place.
    """
    group, resume = prepared.group, settings.output.resume
    raw = input_image_path(session.volume, group)
    try:
        legacy = previous_run(group, prepared.image) if resume else None
    except StitchsafeError:
        if raw is None:
            raise
        legacy = None  # not ours, and not where this run's labels go
    if raw is None or legacy is not None:
        return None, legacy
    refuse_foreign_labels(group, raw)
    if not resume:
        return raw, None
    place = LabelPlace(group, raw, LABELS_IMAGE)
    for image in (place.building, place.final):
        if place_isfile(os.path.join(group, *image.split("/"), "zarr.json")):
            with contextlib.suppress(StitchsafeError):  # half made: built anew
                found = previous_run(group, image)
                if found is not None:
                    return raw, found
    return raw, None
