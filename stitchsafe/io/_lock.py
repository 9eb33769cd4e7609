"""One writer per output: a lock beside the output group, and a record of who holds it.

``predict`` holds :meth:`OutputLock.hold` on its output group from before it prepares the
output until its labels are written, and ``segment`` while it labels, so that a second run
on the same output stops with exit 2 instead of deleting or mixing the first one's work.

Two files lie beside the group ``out.zarr`` (never inside it, so the group holds only what
zarr wrote, and a refused run leaves no ``out.zarr`` behind):

``.out.zarr.stitchsafe-lock``
    An empty file locked with ``flock`` through the ``filelock`` library. The operating
    system releases the lock when its process ends, however it ends (also ``SIGKILL``);
    the file itself stays, so that every run locks the same file.
``.out.zarr.stitchsafe-lock.json``
    The holder's :class:`LockOwner` (host, pid, start time, command), written once the lock
    is taken and removed when it is released. A record left behind names a run that was
    killed; the next run takes the lock over with a note. A record whose process still runs
    on this host keeps the output locked even where the file system ignores ``flock``.

An output in an object store (``s3://bucket/out.zarr``) has no ``flock``: there the record
object ``.out.zarr.stitchsafe-lock.json`` beside the group is the lock, created with a
conditional write (:class:`OutputLock`) and renewed while its run goes on (a lease, see
``_lease.py``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import filelock

from ..errors import StitchsafeError
from ._lease import LEASE_S, LeaseRenewal
from ._lock_owner import LockOwner
from ._place import place_create, place_read, place_remove
from ._stores import check_remote_output, is_url

__all__ = ["OutputLock", "OutputLockedError"]

ADVICE = "wait for it to finish, or write elsewhere (predict: another --output)"
# How long a refused run waits for the holder's record to appear (it is written right
# after the lock is taken) before it reports the holder as unknown.
_RECORD_WAIT_S = 2.0
_NO_LOCKS = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}


class OutputLockedError(StitchsafeError):
    """Another run holds the output's lock: the message names it and says what to do."""


def _nothing() -> None:
    """Release nothing (an object store's lock is its record, deleted on release)."""


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class OutputLock:
    """The lock of one output group: where its files are, and :meth:`hold` to take it.

    ``with OutputLock("out.zarr").hold(): ...`` runs the block as the only writer of
    ``out.zarr``; a second holder raises :class:`OutputLockedError` (exit 2) naming this
    one. See the module's documentation for the files and stale locks.

    On an object store (an output at ``s3://...``: no ``flock``) the record is the lock:
    the object ``.<name>.stitchsafe-lock.json`` beside the group, created with a
    conditional write that fails if it exists (``If-None-Match: *`` on S3; of two runs
    starting at once, one is refused), read back, renewed every ``lease_s / 5`` seconds
    while the run goes on, and deleted on release if it still holds this run's token. A
    record left by a killed run on this host (its process gone), or one from any host
    not renewed for ``lease_s``, is taken over with a note; a live one is refused, naming
    when its lease runs out and the object to delete if no such run is going on. A
    takeover deletes and recreates the record: two runs taking over the same stale record
    at the same moment are not told apart.

    Attributes
    ----------
    group
        The output group (a zarr v3 group, or the path where ``predict`` creates one).
    advice
        What the refusal tells the second run to do.
    lease_s
        In an object store: how long a record not renewed stays valid.

    Examples
    --------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> lock = OutputLock(os.path.join(tmp.name, "out.zarr"))
    >>> with lock.hold(command="stitchsafe predict") as owner:
    ...     lock.holder() == owner
    True
    >>> lock.holder() is None
    True

    >>> tmp.cleanup()
    """

    group: str
    advice: str = ADVICE
    lease_s: float = LEASE_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "group", os.fspath(self.group))
        if not self.lease_s > 0:
            raise ValueError(f"lease_s must be positive, not {self.lease_s!r}")
        check_remote_output(self.group)  # before any lock or output is made

    @property
    def path(self) -> str:
        """The file locked with ``flock``: ``.<name>.stitchsafe-lock`` beside the group."""
        if is_url(self.group):
            url = self.group.rstrip("/")
            parent, _, name = url.rpartition("/")
            return f"{parent}/.{name}.stitchsafe-lock"
        real = os.path.realpath(self.group)  # one lock however the group is spelled
        return os.path.join(os.path.dirname(real), f".{os.path.basename(real)}.stitchsafe-lock")

    @property
    def record_path(self) -> str:
        """The holder's :class:`LockOwner`, as JSON, while the lock is held."""
        return self.path + ".json"

    def holder(self) -> LockOwner | None:
        """The record of the run that holds (or last held and never released) the lock."""
        data = place_read(self.record_path)
        try:
            return None if data is None else LockOwner.from_dict(json.loads(data))
        except ValueError:
            return None

    @contextlib.contextmanager
    def hold(
        self, command: str | None = None, *, notify: Callable[[str], None] = _note
    ) -> Iterator[LockOwner]:
        """Hold the lock for the ``with`` block; yield this run's :class:`LockOwner`.

        A stale lock (its run killed) is taken over; ``notify`` says so once the block has
        ended without an error, so that a run refused for another reason prints only that.

        Raises
        ------
        OutputLockedError
            Another run holds the lock (the message names it); nothing was written.
        StitchsafeError
            The lock file cannot be created beside the group, or the file system there
            does not support locks.
        """
        renewal: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if is_url(self.group):
            owner, stale = self._take_record(command)
            release: Callable[[], object] = _nothing  # the record is the lock
            renewal = LeaseRenewal(self.record_path, owner.token, self.lease_s)
        else:
            lock = self._acquire()
            try:
                stale = self._stale_record()
                owner = self._write_record(command)
            except BaseException:
                lock.release()
                raise
            release = lock.release
        try:
            with renewal:
                yield owner
        finally:
            try:
                if (current := self.holder()) is not None and current.token == owner.token:
                    place_remove(self.record_path)
            finally:
                release()
        if stale is not None:  # reached only when the block ended without an error
            notify(
                f"took over the lock on {self.group} from a stitchsafe run that had stopped "
                f"without releasing it ({stale.describe()})."
            )

    def _acquire(self) -> filelock.BaseFileLock:
        """The ``flock`` taken without waiting, or :class:`OutputLockedError`."""
        lock = filelock.FileLock(self.path, timeout=0)
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            lock.acquire()
        except filelock.Timeout:
            if not os.path.exists(self.path):  # not held by anyone: it could not be made
                raise StitchsafeError(self._cannot_create("the file system refused it")) from None
            raise OutputLockedError(self._refusal(self._current_holder())) from None
        except NotImplementedError:  # filelock 3: no flock on this file system
            raise StitchsafeError(self._no_locks()) from None
        except OSError as exc:
            if exc.errno in _NO_LOCKS:
                raise StitchsafeError(self._no_locks()) from None
            if exc.errno not in _NOT_WRITABLE:
                raise
            raise StitchsafeError(self._cannot_create(exc.strerror or str(exc))) from None
        return lock

    def _cannot_create(self, why: str) -> str:
        return (
            f"cannot create the lock file {self.path} ({why}): stitchsafe keeps a lock file "
            f"beside each output, in the folder that holds {self.group}. Choose an output in "
            "a folder you can write to."
        )

    def _stale_record(self) -> LockOwner | None:
        """The record a killed run left behind, if any (the flock is ours already)."""
        previous = self.holder()
        if previous is not None and previous.running():
            # Its process lives on this host, yet the flock was free: this file system
            # ignores flock. The record is then what keeps the output to one writer.
            raise OutputLockedError(
                self._refusal(previous) + f" If no such run is going on, delete {self.record_path}."
            )
        return previous

    def _take_record(self, command: str | None) -> tuple[LockOwner, LockOwner | None]:
        """On an object store: this run's record created where none is, or in place of a
        stale one; ``(this run's record, the stale one or None)``."""
        owner = LockOwner.this_process(command)
        data = json.dumps(asdict(owner)).encode()
        stale = None
        if not place_create(self.record_path, data):
            stale = self.holder()
            if stale is None or not self._stale(stale):
                raise OutputLockedError(self._refusal(stale) + self._lease_advice(stale))
            place_remove(self.record_path)  # its run was killed
            if not place_create(self.record_path, data):
                raise OutputLockedError(self._refusal(self.holder()))
        current = self.holder()
        if current is None or current.token != owner.token:
            raise OutputLockedError(self._refusal(current))
        return owner, stale

    def _stale(self, owner: LockOwner) -> bool:
        """Whether a record in an object store belongs to a run that was killed: its process
        is gone (this host), or it has not renewed its lease (any host)."""
        running = owner.running()
        if running is not None:
            return not running
        return owner.lease_left(self.lease_s) <= 0

    def _lease_advice(self, owner: LockOwner | None) -> str:
        again = f" If no such run is going on, delete {self.record_path}"
        if owner is None or owner.running() is not None:
            return again + "."
        left = max(0, round(owner.lease_left(self.lease_s)))
        return (
            f" Its lease runs out in {left} s unless it renews it (every "
            f"{self.lease_s / 5:.0f} s while it runs); a run after that takes the lock over."
            f"{again} to go on now."
        )

    def _write_record(self, command: str | None) -> LockOwner:
        """This run's record, written whole (a reader never sees half of it)."""
        owner = LockOwner.this_process(command)
        temporary = f"{self.record_path}.{owner.token}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump(asdict(owner), f)
            os.replace(temporary, self.record_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
        return owner

    def _current_holder(self) -> LockOwner | None:
        """The holder's record, waiting briefly for a run that has just taken the lock."""
        deadline = time.monotonic() + _RECORD_WAIT_S
        while True:
            owner = self.holder()
            if owner is not None and owner.running() is not False:
                return owner
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def _refusal(self, owner: LockOwner | None) -> str:
        if owner is None:
            who = f"its record {self.record_path} is missing"
        else:
            command = owner.command if len(owner.command) <= 200 else owner.command[:197] + "..."
            who = f"{owner.describe()}, command: {command}"
        return f"another stitchsafe run ({who}) is writing {self.group}; {self.advice}."

    def _no_locks(self) -> str:
        return (
            f"cannot lock {self.path}: the file system there does not support file locks "
            "(flock), so stitchsafe cannot make sure that it is the only writer of "
            f"{self.group}. Write the output to a file system with locks (a local disk, or a "
            "network file system mounted with locking; predict: choose it with --output)."
        )
