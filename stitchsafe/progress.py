"""Progress that reads well in a terminal and in a batch log.

On a terminal, a progress bar (tqdm) redrawn in place. Anywhere else (stderr sent to a
file by a batch system, a pipeline that captures it), a redrawn bar would write one long
line of carriage returns into the log; there, progress becomes a few plain lines instead,
through the standard :mod:`logging` module (logger ``"stitchsafe.progress"``, level
INFO): one at most every :data:`LOG_EVERY` seconds with the count, rate and time left,
and one when the stage ends (a stage shorter than that logs that line only). A pipeline
routes or silences them as it does any other library's logs; the command-line tool
prints them on stderr with a time stamp (``--quiet`` silences them).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

from tqdm.auto import tqdm

__all__ = [
    "LOG_EVERY",
    "STAGE_AFTER",
    "LogProgress",
    "Steps",
    "duration_text",
    "plural",
    "progress_bar",
    "showing_stages",
    "stage_progress",
]

#: Seconds between two progress lines in a log.
LOG_EVERY = 30.0
#: Seconds a stage deep in the library (:func:`stage_progress`) runs before a log says so:
#: shorter waits stay silent.
STAGE_AFTER = 3.0

_LOG = logging.getLogger("stitchsafe.progress")

# Whether the stages whose callers take no progress flag (probing, the halo search) show
# their progress: off in library use, on in a command (``showing_stages``).
_STAGES: ContextVar[tuple[bool, float]] = ContextVar(
    "stitchsafe_stages", default=(False, STAGE_AFTER)
)


def duration_text(seconds: float) -> str:
    """A duration for people: ``"42 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``.

    Examples
    --------
    >>> duration_text(4.2), duration_text(185), duration_text(7620), duration_text(math.inf)
    ('4 s', '3 min 05 s', '2 h 07 min', 'unknown')
    """
    if not math.isfinite(seconds):
        return "unknown"
    s = round(max(seconds, 0.0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless ``count`` is 1.

    The one place where the words of messages agree with their numbers.

    Examples
    --------
    >>> plural(1, "tile"), plural(3, "tile"), plural(0, "object"), plural(2, "axis", "axes")
    ('1 tile', '3 tiles', '0 objects', '2 axes')
    >>> plural(2, "forward pass")
    '2 forward passes'
    """
    if count == 1:
        return f"{count} {noun}"
    if many is None:
        many = noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{count} {many}"


class LogProgress:
    """Progress as a few log lines: at most one per ``every`` seconds, and the end.

    With ``after`` (a stage deep in the library), the first line comes ``after`` seconds
    in, and a stage that ends sooner logs nothing at all.

    The same methods as the tqdm bars this replaces (``update``, ``close``, ``set_postfix``,
    use as a context manager), so callers need not know which they hold. Not thread-safe by
    itself: callers that advance it from several threads hold a lock, as they do for tqdm.

    Examples
    --------
    >>> import io
    >>> handler = logging.StreamHandler(out := io.StringIO())
    >>> _LOG.addHandler(handler); _LOG.setLevel(logging.INFO)
    >>> with LogProgress(4, desc="tiles", unit="tile", every=3600) as p:
    ...     p.update(1); p.update(3)
    >>> print(out.getvalue().replace("\\n", "|"))  # doctest: +ELLIPSIS
    tiles: 4 of 4 tiles done in ... s (... tile/s)|
    >>> _LOG.removeHandler(handler); _LOG.setLevel(logging.NOTSET)
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        unit: str,
        every: float = LOG_EVERY,
        after: float | None = None,
    ):
        self.total = total
        self.n = 0
        self.desc = desc
        self.unit = unit
        self.every = every
        self.after = after or 0.0  # a stage that ends sooner logs nothing
        self._postfix = ""
        self._start = time.monotonic()
        # The first line is due ``after`` seconds in (when given), then every ``every``.
        self._last = self._start if after is None else self._start - every + after
        self._closed = False

    def _units(self, n: int | None) -> str:
        return plural(n or 0, self.unit).split(" ", 1)[1]

    def update(self, n: int = 1) -> None:
        """Advance by ``n``; log a line when ``every`` seconds passed since the last."""
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every and (self.total is None or self.n < self.total):
            self._last = now
            _LOG.info("%s", self._line(now))

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        """Extra fields shown at the end of the next line (as tqdm's ``set_postfix``)."""
        del refresh
        fields = dict(ordered_dict or {}, **kwargs)
        self._postfix = ", ".join(f"{k}={v}" for k, v in fields.items())

    def _rate(self, now: float) -> float:
        elapsed = now - self._start
        return self.n / elapsed if elapsed > 0 else math.inf

    def _line(self, now: float) -> str:
        rate = self._rate(now)
        if self.total:
            left = (self.total - self.n) / rate if rate > 0 else math.inf
            text = (
                f"{self.desc}: {self.n} of {self.total} {self._units(self.total)} "
                f"({100 * self.n / self.total:.0f} %), {rate:.3g} {self.unit}/s, "
                f"about {duration_text(left)} left"
            )
        else:
            text = f"{self.desc}: {self.n} {self._units(self.n)}, {rate:.3g} {self.unit}/s"
        return f"{text}; {self._postfix}" if self._postfix else text

    def close(self) -> None:
        """Log the last line (once): what was done, in how long."""
        if self._closed:
            return
        self._closed = True
        now = time.monotonic()
        if now - self._start < self.after:
            return
        total = "" if self.total is None else f" of {self.total}"
        done = "done" if self.total is None or self.n >= self.total else "stopped"
        text = (
            f"{self.desc}: {self.n}{total} {self._units(self.total or self.n)} {done} in "
            f"{duration_text(now - self._start)} ({self._rate(now):.3g} {self.unit}/s)"
        )
        _LOG.info("%s", f"{text}; {self._postfix}" if self._postfix else text)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent:
    """No progress at all (``progress=False``): counts, shows nothing."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a closed or stream-like object without isatty
        return False


def progress_bar(
    total: int | None, *, desc: str, unit: str, enabled: bool = True, leave: bool = False
) -> Any:
    """Progress of one stage: a tqdm bar on a terminal, log lines elsewhere, or nothing.

    Parameters
    ----------
    total
        Number of steps, ``None`` when unknown.
    desc, unit
        What the stage is (``"tiles"``, ``"pyramid level 1"``) and what it counts.
    enabled
        ``False``: show nothing (``--no-progress``).
    leave
        Keep the terminal bar on screen when it ends.

    Examples
    --------
    >>> with progress_bar(3, desc="tiles", unit="tile", enabled=False) as bar:
    ...     bar.update(3)
    >>> bar.n
    3
    """
    if not enabled:
        return _Silent(total)
    if _is_terminal(sys.stderr):
        return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr)
    return LogProgress(total, desc=desc, unit=unit)


@contextmanager
def showing_stages(enabled: bool = True, *, after: float = STAGE_AFTER) -> Iterator[None]:
    """Within the block, :func:`stage_progress` shows progress (``enabled``) or not; in
    a log, of stages that last ``after`` seconds or more.

    Stages deep in the library (probing a model's geometry, the halo search of approximate
    mode) take no progress flag of their own; the command-line tool and the functions that
    take one (``run_demo``) switch them on or off for what they run. Off by default.

    Examples
    --------
    >>> with showing_stages(False):
    ...     stage_progress("probing", unit="forward pass").__class__.__name__
    '_Silent'
    """
    token = _STAGES.set((enabled, after))
    try:
        yield
    finally:
        _STAGES.reset(token)


def stage_progress(desc: str, *, unit: str, total: int | None = None) -> Any:
    """:func:`progress_bar` of a stage whose caller takes no progress flag: shown where
    :func:`showing_stages` switched stages on, else silent.

    In a batch log a stage that lasts :data:`STAGE_AFTER` seconds or more logs a line
    then (at its first step after that), every :data:`LOG_EVERY` seconds after, and when
    it ends; a shorter one logs nothing (probing a small model takes a second).
    """
    enabled, after = _STAGES.get()
    if enabled and not _is_terminal(sys.stderr):
        return LogProgress(total, desc=desc, unit=unit, after=after)
    return progress_bar(total, desc=desc, unit=unit, enabled=enabled)


class Steps:
    """A job of a few named steps: a bar over them on a terminal, a line as each starts in
    a log (so that the steps before the first long stage are not silent), or nothing.

    Examples
    --------
    >>> with Steps(["making the sample", "predicting"], desc="demo", enabled=False) as s:
    ...     s.start(0); s.start(1)
    >>> s.done
    2
    """

    def __init__(self, names: Sequence[str], *, desc: str, enabled: bool = True) -> None:
        self.names = list(names)
        self.desc = desc
        self.done = 0
        self._now: int | None = None
        self._start = time.monotonic()
        terminal = enabled and _is_terminal(sys.stderr)
        self._bar = progress_bar(len(self.names), desc=desc, unit="step", enabled=terminal)
        self._log = enabled and not terminal

    def start(self, index: int) -> None:
        """Step ``index`` starts: the one before (if any) is done."""
        if self._now is not None:
            self.done += 1
            self._bar.update(1)
        self._now = index
        self._bar.set_postfix(now=self.names[index])
        if self._log:
            n = len(self.names)
            _LOG.info("%s: step %d of %d: %s", self.desc, index + 1, n, self.names[index])

    def close(self) -> None:
        """The last step is done."""
        if self._now is not None:
            self.done += 1
            self._bar.update(1)
            self._now = None
        self._bar.close()
        if self._log:
            took = duration_text(time.monotonic() - self._start)
            _LOG.info("%s: %s done in %s", self.desc, plural(self.done, "step"), took)

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
