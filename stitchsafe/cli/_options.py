"""Every command-line option, defined once; commands stack the ones they take.

Every option that more than one command takes is defined here once, named after what it
holds; groups that always travel together (:data:`model_options`, :data:`label_options`,
:data:`cluster_options`) are stacked at once. Options that one command alone takes (e.g.
``train``'s architecture flags, ``demo``'s folder) are defined with that command (as
rasterio's ``rio`` does); the options that say what of the input is read (voxel size,
channels, timepoint, level) are in :mod:`._input_options`. Parsing helpers turn option text
into the values the library takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..errors import StitchsafeError
from ..geometry import parse_ints
from ._role_options import CHANNEL_ROLES

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def stack(*options: Decorator) -> Decorator:
    """Apply ``options`` so that they show in ``--help`` in the order given."""

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


# -- parsing -------------------------------------------------------------------------------


def parse_pooling(values: tuple[str, ...]) -> Any:
    """``('2',)`` -> ``2``; ``('1,2,2', '2,2,2')`` -> ``[(1, 2, 2), (2, 2, 2)]``."""
    if not values:
        return None
    levels = [parse_ints(v, "--pooling-factor", example="2 or 1,2,2") for v in values]
    if len(levels) == 1 and len(levels[0]) == 1:
        return levels[0][0]
    return [level[0] if len(level) == 1 else level for level in levels]


def parse_shape(text: str | None, flag: str = "--tile-shape") -> tuple[int, ...] | int | None:
    """``'64'`` -> ``64``; ``'32,128,128'`` -> ``(32, 128, 128)``; ``None`` stays."""
    if text is None:
        return None
    values = parse_ints(text, flag)
    return values[0] if len(values) == 1 else values


def parse_batch_size(text: str) -> int | str:
    """``'auto'`` or a whole number >= 1."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise StitchsafeError(f"--batch-size must be a whole number >= 1 or 'auto', got {text!r}.")
    return value


# -- shared single options -----------------------------------------------------------------

JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
OVERWRITE = click.option(
    "--overwrite", is_flag=True, help="Replace what an earlier run wrote at the output."
)
NO_PROGRESS = click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
PYRAMID = click.option(
    "--pyramid/--no-pyramid",
    default=True,
    show_default=True,
    help="Also write resolution levels 1, 2... (mean; labels: every other voxel) so viewers "
    "can browse large results (~1/7 more writes in 3-D); an interrupted predict finishes "
    "them with --resume.",
)
DEVICE = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
)
POOLING_FACTOR = click.option(
    "--pooling-factor",
    multiple=True,
    metavar="F",
    help="Pooling factor: one value (with --depth), or one per level, per axis, e.g. "
    "--pooling-factor 1,2,2 --pooling-factor 2,2,2. Default: the model's metadata, else "
    "probed (train: 2,2 twice in 2-D; 1,2,2 then 2,2,2 in 3-D).",
)
DEPTH = click.option(
    "--depth",
    type=int,
    default=None,
    help="Number of pooling levels. Default: the model's metadata, else probed (train: 2).",
)
PAD_MODE = click.option(
    "--pad-mode",
    type=click.Choice(["reflect", "constant", "edge"]),
    default="reflect",
    show_default=True,
    help="numpy.pad mode applied to the whole volume at its borders.",
)
NORMALIZE = click.option(
    "--normalize",
    type=click.Choice(["none", "percentile", "zscore"]),
    default=None,
    help="Intensity normalisation, computed once over the whole volume. Default: from the "
    "model's metadata, else percentile (1, 99.8).",
)
OUTPUT_GROUP = click.option(
    "--output",
    default=None,
    type=click.Path(),
    help="Zarr v3 group to write into. Default: the input's zarr v3 container, or "
    "<input>.stitchsafe.zarr beside a TIFF or bare array.",
)
SCHEDULER = click.option(
    "--scheduler",
    default="threads",
    show_default=True,
    help="Where the work runs: threads (this process), processes[:N] (worker processes "
    "here), local[:N] (a dask LocalCluster of N workers on 127.0.0.1; default N: one per "
    "GPU, else half the cores) or tcp://host:port (a running dask scheduler). Workers load "
    "the model from its path; model and data must be on a file system they share.",
)

# -- predict -------------------------------------------------------------------------------

BATCH_SIZE = click.option(
    "--batch-size",
    default="1",
    show_default=True,
    metavar="N|auto",
    help="Tiles per forward pass; auto: as many as fit half of the free GPU memory "
    "(1 on the CPU, where each core runs its own tile).",
)
PRECISION = click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    show_default=True,
    help="Forward precision. fp32 is exact; bf16/fp16 (autocast) are faster on GPUs but "
    "stitched results then differ from a whole-volume pass by about 1e-2.",
)
RESUME = click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run into the same output: only unfinished tiles are "
    "computed. Refused if the plan, the model file or the settings changed.",
)
EMBEDDINGS_DTYPE = click.option(
    "--embeddings-dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Type of the written embeddings; float16 halves disk use and write time.",
)
NO_LABELS = click.option(
    "--no-labels", is_flag=True, help="Write embeddings only, no instance labels."
)
NO_EMBEDDINGS = click.option(
    "--no-embeddings",
    is_flag=True,
    help="Labels only: label each tile while it is in memory and never write the "
    "embeddings (much less to write). The labels, in OUTPUT/instances, are identical to a "
    "full run's. --scheduler threads only.",
)

# -- check ---------------------------------------------------------------------------------

CROP = click.option(
    "--crop",
    default=None,
    metavar="Z,Y,X",
    help="Shape of the centred crop checked, e.g. 64,256,256 or 128 (clipped to the volume). "
    "Default: the whole volume when its forward pass reads at most 2**22 input voxels, else "
    "the largest centred crop that does.",
)
PICTURE = click.option(
    "--picture",
    default="stitchsafe-check.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="PNG with |tiled - whole| maps of both tilings side by side.",
)
NO_PICTURE = click.option("--no-picture", is_flag=True, help="Write no PNG.")

# -- groups --------------------------------------------------------------------------------

model_options = stack(
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
        help="Input volume: zarr array or group, OME-Zarr image, TIFF/BigTIFF, or HDF5 "
        "dataset (file.h5 with --input-key, or file.h5/path/to/dataset).",
    ),
    click.option(
        "--input-key",
        default=None,
        help="Array or dataset path in a zarr group or HDF5 file. Default: none (--input "
        "names the array or image itself).",
    ),
    click.option(
        "--tile-shape",
        default=None,
        metavar="Z,Y,X",
        help="Output voxels kept per tile (multiple of the period), e.g. 32,128,128 or 64. "
        "Default: the largest tile that fits the device memory budget.",
    ),
    POOLING_FACTOR,
    DEPTH,
    DEVICE,
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
    click.option(
        "--trust-model",
        is_flag=True,
        help="Let the model file run code of its own when it is loaded (pickled objects in "
        "a .pt2, a bioimage.io architecture given as source code). Only for files from a "
        "source you trust; without it such files are refused.",
    ),
    JSON,
)
"""Options of every command that plans tiles (plan, predict, check)."""

label_options = stack(
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
    CHANNEL_ROLES,
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
)
"""Options of every command that writes instance labels (predict, segment)."""

LABEL_KEYS = (
    "threshold",
    "min_size",
    "foreground_threshold",
    "seed_threshold",
    "seed_foreground_threshold",
    "grow",
    "label_dtype",
    "channel_roles",
)

cluster_options = stack(
    SCHEDULER,
    click.option(
        "--cluster",
        type=click.Choice(["slurm"]),
        default=None,
        help="Start dask workers as SLURM batch jobs (dask-jobqueue) for this run; they "
        "are cancelled when it ends. Replaces --scheduler. Default: none.",
    ),
    click.option("--cluster-jobs", default=1, show_default=True, type=int, help="SLURM jobs."),
    click.option(
        "--cluster-gpus",
        default=1,
        show_default=True,
        type=int,
        help="GPUs per job (--gres=gpu:N), one worker each; 0 for CPU jobs.",
    ),
    click.option("--cluster-cores", default=8, show_default=True, type=int, help="CPUs per job."),
    click.option("--cluster-memory", default="32GB", show_default=True, help="Memory per job."),
    click.option(
        "--cluster-walltime",
        default="04:00:00",
        show_default=True,
        help="Time limit per job (--resume continues after it).",
    ),
    click.option(
        "--cluster-queue", default=None, help="SLURM partition (-p). Default: SLURM's default."
    ),
    click.option(
        "--cluster-config",
        default=None,
        type=click.Path(dir_okay=False),
        help="YAML/JSON file of further dask_jobqueue.SLURMCluster options (interface, "
        "job_script_prologue, account, log_directory...). Default: none.",
    ),
    click.option(
        "--print-job-script",
        is_flag=True,
        help="With --cluster slurm: print the batch script each job would run, and stop.",
    ),
)
"""``--scheduler`` and the ``--cluster slurm`` options of predict."""


def model_keywords(options: dict[str, Any]) -> dict[str, Any]:
    """The library keywords of :func:`model_options` (all but model, input and --json)."""
    return {
        "input_key": options["input_key"],
        "tile_shape": parse_shape(options["tile_shape"]),
        "pooling_factors": parse_pooling(options["pooling_factor"]),
        "depth": options["depth"],
        "device": options["device"],
        "allow_approximate": options["allow_approximate"],
        "tolerance": options["tolerance"],
        "trust_model": options["trust_model"],
    }
