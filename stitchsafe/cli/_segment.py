"""``stitchsafe segment``: instance labels again from written embeddings."""

from __future__ import annotations

from typing import Any

import click

from . import _options as o
from ._report import emit


@click.command()
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(),
    help="The zarr v3 group predict wrote into (its --output).",
)
@o.OUTPUT_IMAGE
@o.label_options
@o.physical_options
@o.OVERWRITE
@o.NO_PROGRESS
@o.PYRAMID
@o.JSON
@o.SCHEDULER
def segment(**options: Any) -> None:
    """Derive instance labels from embeddings already written by predict.

    Neighbouring foreground voxels whose embeddings are closer than --threshold join one
    object; labelled block by block, the result equals labelling the whole volume at once.
    Labels go to <image>/labels/instances as an OME-Zarr image-label.
    """
    from ..labels import segment as run

    result = run(
        options["input_path"],
        image=options["image"],
        **{k: options[k] for k in o.LABEL_KEYS},
        **o.physical_keywords(options),
        overwrite=options["overwrite"],
        progress=not options["no_progress"],
        pyramid=options["pyramid"],
        scheduler=options["scheduler"],
    )
    emit(result, options["as_json"])
