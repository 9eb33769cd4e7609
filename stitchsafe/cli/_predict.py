"""``stitchsafe predict``: the model over the input, tile by tile, then the labels."""

from __future__ import annotations

from typing import Any

import click

from . import _input_options as i
from . import _options as o
from ._help import RUN_SECTIONS, Sectioned
from ._logging import log_options, show_progress
from ._remote_options import STORAGE_OPTION
from ._report import BadInput, emit, notes, warn


@click.command(cls=Sectioned, sections=RUN_SECTIONS)
@log_options
@o.model_options
@STORAGE_OPTION
@i.selection_options
@i.physical_options
@o.OUTPUT_GROUP
@o.BATCH_SIZE
@o.PRECISION
@o.RESUME
@o.EMBEDDINGS_DTYPE
@o.PAD_MODE
@o.NORMALIZE
@o.OVERWRITE
@o.NO_PROGRESS
@o.PYRAMID
@o.NO_LABELS
@o.NO_EMBEDDINGS
@o.label_options
@o.cluster_options
def predict(**options: Any) -> None:
    """Run a model over an input tile by tile, identical to one whole-volume pass.

    Instance labels are derived from the embeddings afterwards (see ``segment``) unless
    --no-labels is given; --no-embeddings writes the same labels without the embeddings.
    With --scheduler or --cluster the tiles and label blocks run on dask workers; the
    output is the same.
    """
    from ..prediction import predict as run

    slurm = slurm_options(options)
    if options["print_job_script"]:
        if slurm is None:
            raise BadInput("--print-job-script shows the script of --cluster slurm; add it.")
        from ..engine import job_script

        click.echo(job_script(slurm), nl=False)
        return
    result = run(
        options["model"],
        options["input_path"],
        **o.model_keywords(options),
        **i.physical_keywords(options),
        **i.selection_keywords(options),
        **{k: options[k] for k in o.LABEL_KEYS},
        output=options["output"],
        batch_size=o.parse_batch_size(options["batch_size"]),
        precision=options["precision"],
        embeddings_dtype=options["embeddings_dtype"],
        resume=options["resume"],
        pad_mode=options["pad_mode"],
        normalize=options["normalize"],
        overwrite=options["overwrite"],
        progress=show_progress(options["no_progress"]),
        pyramid=options["pyramid"],
        labels=not options["no_labels"],
        embeddings=not options["no_embeddings"],
        scheduler=options["scheduler"],
        cluster=slurm,
    )
    notes(result.plan.notes)
    emit(result, options["as_json"])
    warn(result.warnings)


def slurm_options(options: dict[str, Any]) -> Any:
    """``SlurmOptions`` for ``--cluster slurm``, ``None`` without it."""
    if options["cluster"] is None:
        return None
    if options["scheduler"] != "threads":
        raise BadInput("--cluster slurm starts its own scheduler; drop --scheduler.")
    from ..engine import SlurmOptions, load_cluster_config

    return SlurmOptions(
        jobs=options["cluster_jobs"],
        gpus=options["cluster_gpus"],
        cores=options["cluster_cores"],
        memory=options["cluster_memory"],
        walltime=options["cluster_walltime"],
        queue=options["cluster_queue"],
        extra=load_cluster_config(options["cluster_config"]),
    )
