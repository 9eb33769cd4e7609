"""The lease of a lock held in an object store: renewed while its run goes on, so that a
run on another host waits for it, and given up with a warning once another run took it."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from stitchsafe.io import LeaseRenewal, LockOwner, OutputLock, OutputLockedError

if TYPE_CHECKING:  # the fixtures' type (tests/remote/conftest.py)
    from conftest import GcsServer, S3Server


# Long enough that a loaded test machine renews in time (every LEASE / 5 s), short enough
# to wait for a lease to run out.
LEASE = 4.0


def _url(store: S3Server | GcsServer) -> str:
    return store.url(f"leased-{uuid.uuid4().hex}.zarr")


def test_a_held_lock_is_renewed_so_a_run_on_another_host_waits(
    store_env: S3Server | GcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = OutputLock(_url(store_env), lease_s=LEASE)  # renewed every LEASE / 5 s
    with lock.hold() as owner:
        time.sleep(LEASE + 1)  # longer than the lease: unrenewed, the record would be stale
        held = lock.holder()
        assert held is not None and held.token == owner.token
        assert held.renewed > owner.renewed  # ISO times in UTC sort as they happen
        with monkeypatch.context() as m:  # the next run, as on another host
            m.setattr(socket, "gethostname", lambda: "another-host")
            with pytest.raises(OutputLockedError, match="lease runs out in"):
                with OutputLock(lock.group, lease_s=LEASE).hold():
                    pass
    assert lock.holder() is None  # released


def test_a_lock_not_renewed_for_its_lease_is_taken_over_from_any_host(
    store_env: S3Server | GcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = OutputLock(_url(store_env), lease_s=LEASE)
    killed = LockOwner.this_process("stitchsafe predict (killed on its node)")
    killed = dataclasses.replace(killed, host="a-node")
    fs, key = store_env.filesystem(), lock.record_path.split("://", 1)[1]
    fs.pipe_file(key, json.dumps(dataclasses.asdict(killed)).encode())
    with pytest.raises(OutputLockedError, match="host a-node"), lock.hold():
        pass
    time.sleep(LEASE + 0.5)  # its lease runs out
    notes: list[str] = []
    with lock.hold(notify=notes.append) as owner:
        assert lock.holder() == owner
    assert "took over the lock" in notes[0] and "host a-node" in notes[0]
    assert not fs.exists(key)


def test_a_holder_whose_lock_was_taken_over_stops_renewing_and_warns(
    store_env: S3Server | GcsServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lock = OutputLock(_url(store_env), lease_s=LEASE)
    fs, key = store_env.filesystem(), lock.record_path.split("://", 1)[1]
    theirs = dataclasses.replace(
        LockOwner.this_process("stitchsafe predict (took over)"), host="another-host"
    )
    # Another run takes a lock over only once its holder stopped renewing (a stopped
    # process): the holder's renewals wait while the record is replaced.
    stopped = threading.Lock()
    renew = LeaseRenewal.renew

    def renew_unless_stopped(self: LeaseRenewal) -> bool:
        with stopped:
            return renew(self)

    monkeypatch.setattr(LeaseRenewal, "renew", renew_unless_stopped)
    try:
        with caplog.at_level(logging.WARNING, logger="stitchsafe.io"), lock.hold():
            with stopped:
                fs.pipe_file(key, json.dumps(dataclasses.asdict(theirs)).encode())
            time.sleep(3 * LEASE / 5)  # two renewals at least
            assert lock.holder() == theirs  # not written over by this run's renewal
        assert lock.holder() == theirs  # nor removed on release
        assert "no longer this run's" in caplog.text
    finally:
        fs.rm(key)
