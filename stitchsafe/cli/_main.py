"""The ``stitchsafe`` group: exit codes, the version, and the commands.

Exit codes: 0 success; 2 bad usage or bad input (one-paragraph message, no traceback);
3 ``check`` found a stitched result that is not exact; 1 unexpected failure; 130
interrupted by Ctrl-C (SIGINT); 143 stopped by SIGTERM (what ``scancel``, SLURM at the
end of a job's time limit and other batch systems send). Heavy imports (torch, dask,
zarr) happen inside commands so that ``stitchsafe --help`` answers instantly. JSON goes to
stdout, progress to stderr.

Interruptions: :func:`main` turns SIGTERM into :class:`Terminated`, an exception that
unwinds like the ``KeyboardInterrupt`` of Ctrl-C (only the console script installs this
handler; the library never touches signals). Either stops the tile pipeline and the
labelling cleanly (threads joined, the done mask flushed, old labels kept) and the command
prints one paragraph on stderr saying what was kept and how to continue.
"""

from __future__ import annotations

import errno
import signal
import threading
from types import FrameType
from typing import Any

import click

from .. import __version__
from ..errors import StitchsafeError
from ._check import check
from ._demo import demo
from ._export import export
from ._info import info
from ._logging import setup_logging
from ._plan import plan
from ._predict import predict
from ._report import BadInput
from ._segment import segment
from ._train import train

__all__ = ["Group", "Terminated", "cli", "interruption", "main", "storage_advice"]

# Disk full, quota, read-only or permission problems: the user's to fix, not a bug.
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

# Exit codes of an interrupted command: 128 + the signal's number, as shells report it.
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM

# What an interrupted command kept, and how to go on, per command.
_CONTINUE = {
    "predict": (
        "Every tile that finished is kept (recorded in the output's done mask). To "
        "continue, rerun the same command with --resume: it computes only the tiles not "
        "yet done, then derives the labels."
    ),
    "segment": (
        "Rerun the same command to label again (with --overwrite if there were labels before)."
    ),
}
_RESTART = "Rerun the same command to start again."

# How to go on after a full disk or a permission problem, per command.
_AFTER_STORAGE = {
    "predict": (
        "Nothing already finished is lost: free space or fix the permissions, then rerun the "
        "same command with --resume to continue where it stopped."
    ),
    "segment": (
        "The labels of an earlier run, if any, are kept: free space or fix the permissions, "
        "then rerun the same command."
    ),
    "train": "Free space or fix the permissions, then rerun the same command with --overwrite.",
    "demo": "Free space or fix the permissions, then rerun the same command with --overwrite.",
}
_STORAGE_RETRY = "Free space or fix the permissions, then rerun the same command."


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run unwinds as it does for Ctrl-C."""


def interruption(command: str | None, stop: KeyboardInterrupt) -> str:
    """The one paragraph an interrupted ``command`` prints: what stopped it, what was
    kept (the library's notes on ``stop``) and how to continue.

    >>> interruption("segment", KeyboardInterrupt())[:60]
    'Interrupted by Ctrl-C (SIGINT); stitchsafe stopped cleanly. '
    """
    cause = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C (SIGINT)"
    notes = " ".join(str(n) for n in getattr(stop, "__notes__", ()))
    advice = _CONTINUE.get(command or "", _RESTART)
    return " ".join(f"Interrupted by {cause}; stitchsafe stopped cleanly. {notes} {advice}".split())


def storage_advice(command: str | None) -> str:
    """How to go on after ``command`` stopped on a full disk or a permission problem.

    >>> storage_advice("segment")[:40]
    'The labels of an earlier run, if any, ar'
    """
    return _AFTER_STORAGE.get(command or "", _STORAGE_RETRY)


class Group(click.Group):
    """Maps :class:`StitchsafeError` and storage errors from any command to exit code 2,
    Ctrl-C to 130 and SIGTERM to 143, each with one paragraph on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            click.echo(interruption(ctx.invoked_subcommand, stop), err=True)
            code = EXIT_SIGTERM if isinstance(stop, Terminated) else EXIT_SIGINT
            raise click.exceptions.Exit(code) from None
        except StitchsafeError as exc:
            raise BadInput.from_error(exc) from None
        except OSError as exc:
            if exc.errno not in STORAGE_ERRORS:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            advice = storage_advice(ctx.invoked_subcommand)
            raise BadInput(f"writing failed: {exc.strerror or exc}{where}. {advice}") from None


@click.group(
    cls=Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True}
)
@click.version_option(__version__, prog_name="stitchsafe")
def cli() -> None:
    """Exact tile-and-stitch CNN inference for large 2-D and 3-D images.

    stitchsafe derives, from a network's pooling factors and depth, tiles whose stitched
    output is identical to one whole-volume forward pass, runs them in batches, and writes
    OME-Zarr outputs that napari opens.
    """
    setup_logging()


for command in (plan, predict, segment, demo, train, check, info, export):
    cli.add_command(command)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"signal {signum}")


def main() -> None:
    """Console-script entry point; SIGTERM stops a command as Ctrl-C does (exit code 143)."""
    if threading.current_thread() is not threading.main_thread():
        cli(prog_name="stitchsafe")
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        cli(prog_name="stitchsafe")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":  # pragma: no cover
    main()
