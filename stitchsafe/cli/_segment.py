"""``stitchsafe segment``: instance labels again from written embeddings."""

from __future__ import annotations

from typing import Any

import click

from . import _input_options as i
from . import _options as o
from ._logging import log_options, show_progress
from ._remote_options import STORAGE_OPTION
from ._report import emit


@click.command()
@log_options
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(),
    help="The zarr v3 group predict wrote into (its --output).",
)
@STORAGE_OPTION
@o.OUTPUT_IMAGE
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
    predict wrote into an OME-Zarr input's own container. --image defaults to the root
    when it is the embeddings image.
    """
    from ..labels import segment as run

    result = run(
        options["input_path"],
        image=options["image"],
        **{k: options[k] for k in o.LABEL_KEYS},
        **i.physical_keywords(options),
        overwrite=options["overwrite"],
        progress=show_progress(options["no_progress"]),
        pyramid=options["pyramid"],
        scheduler=options["scheduler"],
    )
    emit(result, options["as_json"])
