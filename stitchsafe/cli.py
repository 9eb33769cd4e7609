"""The ``stitchsafe`` command line: parse, call one library function, report.

Exit codes: 0 success; 2 bad usage or bad input (one-paragraph message, no traceback);
3 ``check`` found a stitched result that is not exact; 1 unexpected failure. Heavy
imports (torch, dask, zarr) happen inside commands so that ``stitchsafe --help`` answers
instantly. JSON goes to stdout, progress to stderr.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .errors import StitchsafeError
from .geometry import parse_ints

# Disk full, quota, read-only or permission problems: the user's to fix, not a bug.
_STORAGE_ERRORS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
}


class BadInput(click.ClickException):
    """Bad usage or input: printed as ``Error: ...`` and exit code 2."""

    exit_code = 2


class Group(click.Group):
    """Maps :class:`StitchsafeError` from any command to exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StitchsafeError as exc:
            raise BadInput(" ".join(str(exc).split())) from None
        except OSError as exc:
            if exc.errno not in _STORAGE_ERRORS:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            raise BadInput(
                f"writing failed: {exc.strerror or exc}{where}. Nothing already finished is "
                "lost: free space or fix the permissions, then rerun the same command with "
                "--resume (predict) to continue where it stopped."
            ) from None


def _parse_pooling(values: tuple[str, ...]) -> Any:
    """``('2',)`` -> ``2``; ``('1,2,2', '2,2,2')`` -> ``[(1, 2, 2), (2, 2, 2)]``."""
    if not values:
        return None
    levels = [parse_ints(v, "--pooling-factor", example="2 or 1,2,2") for v in values]
    if len(levels) == 1 and len(levels[0]) == 1:
        return levels[0][0]
    return [level[0] if len(level) == 1 else level for level in levels]


def _tile_shape(text: str | None) -> tuple[int, ...] | int | None:
    if text is None:
        return None
    values = parse_ints(text, "--tile-shape")
    return values[0] if len(values) == 1 else values


def _batch_size(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise BadInput(f"--batch-size must be a whole number >= 1 or 'auto', got {text!r}.")
    return value


def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that plans tiles."""
    options = [
        click.option(
            "--model",
            "model",
            default=None,
            type=click.Path(),
            help="Model: torch.export program (.pt2), TorchScript, stitchsafe checkpoint, "
            "or a bioimage.io model package (zip or folder). Default: the bundled model for "
            "the input's dimensionality (2-D or 3-D nuclei-like cells).",
        ),
        click.option(
            "--input",
            "input_path",
            required=True,
            type=click.Path(),
            help="Input volume: zarr array or group, OME-Zarr image, or TIFF/BigTIFF.",
        ),
        click.option(
            "--input-key", default=None, help="Array path inside a zarr group given as --input."
        ),
        click.option(
            "--tile-shape",
            default=None,
            metavar="Z,Y,X",
            help="Output voxels kept per tile (multiple of the period), e.g. 32,128,128 or 64. "
            "Default: the largest tile that fits the device memory budget.",
        ),
        click.option(
            "--pooling-factor",
            multiple=True,
            metavar="F",
            help="Pooling factor for models without metadata: one value (with --depth), or one "
            "per level, per axis, e.g. --pooling-factor 1,2,2 --pooling-factor 2,2,2.",
        ),
        click.option("--depth", type=int, default=None, help="Number of pooling levels."),
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="auto, cpu, cuda or cuda:N.",
        ),
        click.option(
            "--allow-approximate",
            is_flag=True,
            help="Tile a model that cannot be stitched exactly (same-padded convolutions) "
            "anyway: tiles stay on the period lattice and the halo is measured so that they "
            "deviate from one whole-volume pass by at most --tolerance. Said on stderr, in "
            "--json and in the output's metadata.",
        ),
        click.option(
            "--tolerance",
            type=float,
            default=None,
            metavar="T",
            help="With --allow-approximate: the largest deviation from one whole-volume pass "
            "allowed, relative to max |output| on the probes.  [default: 1e-3]",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def label_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that writes instance labels."""
    options = [
        click.option(
            "--threshold",
            type=float,
            default=None,
            help="Embedding distance below which neighbouring foreground voxels join one "
            "object (> 0). Default: the model's metadata (labels.threshold, else the "
            "discriminative loss's delta_d), else 1.5.",
        ),
        click.option(
            "--min-size",
            type=int,
            default=None,
            help="Objects with fewer voxels become background (>= 0). Default: the model's "
            "metadata, else 0.",
        ),
        click.option(
            "--foreground-threshold",
            type=float,
            default=None,
            help="Foreground probability cut in (0, 1) for the model's foreground channel. "
            "Default: the model's metadata, else 0.5. Without a foreground channel every "
            "voxel is foreground.",
        ),
        click.option(
            "--seed-threshold",
            type=float,
            default=None,
            help="Link only seed voxels: those whose embedding differs from every foreground "
            "neighbour's by less than this (> 0); objects then grow into the rest of the "
            "foreground (--grow). Robust to blurred borders. Default: the model's metadata "
            "(models trained by stitchsafe set it), else off.",
        ),
        click.option(
            "--seed-foreground-threshold",
            type=float,
            default=None,
            help="Seeds also need a foreground probability above this, in (0, 1). "
            "Default: the model's metadata, else 0.9.",
        ),
        click.option(
            "--grow",
            type=int,
            default=None,
            help="Steps (voxels) the seeded objects grow into the foreground (>= 0). "
            "Default: the model's metadata, else 0.",
        ),
        click.option(
            "--label-dtype",
            type=click.Choice(["uint32", "uint64"]),
            default="uint32",
            show_default=True,
            help="Label type; more objects than it holds is an error, never a wrap-around.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


_SCHEDULER_HELP = (
    "Where the work runs: threads (this process), processes[:N] (worker processes here), "
    "local[:N] (a dask LocalCluster of N workers on 127.0.0.1; default N: one per GPU, else "
    "half the cores) or tcp://host:port (a running dask scheduler). Workers load the model "
    "from its path; model and data must be on a file system they share."
)


def cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--scheduler`` and the ``--cluster slurm`` options of predict."""
    options = [
        click.option("--scheduler", default="threads", show_default=True, help=_SCHEDULER_HELP),
        click.option(
            "--cluster",
            type=click.Choice(["slurm"]),
            default=None,
            help="Start dask workers as SLURM batch jobs (dask-jobqueue) for this run; they "
            "are cancelled when it ends. Replaces --scheduler.",
        ),
        click.option("--cluster-jobs", default=1, show_default=True, type=int, help="SLURM jobs."),
        click.option(
            "--cluster-gpus",
            default=1,
            show_default=True,
            type=int,
            help="GPUs per job (--gres=gpu:N), one worker each; 0 for CPU jobs.",
        ),
        click.option(
            "--cluster-cores", default=8, show_default=True, type=int, help="CPUs per job."
        ),
        click.option("--cluster-memory", default="32GB", show_default=True, help="Memory per job."),
        click.option(
            "--cluster-walltime",
            default="04:00:00",
            show_default=True,
            help="Time limit per job (--resume continues after it).",
        ),
        click.option("--cluster-queue", default=None, help="SLURM partition (-p)."),
        click.option(
            "--cluster-config",
            default=None,
            type=click.Path(dir_okay=False),
            help="YAML/JSON file of further dask_jobqueue.SLURMCluster options (interface, "
            "job_script_prologue, account, log_directory...).",
        ),
        click.option(
            "--print-job-script",
            is_flag=True,
            help="With --cluster slurm: print the batch script each job would run, and stop.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _slurm_options(
    cluster: str | None,
    jobs: int,
    gpus: int,
    cores: int,
    memory: str,
    walltime: str,
    queue: str | None,
    config: str | None,
    scheduler: str,
) -> Any:
    """``SlurmOptions`` for ``--cluster slurm``, ``None`` without it."""
    if cluster is None:
        return None
    if scheduler != "threads":
        raise BadInput("--cluster slurm starts its own scheduler; drop --scheduler.")
    from .slurm import SlurmOptions, load_cluster_config

    return SlurmOptions(
        jobs=jobs,
        gpus=gpus,
        cores=cores,
        memory=memory,
        walltime=walltime,
        queue=queue,
        extra=load_cluster_config(config),
    )


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stitchsafe")
def cli() -> None:
    """Exact tile-and-stitch CNN inference for large 2-D and 3-D images.

    stitchsafe derives, from a network's pooling factors and depth, tiles whose stitched
    output is identical to one whole-volume forward pass, runs them in batches, and writes
    OME-Zarr outputs that napari opens.
    """


def _describe_plan(d: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return " x ".join(str(x) for x in v) if isinstance(v, list) else str(v)

    rows = [
        (
            "model",
            f"{d['model']['path']} ({d['model']['format']}, geometry from {d['geometry_source']})",
        ),
        ("volume", f"{fmt(d['volume_shape'])}, {d['input']['channels']} channel(s)"),
        ("period", fmt(d["period"])),
        ("halo (lo, hi)", ", ".join(f"({lo}, {hi})" for lo, hi in d["halo"])),
        ("remainder r", f"{fmt(d['remainder'])} (cropped, never stitched)"),
        (
            "valid input sizes",
            ", ".join(
                f"{m} + k*{s}" for m, s in zip(d["valid_input"]["min"], d["valid_input"]["step"])
            ),
        ),
        ("tile write box", fmt(d["tile_shape"])),
        ("tile read box", fmt(d["read_shape"])),
        ("raw tile output", fmt(d["raw_output_shape"])),
        ("tiles", f"{d['tiles']} ({fmt(d['grid_shape'])})"),
        ("padded shape", fmt(d["padded_shape"])),
        ("halo overhead", f"{d['halo_overhead']:.2f} input voxels read per output voxel"),
        (
            "distinguishable",
            f"at most {d['distinguishable_objects']} same-looking objects (prod(period))",
        ),
        (
            "training rule",
            "output window must be larger than " + fmt(d["period"]) + " on every axis",
        ),
    ]
    a = d.get("approximate")
    if a is not None:
        rows.insert(
            0,
            (
                "APPROXIMATE",
                f"deviation {a['measured_deviation']:.1e} of max |output| on the probes, "
                f"--tolerance {a['tolerance']:.0e} (--allow-approximate; {a['reason']})",
            ),
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _notes(notes: tuple[str, ...] | list[str]) -> None:
    for note in notes:
        click.echo(f"note: {note}", err=True)


@cli.command()
@model_options
def plan(
    model: str | None,
    input_path: str,
    input_key: str | None,
    tile_shape: str | None,
    pooling_factor: tuple[str, ...],
    depth: int | None,
    device: str,
    as_json: bool,
    allow_approximate: bool,
    tolerance: float | None,
) -> None:
    """Print the exact tiling of an input for a model, without running it."""
    import time

    from . import api

    start = time.perf_counter()
    result = api.plan(
        model,
        input_path,
        input_key=input_key,
        tile_shape=_tile_shape(tile_shape),
        pooling_factors=_parse_pooling(pooling_factor),
        depth=depth,
        device=device,
        allow_approximate=allow_approximate,
        tolerance=tolerance,
    )
    _notes(result.notes)
    d = result.to_dict()
    if as_json:
        payload = {"plan": d, "tiles": d["tiles"], "seconds": round(time.perf_counter() - start, 3)}
        click.echo(json.dumps(payload))
    else:
        click.echo(_describe_plan(d))


@cli.command()
@model_options
@click.option(
    "--output",
    default=None,
    type=click.Path(),
    help="Zarr v3 group to write into. Default: the input's zarr v3 container, or "
    "<input>.stitchsafe.zarr beside a TIFF or bare array.",
)
@click.option(
    "--batch-size",
    default="1",
    show_default=True,
    metavar="N|auto",
    help="Tiles per forward pass; auto: as many as fit half of the free GPU memory "
    "(1 on the CPU, where each core runs its own tile).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    show_default=True,
    help="Forward precision. fp32 is exact; bf16/fp16 (autocast) are faster on GPUs but "
    "stitched results then differ from a whole-volume pass by about 1e-2.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run into the same output: only unfinished tiles are "
    "computed. Refused if the plan, the model file or the settings changed.",
)
@click.option(
    "--embeddings-dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Type of the written embeddings; float16 halves disk use and write time.",
)
@click.option(
    "--pad-mode",
    type=click.Choice(["reflect", "constant", "edge"]),
    default="reflect",
    show_default=True,
    help="numpy.pad mode applied to the whole volume at its borders.",
)
@click.option(
    "--normalize",
    type=click.Choice(["none", "percentile", "zscore"]),
    default=None,
    help="Intensity normalisation, computed once over the whole volume. Default: from the "
    "model's metadata, else percentile (1, 99.8).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--no-labels", is_flag=True, help="Write embeddings only, no instance labels.")
@click.option(
    "--no-embeddings",
    is_flag=True,
    help="Labels only: label each tile while it is in memory and never write the "
    "embeddings (much less to write). The labels, in OUTPUT/instances, are identical to a "
    "full run's. --scheduler threads only.",
)
@label_options
@cluster_options
def predict(
    model: str | None,
    input_path: str,
    input_key: str | None,
    tile_shape: str | None,
    pooling_factor: tuple[str, ...],
    depth: int | None,
    device: str,
    as_json: bool,
    allow_approximate: bool,
    tolerance: float | None,
    output: str | None,
    batch_size: str,
    precision: str,
    resume: bool,
    embeddings_dtype: str,
    pad_mode: str,
    normalize: str | None,
    overwrite: bool,
    no_progress: bool,
    no_labels: bool,
    no_embeddings: bool,
    threshold: float | None,
    min_size: int | None,
    foreground_threshold: float | None,
    seed_threshold: float | None,
    seed_foreground_threshold: float | None,
    grow: int | None,
    label_dtype: str,
    scheduler: str,
    cluster: str | None,
    cluster_jobs: int,
    cluster_gpus: int,
    cluster_cores: int,
    cluster_memory: str,
    cluster_walltime: str,
    cluster_queue: str | None,
    cluster_config: str | None,
    print_job_script: bool,
) -> None:
    """Run a model over an input tile by tile, identical to one whole-volume pass.

    Instance labels are derived from the embeddings afterwards (see ``segment``) unless
    --no-labels is given; --no-embeddings writes the same labels without the embeddings.
    With --scheduler or --cluster the tiles and label blocks run on dask workers; the
    output is the same.
    """
    from . import api

    slurm = _slurm_options(
        cluster,
        cluster_jobs,
        cluster_gpus,
        cluster_cores,
        cluster_memory,
        cluster_walltime,
        cluster_queue,
        cluster_config,
        scheduler,
    )
    if print_job_script:
        if slurm is None:
            raise BadInput("--print-job-script shows the script of --cluster slurm; add it.")
        from .slurm import job_script

        click.echo(job_script(slurm), nl=False)
        return
    result = api.predict(
        model,
        input_path,
        output=output,
        input_key=input_key,
        tile_shape=_tile_shape(tile_shape),
        pooling_factors=_parse_pooling(pooling_factor),
        depth=depth,
        batch_size=_batch_size(batch_size),
        device=device,
        precision=precision,
        embeddings_dtype=embeddings_dtype,
        resume=resume,
        pad_mode=pad_mode,
        normalize=normalize,
        overwrite=overwrite,
        progress=not no_progress,
        labels=not no_labels,
        threshold=threshold,
        min_size=min_size,
        foreground_threshold=foreground_threshold,
        seed_threshold=seed_threshold,
        seed_foreground_threshold=seed_foreground_threshold,
        grow=grow,
        label_dtype=label_dtype,
        scheduler=scheduler,
        cluster=slurm,
        allow_approximate=allow_approximate,
        tolerance=tolerance,
        embeddings=not no_embeddings,
    )
    _notes(result.plan.notes)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        p = result.plan.plan
        what = (
            f"{result.embeddings}: {p.geometry.channels_out} channels x "
            if result.embeddings is not None
            else "no embeddings (labels only) for "
        )
        click.echo(
            f"wrote {result.output}/{what}"
            + " x ".join(map(str, p.volume_shape))
            + f", {result.tiles} tiles of {' x '.join(map(str, p.tile_shape))} on "
            f"{result.device} in {result.seconds:.1f} s"
        )
        if result.labels is not None:
            click.echo(f"wrote {result.output}/{result.labels}: {result.objects} objects")


@cli.command()
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(),
    help="The zarr v3 group predict wrote into (its --output).",
)
@click.option(
    "--image",
    default="embeddings",
    show_default=True,
    help="Path of the embeddings image inside --input.",
)
@label_options
@click.option("--overwrite", is_flag=True, help="Replace existing labels.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option(
    "--scheduler",
    default="threads",
    show_default=True,
    help="threads, local[:N] or tcp://host:port: where the blocks are labelled.",
)
def segment(
    input_path: str,
    image: str,
    threshold: float | None,
    min_size: int | None,
    foreground_threshold: float | None,
    seed_threshold: float | None,
    seed_foreground_threshold: float | None,
    grow: int | None,
    label_dtype: str,
    overwrite: bool,
    no_progress: bool,
    as_json: bool,
    scheduler: str,
) -> None:
    """Derive instance labels from embeddings already written by predict.

    Neighbouring foreground voxels whose embeddings are closer than --threshold join one
    object; labelled block by block, the result equals labelling the whole volume at once.
    Labels go to <image>/labels/instances as an OME-Zarr image-label.
    """
    from . import api

    result = api.segment(
        input_path,
        image=image,
        threshold=threshold,
        min_size=min_size,
        foreground_threshold=foreground_threshold,
        seed_threshold=seed_threshold,
        seed_foreground_threshold=seed_foreground_threshold,
        grow=grow,
        label_dtype=label_dtype,
        overwrite=overwrite,
        progress=not no_progress,
        scheduler=scheduler,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(
            f"wrote {result.output}/{result.labels}: {result.objects} objects from "
            f"{result.blocks} blocks in {result.seconds:.1f} s"
        )


@cli.command()
@click.option(
    "--output",
    default="stitchsafe-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the sample, the model and the outputs.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing demo folder's outputs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def demo(output: str, overwrite: bool, as_json: bool) -> None:
    """Run the whole job on a built-in sample with the bundled 3-D model, offline.

    Writes OME-Zarr embeddings and labels, scores the labels against the sample's ground
    truth (AP@0.5), checks exactness against one whole-volume pass, and draws pictures.
    """
    from .demo import run_demo

    summary = run_demo(output, overwrite=overwrite, progress=sys.stderr.isatty())
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"stitchsafe demo: {summary['tiles']} tiles of {summary['tile_shape']} over a "
            f"{summary['volume_shape']} sample in {summary['seconds']:.1f} s "
            f"(bundled 3-D model)\n"
            f"  objects found: {summary['objects']} (ground truth {summary['true_objects']}); "
            f"AP@0.5 = {summary['ap50']:.3f}\n"
            f"  embeddings: {summary['output']}/{summary['embeddings']}\n"
            f"  labels:     {summary['output']}/{summary['labels']}\n"
            f"  max |stitched - whole-volume| = {summary['max_abs_deviation']:.3g} "
            f"(relative {summary['relative_deviation']:.3g}; exact: {summary['exact']})\n"
            f"  naive tiling (tiles off the period lattice): relative deviation "
            f"{summary['naive_relative_deviation']:.3g}\n"
            f"  pictures: {', '.join(summary['pictures'])}"
        )


@cli.command()
@click.option("--image", required=True, type=click.Path(), help="Training image (zarr, TIFF).")
@click.option("--labels", required=True, type=click.Path(), help="Instance labels, 0 = background.")
@click.option("--image-key", default=None, help="Array path inside a zarr group for --image.")
@click.option("--labels-key", default=None, help="Array path inside a zarr group for --labels.")
@click.option(
    "--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write."
)
@click.option("--dims", type=click.Choice(["2", "3"]), default=None, help="Default: the labels'.")
@click.option("--depth", type=int, default=None, help="U-Net levels.")
@click.option(
    "--pooling-factor",
    multiple=True,
    metavar="F",
    help="Per level, per axis, e.g. --pooling-factor 1,2,2 --pooling-factor 2,2,2.",
)
@click.option("--features", type=int, default=None, help="Feature maps at the first level.")
@click.option("--embedding-dims", type=int, default=None, help="Embedding channels.")
@click.option("--iterations", type=int, default=None, help="Optimiser steps.")
@click.option(
    "--window",
    default=None,
    metavar="Z,Y,X",
    help="Output training window; must be larger than the period on every axis.",
)
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option(
    "--foreground-target",
    type=click.Choice(["labels", "separated"]),
    default="labels",
    show_default=True,
    help="What the foreground channel learns: every labelled voxel (labels), or every "
    "labelled voxel except where two objects touch (separated: the foreground alone then "
    "splits touching objects, which helps dense 3-D data).",
)
@click.option("--lr", type=float, default=None, help="Learning rate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--export-pt2",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a torch.export program here.",
)
@click.option(
    "--init",
    type=click.Path(dir_okay=False),
    default=None,
    help="Start from this stitchsafe checkpoint's weights (continue or fine-tune; same "
    "architecture flags).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def train(
    image: str,
    labels: str,
    image_key: str | None,
    labels_key: str | None,
    output: str,
    dims: str | None,
    depth: int | None,
    pooling_factor: tuple[str, ...],
    features: int | None,
    embedding_dims: int | None,
    iterations: int | None,
    window: str | None,
    batch_size: int,
    foreground_target: str,
    lr: float | None,
    seed: int,
    device: str,
    export_pt2: str | None,
    init: str | None,
    overwrite: bool,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Train the built-in valid-conv U-Net (discriminative loss + foreground) to stitch exactly.

    Enforces the paper's rule: the output window must be larger than the period on every
    axis. The checkpoint carries full metadata, so `predict` needs no extra flags.
    """
    from . import train as training

    optional: dict[str, Any] = {
        "embedding_dims": embedding_dims,
        "iterations": iterations,
        "lr": lr,
    }
    result = training.train(
        image,
        labels,
        output=output,
        image_key=image_key,
        labels_key=labels_key,
        dims=None if dims is None else int(dims),
        depth=depth,
        pooling_factors=_parse_pooling(pooling_factor),
        features=features,
        window=_tile_shape(window),
        batch_size=batch_size,
        foreground_target=foreground_target,
        seed=seed,
        device=device,
        export_pt2=export_pt2,
        init=init,
        overwrite=overwrite,
        progress=not no_progress,
        command=" ".join(["stitchsafe", *sys.argv[1:]]),
        **{k: v for k, v in optional.items() if v is not None},
    )
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(
            f"wrote {result.output} ({result.iterations} iterations in {result.seconds:.0f} s "
            f"on {result.device}, final loss {result.final_loss:.3g}; log {result.log})"
        )


@cli.command()
@model_options
@click.option(
    "--crop",
    default=None,
    metavar="Z,Y,X",
    help="Shape of the centred crop checked, e.g. 64,256,256 or 128 (clipped to the volume). "
    "Default: the whole volume when its forward pass reads at most 2**22 input voxels, else "
    "the largest centred crop that does.",
)
@click.option(
    "--pad-mode",
    type=click.Choice(["reflect", "constant", "edge"]),
    default="reflect",
    show_default=True,
    help="numpy.pad mode at the crop's borders (as predict).",
)
@click.option(
    "--normalize",
    type=click.Choice(["none", "percentile", "zscore"]),
    default=None,
    help="Intensity normalisation, computed over the whole input (as predict).",
)
@click.option(
    "--picture",
    default="stitchsafe-check.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="PNG with |tiled - whole| maps of both tilings side by side.",
)
@click.option("--no-picture", is_flag=True, help="Write no PNG.")
def check(
    model: str | None,
    input_path: str,
    input_key: str | None,
    tile_shape: str | None,
    pooling_factor: tuple[str, ...],
    depth: int | None,
    device: str,
    as_json: bool,
    allow_approximate: bool,
    tolerance: float | None,
    crop: str | None,
    pad_mode: str,
    normalize: str | None,
    picture: str,
    no_picture: bool,
) -> None:
    """Verify on a crop of the input that stitched tiles equal one whole-volume pass.

    Runs the tiled engine and one forward pass over a centred crop, and reports the largest
    and mean deviation (absolute and relative to max |output|) and where the largest is;
    the same for a naive tiling off the period lattice, for comparison. Exit status: 0 when
    the stitched output is exact (relative deviation <= 1e-4), 3 when it deviates (the
    report is still printed), 2 for bad input or a model that cannot be tiled exactly.
    With --allow-approximate: 0 when the deviation is within --tolerance, 3 when not.
    """
    from .check import EXIT_NOT_EXACT, check_stitching

    result = check_stitching(
        model,
        input_path,
        input_key=input_key,
        crop=None if crop is None else parse_ints(crop, "--crop", example="64,256,256"),
        tile_shape=_tile_shape(tile_shape),
        pooling_factors=_parse_pooling(pooling_factor),
        depth=depth,
        device=device,
        pad_mode=pad_mode,
        normalize=normalize,
        picture=None if no_picture else picture,
        progress=sys.stderr.isatty(),
        allow_approximate=allow_approximate,
        tolerance=tolerance,
    )
    _notes(result.notes)
    click.echo(json.dumps(result.to_dict()) if as_json else result.describe())
    if result.approximate is not None and not result.within_tolerance:
        d = result.stitched
        click.echo(
            f"Error: approximate mode: the stitched output deviates from one whole-volume "
            f"pass by {d.relative:.2g} of max |output| on this crop, above --tolerance "
            f"{result.rtol:.0e} (the probes measured {result.approximate['measured_deviation']:.2g}"
            f"), largest at voxel {d.voxel}, channel {d.channel}: this data is harder than "
            "the probes. A smaller --tolerance measures a larger halo; check again with it.",
            err=True,
        )
        sys.exit(EXIT_NOT_EXACT)
    if result.approximate is None and not result.exact:
        d = result.stitched
        click.echo(
            f"Error: the stitched output deviates from one whole-volume pass by "
            f"{d.relative:.2g} of max |output| (tolerance {result.rtol:.0e}), largest at "
            f"voxel {d.voxel}, channel {d.channel}. Tiled predictions of this model are not "
            "exact: its output depends on more than its period and halo (input size, "
            "nondeterministic kernels, reduced precision); compare predict's output with "
            "care.",
            err=True,
        )
        sys.exit(EXIT_NOT_EXACT)


@cli.command()
@click.argument("path", type=click.Path())
@click.option(
    "--image",
    default=None,
    help="Path of the output image inside PATH. Default: the one image predict wrote "
    "(embeddings when there are several).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info(path: str, image: str | None, as_json: bool) -> None:
    """Describe an output written by predict: arrays, plan, model, completeness, labels.

    PATH is the zarr group predict wrote into (its --output), or the image group inside it.
    """
    from .info import read_info

    result = read_info(path, image=image)
    click.echo(json.dumps(result.to_dict()) if as_json else result.describe())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="stitchsafe")


if __name__ == "__main__":  # pragma: no cover
    main()
