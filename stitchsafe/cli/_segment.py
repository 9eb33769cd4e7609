"""``stitchsafe segment``: instance labels again from written embeddings."""

from __future__ import annotations

from typing import Any

import click

from . import _input_options as i
from . import _options as o
from . import _predicted_options as p
from ._help import RUN_SECTIONS, Sectioned
from ._logging import log_options, show_progress
from ._remote_options import STORAGE_OPTION
from ._report import emit, notes, warn


@click.command(cls=Sectioned, sections=RUN_SECTIONS)
@log_options
@p.PREDICTED
@p.OUTPUT_KEY
@STORAGE_OPTION
@o.label_options
@i.physical_options
@o.OVERWRITE
@o.NO_PROGRESS
@o.PYRAMID
@o.JSON
@o.SCHEDULER
def segment(**options: Any) -> None:
    """Derive instance labels from embeddings already written by predict.

    Neighbouring foreground voxels whose embeddings are closer than --threshold join one
    object; labelled block by block, the result equals labelling the whole volume at once.
    Labels go to labels/instances of the image they belong to, as an OME-Zarr image-label:
    under the container's root in a container predict made, under the raw image when
    predict wrote into an OME-Zarr input's own container. --input-key defaults to the root
    when it is the embeddings image.
    """
    from ..labels import segment as run

    result = run(
        options["input_path"],
        image=p.output_key(options),
        **{k: options[k] for k in o.LABEL_KEYS},
        **i.physical_keywords(options),
        overwrite=options["overwrite"],
        progress=show_progress(options["no_progress"]),
        pyramid=options["pyramid"],
        scheduler=options["scheduler"],
    )
    notes(result.notes)
    emit(result, options["as_json"])
    warn(result.warnings)
