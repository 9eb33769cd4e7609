"""``stitchsafe check``: prove on a crop that stitched tiles equal one whole-volume pass."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..geometry import parse_ints
from . import _input_options as i
from . import _options as o
from ._help import RUN_SECTIONS, Sectioned
from ._logging import log_options, show_progress
from ._remote_options import STORAGE_OPTION
from ._report import emit, notes


@click.command(cls=Sectioned, sections=RUN_SECTIONS)
@log_options
@o.model_options
@STORAGE_OPTION
@i.selection_options
@o.CROP
@o.PAD_MODE
@o.NORMALIZE
@o.PICTURE
@o.NO_PICTURE
def check(**options: Any) -> None:
    """Verify on a crop of the input that stitched tiles equal one whole-volume pass.

    Runs the tiled engine and one forward pass over a centred crop, and reports the largest
    and mean deviation (absolute and relative to max |output|) and where the largest is;
    the same for a naive tiling off the period lattice, for comparison. Exit status: 0 when
    the stitched output is exact (relative deviation <= 1e-4), 3 when it deviates (the
    report is still printed), 2 for bad input or a model that cannot be tiled exactly.
    With --allow-approximate: 0 when the deviation is within --tolerance, 3 when not.
    """
    from ..reports import EXIT_NOT_EXACT, check_stitching

    crop = options["crop"]
    result = check_stitching(
        options["model"],
        options["input_path"],
        **o.model_keywords(options),
        **i.selection_keywords(options),
        crop=None if crop is None else parse_ints(crop, "--crop", example="64,256,256"),
        pad_mode=options["pad_mode"],
        normalize=options["normalize"],
        picture=None if options["no_picture"] else options["picture"],
        progress=show_progress(),
    )
    notes(result.notes)
    emit(result, options["as_json"])
    failure = result.failure()
    if failure is not None:
        click.echo(f"Error: {failure}", err=True)
        sys.exit(EXIT_NOT_EXACT)
