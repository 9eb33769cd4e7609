"""The lease of an output lock held in an object store.

In an object store the lock of an output is its record object (no ``flock``), and a
process on another host cannot be asked whether it still runs. So the holder renews the
record while it runs: every ``lease / 5`` seconds it writes the time, in UTC, into the
record's ``renewed`` field (if the record is still its own). A record not renewed for a
whole lease (:data:`LEASE_S`, ten minutes) belongs to a run that was killed — a batch
job's time limit, a lost node — and the next run takes the lock over with a note. The
hosts' clocks must agree to within a few minutes (they do where NTP runs).

A holder that finds its record replaced (another run took the lock over, after this
one's lease ran out unrenewed, a stopped process say) stops renewing and logs a warning:
the two runs' writes may then mix in the output.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
from typing import Any

from ._place import place_read, place_write

__all__ = ["LEASE_S", "LeaseRenewal", "lease_left", "utc_now"]

LEASE_S = 600.0
_LOG = logging.getLogger("stitchsafe.io")


def utc_now() -> str:
    """The time now in UTC, ISO 8601 to the second.

    >>> utc_now().endswith("+00:00")
    True
    """
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def lease_left(renewed: str, lease_s: float, now: datetime.datetime | None = None) -> float:
    """Seconds until a lease renewed at ``renewed`` (ISO 8601) runs out; <= 0 once it has.

    A time that cannot be read counts as run out long ago.

    >>> t = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    >>> lease_left("2026-01-01T11:58:00+00:00", 600, now=t)
    480.0
    >>> lease_left("2026-01-01T13:00:00+01:00", 600, now=t)  # the same moment in CET
    600.0
    >>> lease_left("yesterday", 600, now=t) < 0
    True
    """
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        then = datetime.datetime.fromisoformat(renewed)
    except (TypeError, ValueError):
        return -float("inf")
    if then.tzinfo is None:
        then = then.astimezone()  # a local time without offset: this host's zone
    return lease_s - (now - then).total_seconds()


class LeaseRenewal:
    """Renews the record ``path`` holding ``token`` every ``lease_s / 5`` seconds, in a
    daemon thread, from ``with`` until the block ends."""

    def __init__(self, path: str, token: str, lease_s: float) -> None:
        self.path, self.token, self.every = path, token, lease_s / 5
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stitchsafe-lease", daemon=True)

    def __enter__(self) -> LeaseRenewal:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.renew():
                    return
            except Exception as e:  # a store hiccup: try again next time
                _LOG.warning("could not renew the lock %s (%s); trying again", self.path, e)

    def renew(self) -> bool:
        """Write the time into this run's record; False (and a warning) if it is not
        this run's any more."""
        data = place_read(self.path)
        record: Any = None
        if data is not None:
            try:
                record = json.loads(data)
            except ValueError:
                record = None
        if not isinstance(record, dict) or record.get("token") != self.token:
            _LOG.warning(
                "the lock %s is no longer this run's: another run took it over (this run's "
                "lease had run out unrenewed) or removed it; the two runs' writes may mix.",
                self.path,
            )
            return False
        record["renewed"] = utc_now()
        place_write(self.path, json.dumps(record).encode())
        return True
