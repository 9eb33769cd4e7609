"""Outputs in a real S3-compatible server (moto, on 127.0.0.1) and a GCS emulator
(fake-gcs-server, on 127.0.0.1), through the console script.

Every array written to the store (embeddings, their pyramid levels, the labels and theirs)
must equal the same run's output on a local disk; a run killed with SIGKILL completes with
``--resume``; the lock object keeps a second writer out; ``info`` and ``segment`` read the
output where it is; a missing bucket or wrong credentials are refused before anything is
written.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import signal
import subprocess
import time
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli
from nets import make_net

from stitchsafe.errors import StitchsafeError
from stitchsafe.io import (
    LockOwner,
    OutputLock,
    OutputLockedError,
    check_output_group,
    place_create,
)
from stitchsafe.models import save_checkpoint, unet_metadata

if TYPE_CHECKING:  # the fixtures' type (tests/remote/conftest.py)
    from conftest import GcsServer, S3Server

ROLES = ["embedding", "embedding", "foreground"]
BUCKET = "stitchsafe-test"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net, cfg = make_net("3d-d1-f2", out_channels=3)
    meta = unet_metadata(cfg, channel_roles=ROLES, labels={"threshold": 0.05, "min_size": 2})
    path = tmp_path_factory.mktemp("remote-output-model") / "model.pt"
    save_checkpoint(net, path, metadata=meta)
    return path


def _args(model: Path, source: str, out: str) -> list[str]:
    return [
        "--model", str(model), "--input", source, "--output", out, "--tile-shape", "4,8,8",
        "--device", "cpu", "--no-progress", "--json",
    ]  # fmt: skip


def _predict(model: Path, source: str, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("predict", *_args(model, source, out), *extra)


def _arrays(group: zarr.Group) -> dict[str, np.ndarray]:
    """Every array of the output (embeddings, labels and their levels), by path."""
    with warnings.catch_warnings():  # zarr notes the bookkeeping folder, not a zarr node
        warnings.filterwarnings("ignore", "Object at .stitchsafe is not recognized")
        members = group.members(max_depth=None)
    return {name: np.asarray(node) for name, node in members if isinstance(node, zarr.Array)}


def _assert_same_output(store: S3Server | GcsServer, url: str, reference: Path) -> None:
    remote = zarr.open_group(url, mode="r", storage_options=store.options())
    got, want = _arrays(remote), _arrays(zarr.open_group(reference, mode="r"))
    assert sorted(got) == sorted(want)
    assert any("labels" in name for name in want) and "1" in want  # labels and levels
    for name, array in want.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)
        assert got[name].dtype == array.dtype


def _lock(url: str) -> str:
    parent, _, name = url.rpartition("/")
    return f"{parent}/.{name}.stitchsafe-lock.json"


@pytest.fixture(scope="module")
def reference(s3: S3Server, model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run on the local copy of the input, written to a local disk."""
    out = tmp_path_factory.mktemp("remote-output-reference") / "ref.zarr"
    proc = _predict(model, str(s3.local["vol.zarr"] / "raw"), str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_predict_to_a_store_equals_the_local_run_and_info_segment_overwrite_read_it(
    store_env: S3Server | GcsServer, model: Path, reference: Path
) -> None:
    url, source = store_env.url("out.zarr"), store_env.url("vol.zarr/raw")
    proc = _predict(model, source, url)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["output"] == url
    _assert_same_output(store_env, url, reference)
    fs = store_env.filesystem()
    assert fs.exists(f"{BUCKET}/out.zarr/.stitchsafe/done/zarr.json")  # the bookkeeping
    assert not fs.exists(_lock(url))  # released
    assert not fs.exists(f"{BUCKET}/out.zarr/.stitchsafe/new-labels")  # swapped in
    info = run_cli("info", url, "--json")
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert source in info.stdout and described["tiles"]["done"] == described["tiles"]["total"]
    segmented = run_cli("segment", "--input", url, "--overwrite", "--no-progress", "--json")
    assert segmented.returncode == 0, segmented.stderr
    _assert_same_output(store_env, url, reference)  # old labels replaced by equal new ones


def test_sigkill_then_resume_on_a_store_completes_to_the_local_run(
    store_env: S3Server | GcsServer, model: Path, reference: Path
) -> None:
    url, source = store_env.url("killed.zarr"), store_env.url("vol.zarr/raw")
    proc = subprocess.Popen(
        [EXE, "predict", *_args(model, source, url)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    fs, mask = store_env.filesystem(), f"{BUCKET}/killed.zarr/.stitchsafe/done/zarr.json"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        fs.invalidate_cache()
        if fs.exists(mask):  # tiles are being written
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert fs.exists(_lock(url))  # the killed run's lock record is left behind
    resumed = _predict(model, source, url, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "took over the lock" in resumed.stderr
    _assert_same_output(store_env, url, reference)
    # Another input is refused: the identity of the remote input is part of the run.
    other = _predict(model, store_env.url("ome.zarr"), url, "--resume")
    assert_bad_input(other, "cannot resume", url.split("/")[0])


def test_a_second_writer_is_refused_while_the_lock_object_is_held(
    store_env: S3Server | GcsServer, model: Path
) -> None:
    url, source = store_env.url("locked.zarr"), store_env.url("vol.zarr/raw")
    fs = store_env.filesystem()
    with OutputLock(url).hold(command="stitchsafe predict (the first run)"):
        assert OutputLock(url).holder() is not None
        second = _predict(model, source, url)
        assert_bad_input(second, "another stitchsafe run", "the first run", "is writing")
    assert not fs.exists(_lock(url)) and not fs.exists(f"{BUCKET}/locked.zarr")
    # A record from another host: refused while its lease is fresh, naming when it runs
    # out and the object to delete; taken over with a note once it has run out unrenewed.
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    other = LockOwner("elsewhere", 1, now, "stitchsafe predict", renewed=now)
    key = _lock(url).split("://", 1)[1]
    fs.pipe_file(key, json.dumps(other.__dict__).encode())
    try:
        words = r"host elsewhere.*lease runs out in (59\d|600) s.*delete"
        with pytest.raises(OutputLockedError, match=words), OutputLock(url).hold():
            pass
        old = dataclasses.replace(other, renewed="2026-01-01T00:00:00+00:00")
        fs.pipe_file(key, json.dumps(old.__dict__).encode())
        notes: list[str] = []
        with OutputLock(url).hold(notify=notes.append) as owner:
            assert OutputLock(url).holder() == owner
        assert "took over the lock" in notes[0] and "host elsewhere" in notes[0]
    finally:
        if fs.exists(key):
            fs.rm(key)


def test_a_missing_bucket_or_wrong_credentials_for_the_output_exit_2(
    s3_env: S3Server, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = str(s3_env.local["vol.zarr"] / "raw")
    missing = _predict(model, source, "s3://no-such-bucket/out.zarr")
    assert_bad_input(missing, "cannot be written", "no bucket 'no-such-bucket'")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    denied = _predict(model, source, s3_env.url("denied.zarr"))
    assert_bad_input(denied, "access to", "denied", "AWS_SECRET_ACCESS_KEY")
    assert not s3_env.filesystem().exists(f"{BUCKET}/denied.zarr")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://example.org/out.zarr", ("http(s)://", "cannot write")),
        (f"s3://{BUCKET}", ("whole bucket", f"s3://{BUCKET}/out.zarr")),
    ],
    ids=["read-only-protocol", "bucket-root"],
)
def test_outputs_where_no_output_can_go_are_refused(url: str, words: tuple[str, ...]) -> None:
    with pytest.raises(StitchsafeError) as refused:
        check_output_group(url)
    for word in words:
        assert word in str(refused.value)


def test_a_missing_gcs_bucket_or_endpoint_for_the_output_exits_2_naming_gcs_settings(
    gcs_env: GcsServer, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = str(gcs_env.local["vol.zarr"] / "raw")
    missing = _predict(model, source, "gs://no-such-bucket/out.zarr")
    words = ("cannot be written", "no bucket 'no-such-bucket'", "STORAGE_EMULATOR_HOST")
    assert_bad_input(missing, *words)
    assert "AWS_" not in missing.stderr
    # Nothing listens on port 9: gcsfs retries for about half a minute, then gives up.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    nowhere = _predict(model, source, f"gs://{BUCKET}/unreachable.zarr")
    assert_bad_input(nowhere, "cannot reach", "STORAGE_EMULATOR_HOST")
    assert "AWS_" not in nowhere.stderr


def test_the_lock_object_is_created_conditionally_in_either_store(
    store_env: S3Server | GcsServer,
) -> None:
    # If-None-Match: * on S3, ifGenerationMatch=0 on GCS: the second create must fail on
    # the server, not by a listing that a racing writer could slip past.
    url = store_env.url(f".create-{uuid.uuid4().hex}.json")
    assert place_create(url, b"first")
    assert not place_create(url, b"second")
    fs, key = store_env.filesystem(), url.split("://", 1)[1]
    assert fs.cat_file(key) == b"first"
    with pytest.raises(FileExistsError):  # refused by the server itself
        fs.pipe_file(key, b"third", mode="create")
