"""``stitchsafe info``: what an output holds and how far its run got."""

from __future__ import annotations

from typing import Any

import click

from . import _options as o
from ._remote_options import STORAGE_OPTION
from ._report import emit


@click.command()
@click.argument("path", type=click.Path())
@click.option(
    "--image",
    default=None,
    help="Path of the output image inside PATH ('' for the root). Default: the one image "
    "predict wrote (the root, else embeddings, when there are several).",
)
@STORAGE_OPTION
@o.JSON
def info(**options: Any) -> None:
    """Describe an output written by predict: arrays, plan, model, completeness, labels.

    PATH is the zarr group predict wrote into (its --output: in a container predict made,
    the root is the image), or the image group inside it.
    """
    from ..reports import read_info

    emit(read_info(options["path"], image=options["image"]), options["as_json"])
