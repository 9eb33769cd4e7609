"""tifffile's log messages, kept for the errors instead of printed on stderr."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__: list[str] = []


class _Collect(logging.Handler):
    """A log handler that keeps the messages (the errors say what matters of them)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[list[str]]:
    """tifffile's log messages kept in a list instead of printed on stderr.

    tifffile logs what it repairs in a damaged file (``invalid page offset`` ...); printed,
    those lines would come before stitchsafe's one-paragraph error. An application that
    configured logging itself still receives them.
    """
    handler = _Collect()
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
