"""The option that says what each output channel of a model is: ``--channel-roles``."""

from __future__ import annotations

import click

__all__ = ["CHANNEL_ROLES"]

CHANNEL_ROLES = click.option(
    "--channel-roles",
    default=None,
    metavar="ROLES",
    help="What each output channel is, in place of the model's metadata: comma-separated "
    "embedding, foreground (logits), probability (values in [0, 1]) or ignore; 'role:N' "
    "repeats a role (e.g. embedding:2,foreground). A foreground or probability channel "
    "without embeddings is labelled by its connected components (face connectivity). "
    "Default: the metadata's roles, else every channel an embedding.",
)
"""``--channel-roles`` (predict, segment): parsed by :class:`stitchsafe.labels.LabelSettings`."""
