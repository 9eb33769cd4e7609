"""The ``stitchsafe`` group: exit codes, the version, and the commands.

Exit codes: 0 success; 2 bad usage or bad input (one-paragraph message, no traceback);
3 ``check`` found a stitched result that is not exact; 1 unexpected failure. Heavy
imports (torch, dask, zarr) happen inside commands so that ``stitchsafe --help`` answers
instantly. JSON goes to stdout, progress to stderr.
"""

from __future__ import annotations

import errno
from typing import Any

import click

from .. import __version__
from ..errors import StitchsafeError
from ._check import check
from ._demo import demo
from ._info import info
from ._plan import plan
from ._predict import predict
from ._report import BadInput
from ._segment import segment
from ._train import train

__all__ = ["Group", "cli", "main"]

# Disk full, quota, read-only or permission problems: the user's to fix, not a bug.
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class Group(click.Group):
    """Maps :class:`StitchsafeError` and storage errors from any command to exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StitchsafeError as exc:
            raise BadInput.from_error(exc) from None
        except OSError as exc:
            if exc.errno not in STORAGE_ERRORS:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            raise BadInput(
                f"writing failed: {exc.strerror or exc}{where}. Nothing already finished is "
                "lost: free space or fix the permissions, then rerun the same command with "
                "--resume (predict) to continue where it stopped."
            ) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stitchsafe")
def cli() -> None:
    """Exact tile-and-stitch CNN inference for large 2-D and 3-D images.

    stitchsafe derives, from a network's pooling factors and depth, tiles whose stitched
    output is identical to one whole-volume forward pass, runs them in batches, and writes
    OME-Zarr outputs that napari opens.
    """


for command in (plan, predict, segment, demo, train, check, info):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="stitchsafe")


if __name__ == "__main__":  # pragma: no cover
    main()
