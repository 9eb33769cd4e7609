"""``stitchsafe plan``: the exact tiling, nothing run."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ._help import RUN_SECTIONS, Sectioned
from ._input_options import (
    physical_keywords,
    physical_options,
    selection_keywords,
    selection_options,
)
from ._logging import log_options, show_progress
from ._options import model_keywords, model_options
from ._remote_options import STORAGE_OPTION
from ._report import notes


@click.command(cls=Sectioned, sections=RUN_SECTIONS)
@log_options
@model_options
@STORAGE_OPTION
@selection_options
@physical_options
def plan(**options: Any) -> None:
    """Print the exact tiling of an input for a model, without running it."""
    from ..reports import describe_plan
    from ..session import plan as make_plan

    start = time.perf_counter()
    show_progress()  # probing and the halo search show progress (not with --quiet)
    result = make_plan(
        options["model"],
        options["input_path"],
        **model_keywords(options),
        **physical_keywords(options),
        **selection_keywords(options),
    )
    notes(result.notes)
    d = result.to_dict()
    if options["as_json"]:
        payload = {
            "plan": d,
            "tiles": d["tiles"],
            "physical": d["physical"],
            "seconds": round(time.perf_counter() - start, 3),
        }
        click.echo(json.dumps(payload))
    else:
        click.echo(describe_plan(d))
