"""Who holds an output's lock: the record of the holding run, and whether it still runs."""

from __future__ import annotations

import datetime
import os
import shlex
import socket
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from ._lease import lease_left, utc_now

__all__ = ["LockOwner"]


@dataclass(frozen=True)
class LockOwner:
    """Who holds an output's lock: the record written beside the lock file.

    Attributes
    ----------
    host, pid
        Where the holding process runs.
    started
        When it took the lock (local time, ISO 8601).
    command
        Its command line.
    process_start
        The process's start time as the kernel counts it (Linux ``/proc``), so that a pid
        reused by another process is not taken for the holder; ``None`` where unknown.
    token
        Unique per hold: a run removes the record only if it is still its own.
    renewed
        When the holder last said that it runs (UTC, ISO 8601): in an object store it
        renews this while it holds the lock (its lease).
    """

    host: str
    pid: int
    started: str
    command: str
    process_start: str | None = None
    token: str = ""
    renewed: str = ""

    @classmethod
    def this_process(cls, command: str | None = None) -> LockOwner:
        """The record of this process, taking a lock now (``command``: default ``argv``)."""
        if command is None:
            argv = sys.argv or ["python"]
            command = shlex.join([os.path.basename(argv[0]), *argv[1:]])
        status = _process_status(os.getpid())
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            command=command,
            process_start=None if status is None else status[1],
            token=uuid.uuid4().hex,
            renewed=utc_now(),
        )

    def lease_left(self, lease_s: float) -> float:
        """Seconds until this record's lease of ``lease_s`` runs out (<= 0: it has); a record
        never renewed counts from when it was taken."""
        return lease_left(self.renewed or self.started, lease_s)

    def describe(self) -> str:
        """``pid 1234 on host x, started 2025-01-01T12:00:00+01:00``."""
        return f"pid {self.pid} on host {self.host}, started {self.started}"

    def running(self) -> bool | None:
        """Whether the holding process still runs; ``None`` when it runs on another host.

        >>> LockOwner.this_process().running()
        True
        """
        if self.host != socket.gethostname():
            return None
        if self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, as another user's process
        status = _process_status(self.pid)
        if status is None:
            return True  # no /proc here: the pid exists, which is all we can tell
        state, start = status
        if state in ("Z", "X"):
            return False  # exited, not yet reaped by its parent
        return self.process_start is None or start == self.process_start

    @classmethod
    def from_dict(cls, data: Any) -> LockOwner | None:
        """The record read back from JSON; ``None`` when it is not one."""
        if not isinstance(data, dict):
            return None
        start = data.get("process_start")
        try:
            return cls(
                host=str(data["host"]),
                pid=int(data["pid"]),
                started=str(data["started"]),
                command=str(data.get("command", "")),
                process_start=None if start is None else str(start),
                token=str(data.get("token", "")),
                renewed=str(data.get("renewed", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _process_status(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of process ``pid`` from Linux ``/proc``; ``None`` elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None
