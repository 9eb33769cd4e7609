"""``stitchsafe export``: a checkpoint as a package other tools read (bioimage.io)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from . import _options as o
from ._report import emit

FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["bioimageio"]),
    default="bioimageio",
    show_default=True,
    help="Package format: a bioimage.io model package (format 0.5, a .zip).",
)
NAME = click.option(
    "--name", default=None, help="The package's name. Default: 'stitchsafe <MODEL's name>'."
)
BUNDLED_NAMES = {"cells2d": 2, "cells3d": 3}


@click.command()
@click.argument("model", type=click.Path())
@click.argument("out", type=click.Path(dir_okay=False))
@FORMAT
@NAME
@o.OVERWRITE
@o.JSON
def export(**options: Any) -> None:
    """Export MODEL as a bioimage.io model package OUT (.zip), validated offline.

    MODEL is a stitchsafe checkpoint (what `stitchsafe train` writes) or a bundled model
    (cells2d, cells3d). The package holds TorchScript and state-dict weights, the valid
    input sizes and output offset, the whole-volume normalisation as preprocessing, test
    tensors, a cover and the stitchsafe metadata; `predict --model OUT` reads it back.
    """
    from ..models import bundled_model, export_bioimageio, load_model

    path = options["model"]
    if path in BUNDLED_NAMES and not Path(path).exists():
        path = bundled_model(BUNDLED_NAMES[path])
    result = export_bioimageio(
        load_model(path), options["out"], name=options["name"], overwrite=options["overwrite"]
    )
    emit(result, options["as_json"])
