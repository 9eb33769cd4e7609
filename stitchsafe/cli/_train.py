"""``stitchsafe train``: a stitch-safe U-Net from an image and its instance labels."""

from __future__ import annotations

import sys
from typing import Any

import click

from . import _options as o
from ._help import TRAIN_SECTIONS, Sectioned
from ._logging import log_options, show_progress
from ._report import emit


@click.command(cls=Sectioned, sections=TRAIN_SECTIONS)
@log_options
@click.option("--image", required=True, type=click.Path(), help="Training image (zarr, TIFF).")
@click.option("--labels", required=True, type=click.Path(), help="Instance labels, 0 = background.")
@click.option(
    "--image-key",
    default=None,
    help="Array path inside a zarr group for --image. Default: the image is the array itself.",
)
@click.option(
    "--labels-key",
    default=None,
    help="Array path inside a zarr group for --labels. Default: the labels are the array itself.",
)
@click.option(
    "--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write."
)
@click.option(
    "--dims",
    type=click.Choice(["2", "3"]),
    default=None,
    help="Spatial dimensions of the model. Default: the labels'.",
)
@o.DEPTH
@o.POOLING_FACTOR
@click.option(
    "--features",
    type=int,
    default=None,
    help="Feature maps at the first level. Default: 16 in 2-D, 8 in 3-D.",
)
@click.option("--embedding-dims", type=int, default=6, help="Embedding channels.")
@click.option(
    "--iterations",
    type=int,
    default=None,
    help="Optimiser steps. Default: 8000 in 2-D, 1500 in 3-D.",
)
@click.option(
    "--window",
    default=None,
    metavar="Z,Y,X",
    help="Output training window; must be larger than the period on every axis. "
    "Default: 64,64 in 2-D, 16,48,48 in 3-D.",
)
@click.option("--batch-size", type=int, default=1, show_default=True, help="Windows per step.")
@click.option(
    "--foreground-target",
    type=click.Choice(["labels", "separated"]),
    default="labels",
    show_default=True,
    help="What the foreground channel learns: every labelled voxel (labels), or every "
    "labelled voxel except where two objects touch (separated: the foreground alone then "
    "splits touching objects, which helps dense 3-D data).",
)
@click.option("--lr", type=float, default=2e-3, help="Learning rate (Adam).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@o.DEVICE
@click.option(
    "--export-pt2",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a torch.export program here. Default: none.",
)
@click.option(
    "--init",
    type=click.Path(dir_okay=False),
    default=None,
    help="Start from this stitchsafe checkpoint's weights (continue or fine-tune; same "
    "architecture flags). Default: random weights (seeded by --seed).",
)
@o.OVERWRITE
@o.NO_PROGRESS
@o.JSON
def train(**options: Any) -> None:
    """Train the built-in valid-conv U-Net (discriminative loss + foreground) to stitch exactly.

    Enforces the paper's rule: the output window must be larger than the period on every
    axis. The checkpoint carries full metadata, so `predict` needs no extra flags.
    """
    from ..training import train as run

    optional = {k: options[k] for k in ("embedding_dims", "iterations", "lr")}
    dims = options["dims"]
    result = run(
        options["image"],
        options["labels"],
        output=options["output"],
        image_key=options["image_key"],
        labels_key=options["labels_key"],
        dims=None if dims is None else int(dims),
        depth=options["depth"],
        pooling_factors=o.parse_pooling(options["pooling_factor"]),
        features=options["features"],
        window=o.parse_shape(options["window"], "--window"),
        batch_size=options["batch_size"],
        foreground_target=options["foreground_target"],
        seed=options["seed"],
        device=options["device"],
        export_pt2=options["export_pt2"],
        init=options["init"],
        overwrite=options["overwrite"],
        progress=show_progress(options["no_progress"]),
        command=" ".join(["stitchsafe", *sys.argv[1:]]),
        **{k: v for k, v in optional.items() if v is not None},
    )
    emit(result, options["as_json"])
