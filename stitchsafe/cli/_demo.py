"""``stitchsafe demo``: the whole job on the built-in sample, offline."""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from . import _options as o
from ._logging import log_options, show_progress


@click.command()
@log_options
@click.option(
    "--output",
    default="stitchsafe-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the sample, the model and the outputs.",
)
@o.OVERWRITE
@o.JSON
def demo(**options: Any) -> None:
    """Run the whole job on a built-in sample with the bundled 3-D model, offline.

    Writes OME-Zarr embeddings and labels, scores the labels against the sample's ground
    truth (AP@0.5), checks exactness against one whole-volume pass, and draws pictures.
    """
    progress = show_progress()
    if progress:  # importing torch and the rest takes a while on a cold start: say so
        logging.getLogger("stitchsafe.progress").info("demo: loading torch and the models")
    from ..demo import describe_demo, run_demo

    summary = run_demo(options["output"], overwrite=options["overwrite"], progress=progress)
    click.echo(json.dumps(summary) if options["as_json"] else describe_demo(summary))
