"""What ``predict`` checks before it opens the model: the input and the output's state.

Loading and probing a model takes seconds to minutes; an existing output without
``--overwrite``/``--resume``, an output held by another run or an output path that is
no zarr group are known without it, so they are refused first (the options themselves
were checked when the settings were made).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import StitchsafeError
from ..io import (
    EMBEDDINGS,
    OutputLock,
    Volume,
    check_output_group,
    default_output_location,
    input_image_path,
    output_image,
    zarr_node,
)
from ..labels import LABELS_IMAGE
from ..session import Sources, check_sources
from ._location import previous_run, refuse_foreign_labels
from ._settings import PathLike, PredictSettings

__all__ = ["check_before_model", "check_output_early"]


def check_before_model(model: Any, input: PathLike, settings: PredictSettings) -> Sources:
    """The run's :class:`~stitchsafe.session.Sources`, with the input
    (:func:`stitchsafe.session.check_sources`) and the output's state
    (:func:`check_output_early`) checked before the model is opened."""
    s = settings
    sources = Sources(model, input, s.input_key, s.trust_model, s.physical, s.selection)
    early = check_sources(sources)
    try:
        check_output_early(early, settings)
    finally:
        if early is not None:
            early.close()
    return sources


def check_output_early(volume: Volume | None, settings: PredictSettings) -> None:
    """Refuse now what the run would refuse about its output after loading the model.

    ``volume`` is the input as :func:`stitchsafe.session.check_sources` opened it
    (``None``: not yet known, and without ``--output`` nothing is checked). The same
    checks run again, for real, when the output is made; none of them writes anything
    but the lock file beside the output.
    """
    located = _location(volume, settings)
    if located is None:
        return
    group, image = located
    check_output_group(group)
    if settings.embeddings:
        _refuse_existing(group, image, settings)
        raw = input_image_path(volume, group) if volume is not None else None
        if raw is not None and settings.labels:
            refuse_foreign_labels(group, raw)
    with OutputLock(group).hold():  # held by another run: refused, naming it
        pass


def _location(volume: Volume | None, settings: PredictSettings) -> tuple[str, str] | None:
    """Where the run writes (as :func:`output_location` says), ``None`` when unknown yet."""
    default = EMBEDDINGS if settings.embeddings else LABELS_IMAGE
    given = settings.output.output
    if given is not None:
        group = os.fspath(given)
        image = output_image(group, default)
    elif volume is not None:
        group, image = default_output_location(volume, default)
    else:
        return None
    return (os.path.abspath(group) if settings.remote else group), image


def _refuse_existing(group: str, image: str, settings: PredictSettings) -> None:
    """The embeddings image already there: refused without ``--overwrite``/``--resume``,
    and with ``--overwrite`` when stitchsafe did not write it (as the output's creation
    refuses it: :func:`stitchsafe.io.create_output`)."""
    if settings.output.resume:
        previous_run(group, image)  # refuses an image stitchsafe did not write
        return
    parts = [p for p in image.split("/") if p]
    image_dir = os.path.join(group, *parts)
    if not os.path.exists(image_dir):
        return
    node = zarr_node(image_dir)
    if not parts and (node is None or not {"ome", "stitchsafe"} & set(node[2])):
        return  # a plain group (or an empty folder): no image at the root yet
    name = image or "the root image"
    if not settings.output.overwrite:
        raise StitchsafeError(
            f"the output {group!r} already holds {name!r}. Pass --overwrite to replace it "
            "(or --resume to continue an interrupted run), or choose another output path. "
            "Nothing was loaded or written."
        )
    if node is None or "stitchsafe" not in node[2]:
        raise StitchsafeError(
            f"{name!r} in {group!r} was not written by stitchsafe, so --overwrite will not "
            "delete it. Choose another output path."
        )
