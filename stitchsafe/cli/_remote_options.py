"""The option that reaches inputs and outputs in remote object stores: ``--storage-option``.

Defined once here; ``plan``, ``predict``, ``check``, ``segment`` and ``info`` stack
:data:`STORAGE_OPTION`. The values go to the fsspec file system of a ``s3://``, ``gs://``
or ``https://`` input, and of an ``s3://`` or ``gs://`` output
(:func:`stitchsafe.io.use_storage_options`), over what that file system reads from the
environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...); a malformed value is
reported as bad input (exit 2).
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["STORAGE_OPTION"]


def _use(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> None:
    """Parse the values and hand them to the io layer (only when some are given)."""
    if not values:
        return
    from ..io import parse_storage_options, use_storage_options  # noqa: PLC0415 - instant --help

    use_storage_options(parse_storage_options(values))


STORAGE_OPTION: Any = click.option(
    "--storage-option",
    "storage_options",
    multiple=True,
    metavar="KEY=VALUE",
    expose_value=False,
    callback=_use,
    help="An option of the remote store of an s3://, gs:// or https:// input or output, e.g. "
    "endpoint_url=https://s3.example.org, key=..., secret=..., anon=true, or for gs:// "
    "token=KEY.json (values are read as JSON where they parse), or a JSON object of them; "
    "repeatable. Default: what the store's library reads from the environment "
    "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE...; "
    "GOOGLE_APPLICATION_CREDENTIALS or STORAGE_EMULATOR_HOST for gs://).",
)
