"""The options of the commands that read what predict wrote (segment, info).

``--input`` is predict's output group and ``--input-key`` the image inside it, as every
other command names what it reads and the path inside it; ``--image``, the old name of
``--input-key``, is still understood (hidden, with a note).
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import StitchsafeError
from ._options import stack

__all__ = ["OUTPUT_KEY", "PREDICTED", "PREDICTED_HELP", "output_key"]

PREDICTED_HELP = "The zarr v3 group predict wrote into (its --output)."
PREDICTED = click.option(
    "--input", "input_path", required=True, type=click.Path(), help=PREDICTED_HELP
)
OUTPUT_KEY = stack(
    click.option(
        "--input-key",
        default=None,
        help="Path of the output image inside --input ('' for the root). Default: the image "
        "predict wrote there (the root in a container predict made, else embeddings).",
    ),
    click.option("--image", "image_alias", default=None, hidden=True, help="Old --input-key."),
)
"""``--input-key`` of segment and info (``--image`` is its old, hidden spelling)."""


def output_key(options: dict[str, Any]) -> str | None:
    """``--input-key`` of :data:`OUTPUT_KEY`, or its old spelling ``--image`` (with a note)."""
    old = options["image_alias"]
    if old is None:
        return options["input_key"]
    if options["input_key"] is not None:
        raise StitchsafeError("--image is the old name of --input-key; give only --input-key.")
    click.echo("note: --image is now called --input-key; the old name will go.", err=True)
    return old
