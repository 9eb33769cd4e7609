"""Where ``predict`` writes: the output group and image, and what an earlier run left there."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import zarr

from ..errors import StitchsafeError
from ..io import (
    EMBEDDINGS,
    OutputSpec,
    default_output_location,
    fallback_note,
    inner_path,
    is_url,
    level_one_of,
    output_image,
    place_exists,
    place_isfile,
    zarr_node,
)
from ..labels import LABELS_IMAGE, LABELS_NAME
from ..session import Session
from ._settings import PredictSettings

__all__ = ["output_location", "previous_run", "refuse_foreign_labels"]


def output_location(session: Session, settings: PredictSettings) -> tuple[str, str]:
    """``--output``, or the default place (:func:`stitchsafe.io.default_output_location`);
    a note on the session's plan says so when a read-only input container moved it."""
    default = EMBEDDINGS if settings.embeddings else LABELS_IMAGE
    if settings.output.output is not None:
        group = os.fspath(settings.output.output)
        group = group.rstrip("/") if is_url(group) else group  # one spelling of a URL
        return group, output_image(group, default)
    group, image = default_output_location(session.volume, default)
    note = fallback_note(session.volume, group)
    if note is not None:
        session.result = replace(session.result, notes=(*session.result.notes, note))
    return group, image


def refuse_foreign_labels(group: str, raw: str) -> None:
    """Refuse, before anything runs, labels ``instances`` of the raw image that stitchsafe
    did not write: this run's labels go there, and they are never replaced."""
    where = os.path.join(group, *inner_path(raw, "labels", LABELS_NAME).split("/"))
    there = place_exists(where)
    node = zarr_node(where) if there else None
    if there and (node is None or "stitchsafe" not in node[2]):
        raise StitchsafeError(
            f"{where} exists and was not written by stitchsafe, and this run's labels go "
            "there (under the raw image they belong to). Nothing was written. Move it away, "
            "or write the results elsewhere with --output."
        )


def previous_run(group: str, image: str) -> tuple[OutputSpec, dict[str, Any]] | None:
    """The output image an interrupted run left at ``group/image``, with its attributes."""
    path = os.path.join(group, *image.split("/"))
    if not place_isfile(os.path.join(path, "zarr.json")):
        return None
    try:
        attrs = zarr.open_group(store=path, mode="r").attrs.asdict().get("stitchsafe")
    except Exception:  # noqa: BLE001 - unreadable: not ours to resume
        attrs = None
    if not isinstance(attrs, dict) and not image:
        return None  # a plain root group: no image there yet (its creation had just begun)
    if not isinstance(attrs, dict):
        raise StitchsafeError(
            f"{path} exists but was not written by stitchsafe; choose another --output."
        )
    spec = OutputSpec(group=group, image=image, array=inner_path(image, "0"))
    return level_one_of(spec, attrs), attrs  # its tiles go on writing level 1 if they did
