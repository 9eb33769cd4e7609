"""Readers' log messages, kept for the errors instead of printed on stderr."""

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
def quiet_loggers(*names: str) -> Iterator[list[str]]:
    """The messages of the loggers ``names`` kept in a list instead of printed on stderr.

    Readers log what they repair or try (tifffile: ``invalid page offset`` in a damaged
    file; bioio: each reader plugin it tried and why it failed); printed, those lines would
    come before stitchsafe's one-paragraph error. An application that configured logging
    itself still receives them.
    """
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in names]
    for log in loggers:
        log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        for log in loggers:
            log.removeHandler(handler)
