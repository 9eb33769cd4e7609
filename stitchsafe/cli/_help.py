"""``--help`` that reads well: options in named sections, defaults shown.

A command made with ``@click.command(cls=Sectioned, sections=...)`` lists its options under
headings (Input, Model, Tiling, ...) instead of one long list. A section names the options
it holds by their parameter names; an option no section names is listed under
:data:`GENERAL` at the end (``--help``, ``--quiet``...), so an option added to a command
is never hidden, only unsorted. Every command shows its options' defaults
(``show_default``), here and through the group's context settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

__all__ = ["GENERAL", "RUN_SECTIONS", "TRAIN_SECTIONS", "Sectioned", "Sections"]

Sections = Sequence[tuple[str, Sequence[str]]]

#: The heading of the options no section names.
GENERAL = "General options"

#: The sections of the commands that run a model or read its output (plan, predict,
#: check, segment, info). Each command shows those that hold some of its options.
RUN_SECTIONS: Sections = (
    (
        "Input",
        (
            "input_path",
            "input_key",
            "image_alias",
            "axes",
            "channel",
            "timepoint",
            "level",
            "voxel_size",
            "unit",
            "storage_options",
            "crop",
        ),
    ),
    (
        "Model",
        ("model", "pooling_factor", "depth", "normalize", "trust_model"),
    ),
    ("Tiling", ("tile_shape", "pad_mode", "allow_approximate", "tolerance")),
    ("Device and performance", ("device", "batch_size", "precision")),
    (
        "Labels",
        (
            "no_labels",
            "channel_roles",
            "threshold",
            "min_size",
            "foreground_threshold",
            "seed_threshold",
            "seed_foreground_threshold",
            "grow",
            "label_dtype",
        ),
    ),
    (
        "Output",
        (
            "output",
            "overwrite",
            "resume",
            "embeddings_dtype",
            "no_embeddings",
            "pyramid",
            "picture",
            "no_picture",
            "as_json",
        ),
    ),
    (
        "Cluster",
        (
            "scheduler",
            "cluster",
            "cluster_jobs",
            "cluster_gpus",
            "cluster_cores",
            "cluster_memory",
            "cluster_walltime",
            "cluster_queue",
            "cluster_config",
            "print_job_script",
        ),
    ),
)

#: The sections of ``train``.
TRAIN_SECTIONS: Sections = (
    ("Training data", ("image", "labels", "image_key", "labels_key")),
    (
        "Architecture",
        ("dims", "depth", "pooling_factor", "features", "embedding_dims", "foreground_target"),
    ),
    ("Optimisation", ("iterations", "window", "batch_size", "lr", "seed", "init")),
    ("Device", ("device",)),
    ("Output", ("output", "export_pt2", "overwrite", "as_json")),
)


class Sectioned(click.Command):
    """A command whose ``--help`` lists its options in ``sections``, defaults shown.

    Examples
    --------
    >>> @click.command(cls=Sectioned, sections=(("Output", ("output",)),))
    ... @click.option("--output", default="a.zarr")
    ... @click.option("--json", "as_json", is_flag=True)
    ... def hello(output, as_json):
    ...     pass
    >>> text = hello.get_help(click.Context(hello, info_name="hello"))
    >>> [line.strip() for line in text.splitlines() if line.endswith(":")]
    ['Output:', 'General options:']
    >>> "[default: a.zarr]" in " ".join(text.split())
    True
    """

    def __init__(self, *args: Any, sections: Sections = (), **kwargs: Any) -> None:
        settings = dict(kwargs.pop("context_settings", None) or {})
        settings.setdefault("show_default", True)
        super().__init__(*args, context_settings=settings, **kwargs)
        self.sections = tuple((title, tuple(names)) for title, names in sections)

    def section_of(self, name: str | None) -> str:
        """The heading ``name``'s option is listed under."""
        return next((t for t, names in self.sections if name in names), GENERAL)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The options, section by section, in the sections' order (:data:`GENERAL` last)."""
        if ctx.show_default is None:  # a context made without the command's settings
            ctx.show_default = True
        order = {name: i for _, names in self.sections for i, name in enumerate(names)}
        rows: dict[str, list[tuple[int, tuple[str, str]]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and not isinstance(param, click.Argument):
                place = order.get(param.name or "", len(order))
                rows.setdefault(self.section_of(param.name), []).append((place, record))
        for title in [t for t, _ in self.sections] + [GENERAL]:
            if rows.get(title):
                with formatter.section(title):
                    formatter.write_dl([r for _, r in sorted(rows[title], key=lambda x: x[0])])
