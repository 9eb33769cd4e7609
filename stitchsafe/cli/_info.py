"""``stitchsafe info``: what an output holds and how far its run got.

It takes ``--input`` like every other command. The path as a bare argument
(``stitchsafe info OUT.zarr``), its old form, still works with a note; ``--image`` is the
old name of ``--input-key``.
"""

from __future__ import annotations

from typing import Any

import click

from . import _options as o
from . import _predicted_options as p
from ._help import RUN_SECTIONS, Sectioned
from ._remote_options import STORAGE_OPTION
from ._report import emit, warn


@click.command(
    cls=Sectioned,
    sections=RUN_SECTIONS,
    context_settings={"allow_extra_args": True},
)
@click.option("--input", "input_path", default=None, type=click.Path(), help=p.PREDICTED_HELP)
@p.OUTPUT_KEY
@STORAGE_OPTION
@o.JSON
@click.pass_context
def info(ctx: click.Context, **options: Any) -> None:
    """Describe an output written by predict: arrays, plan, model, completeness, labels.

    --input is the zarr group predict wrote into (its --output: in a container predict
    made, the root is the image), or the image group inside it.
    """
    from ..reports import read_info

    path = _input(ctx, options["input_path"])
    found = read_info(path, image=p.output_key(options))
    emit(found, options["as_json"])
    warn(found.warnings)


def _input(ctx: click.Context, given: str | None) -> str:
    """``--input``, or the path given the old way, as an argument (with a note)."""
    extra = list(ctx.args)
    if given is not None and not extra:
        return given
    if given is None and len(extra) == 1:
        click.echo(
            f"note: give the path as --input {extra[0]}; the bare path is the old form.", err=True
        )
        return extra[0]
    if given is None and not extra:
        raise click.UsageError("Missing option '--input'.", ctx)
    raise click.UsageError(f"Got unexpected extra arguments ({' '.join(extra)}).", ctx)
