"""Log lines on stderr: how the library's :mod:`logging` messages reach a terminal or a
batch log, and the ``--quiet``/``--verbose`` options that choose how many there are.

The library logs under the ``"stitchsafe"`` logger and never configures logging itself
(a pipeline routes it as it does any other library's). The command-line tool prints
those messages on stderr, one per line with the time, so that a batch log reads as a few
lines per minute. By default it prints warnings, progress lines (:mod:`stitchsafe.progress`)
and the halo search's steps (``stitchsafe.approximate``); ``-v`` adds the library's other
messages (how the model's geometry was found, ...), ``-vv`` its debug messages;
``--quiet`` keeps warnings only and hides the progress bars. A bad input still prints its
one ``Error:`` paragraph first: nothing is logged before the checks.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

__all__ = ["QUIET", "VERBOSE", "log_options", "setup_logging", "show_progress"]

_LOGGER = "stitchsafe"
# Loggers shown at INFO by default: what a long stage is doing. The rest needs -v.
_SHOWN = ("stitchsafe.progress", "stitchsafe.approximate")
# Store libraries that log every failed request, with its traceback, before they raise:
# the command's one Error paragraph says what failed (``-vv`` shows their lines too).
_STORE_LOGGERS = ("gcsfs",)
_FORMAT = "%(asctime)s %(message)s"
_DATE = "%Y-%m-%d %H:%M:%S"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment (click's test runner replaces it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


def setup_logging(verbosity: int = 0) -> None:
    """Send the library's log messages to stderr (once per process).

    ``verbosity``: -1 warnings only (``--quiet``), 0 warnings and progress (default),
    1 every message at INFO (``-v``), 2 and more DEBUG (``-vv``).
    """
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(_FORMAT, _DATE))
        logger.addHandler(handler)
        logger.propagate = False
    levels = {-1: logging.WARNING, 0: logging.WARNING, 1: logging.INFO}
    logger.setLevel(levels.get(verbosity, logging.DEBUG))
    for name in _SHOWN:
        shown = logging.INFO if verbosity == 0 else logging.NOTSET
        logging.getLogger(name).setLevel(logging.WARNING if verbosity < 0 else shown)
    for name in _STORE_LOGGERS:
        _quiet_store_logger(logging.getLogger(name), verbosity < 2)


def _quiet_store_logger(store: logging.Logger, quiet: bool) -> None:
    """Keep ``store``'s lines off stderr (a handler that drops them, so that Python's
    last-resort handler does not print them), or let them through again."""
    for handler in [h for h in store.handlers if isinstance(h, logging.NullHandler)]:
        store.removeHandler(handler)
    if quiet:
        store.addHandler(logging.NullHandler())
    store.propagate = not quiet


def _quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    del param
    if value:
        setup_logging(-1)
        ctx.meta["stitchsafe.quiet"] = True
    return value


def _verbose(ctx: click.Context, param: click.Parameter, value: int) -> int:
    del ctx, param
    if value:
        setup_logging(value)
    return value


QUIET: Any = click.option(
    "--quiet",
    "-q",
    is_flag=True,
    expose_value=False,
    callback=_quiet,
    help="Print only warnings and errors: no progress bars or progress lines.",
)
VERBOSE: Any = click.option(
    "--verbose",
    "-v",
    count=True,
    expose_value=False,
    callback=_verbose,
    show_default=False,
    help="Print more: -v how the model's geometry was found and other details, -vv debug.",
)


def log_options(command: Any) -> Any:
    """``--quiet`` and ``--verbose``, for every command that runs something."""
    return QUIET(VERBOSE(command))


def show_progress(no_progress: bool = False) -> bool:
    """Whether the running command shows progress: not with ``--no-progress``/``--quiet``.

    Called by every command that runs something: until the command ends, it also shows
    (or hides) the progress of the library's stages that take no progress flag of their
    own (probing a model, the halo search: :func:`stitchsafe.progress.showing_stages`).
    """
    ctx = click.get_current_context(silent=True)
    quiet = bool(ctx is not None and ctx.meta.get("stitchsafe.quiet"))
    shown = not (no_progress or quiet)
    if ctx is not None:
        from ..progress import showing_stages  # noqa: PLC0415 - instant --help

        ctx.with_resource(showing_stages(shown))
    return shown
