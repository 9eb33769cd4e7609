"""The console script on inputs in a real S3-compatible server (moto, on 127.0.0.1).

Outputs are written locally; they must equal those of the same run on the local copy of
the input, byte for byte, and resume must recognise the remote input.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli
from nets import make_net

from stitchsafe.models import save_checkpoint, unet_metadata

ROLES = ["embedding", "embedding", "foreground"]

if TYPE_CHECKING:  # the fixtures' type (tests/remote/conftest.py)
    from conftest import S3Server


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net, cfg = make_net("3d-d1-f2", out_channels=3)
    meta = unet_metadata(cfg, channel_roles=ROLES, labels={"threshold": 0.05, "min_size": 2})
    path = tmp_path_factory.mktemp("remote-model") / "model.pt"
    save_checkpoint(net, path, metadata=meta)
    return path


def _predict(model: Path, source: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "predict", "--model", str(model), "--input", source, "--output", str(out),
        "--tile-shape", "4,8,8", "--device", "cpu", "--no-progress", "--json", *extra,
    )  # fmt: skip


def _arrays(out: Path) -> dict[str, np.ndarray]:
    """Every array the run wrote (embeddings, labels, levels, bookkeeping), by path."""
    group = zarr.open_group(out, mode="r")
    found = {
        name: np.asarray(node)
        for name, node in group.members(max_depth=None)
        if isinstance(node, zarr.Array)
    }
    assert any(name.startswith("labels") or "/labels/" in name for name in found), found
    return found


def _assert_same_output(out: Path, reference: Path) -> None:
    got, want = _arrays(out), _arrays(reference)
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)
        assert got[name].dtype == array.dtype


@pytest.fixture(scope="module")
def reference(s3: S3Server, model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run on the local copy of the input."""
    out = tmp_path_factory.mktemp("remote-reference") / "ref.zarr"
    proc = _predict(model, str(s3.local["vol.zarr"] / "raw"), out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_predict_on_s3_equals_the_local_run_and_info_reads_it(
    s3_env: S3Server, model: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.zarr"
    proc = _predict(model, s3_env.url("vol.zarr/raw"), out)
    assert proc.returncode == 0, proc.stderr
    _assert_same_output(out, reference)
    labels = [a for n, a in _arrays(out).items() if "labels" in n]
    assert any(np.count_nonzero(a) > 0 for a in labels)  # the labels found something
    info = run_cli("info", str(out), "--json")
    assert info.returncode == 0, info.stderr
    assert s3_env.url("vol.zarr/raw") in info.stdout
    again = _predict(model, s3_env.url("vol.zarr/raw"), out, "--resume")  # identity matches
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["tiles"] == 0


def test_plan_and_check_read_an_ome_zarr_image_on_s3(s3_env: S3Server, model: Path) -> None:
    url = s3_env.url("ome.zarr")
    planned = run_cli("plan", "--model", str(model), "--input", url, "--json", "--device", "cpu")
    assert planned.returncode == 0, planned.stderr
    local = run_cli(
        "plan", "--model", str(model), "--input", str(s3_env.local["ome.zarr"]), "--json",
        "--device", "cpu",
    )  # fmt: skip
    remote_plan, local_plan = json.loads(planned.stdout)["plan"], json.loads(local.stdout)["plan"]
    assert remote_plan.pop("input")["path"] == url
    local_plan.pop("input")
    assert remote_plan == local_plan
    checked = run_cli("check", "--model", str(model), "--input", url, "--device", "cpu",
                      "--no-picture", "--json")  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def _plan(model: Path, source: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("plan", "--model", str(model), "--input", source, "--device", "cpu", *extra)


def test_bad_credentials_a_missing_bucket_and_no_endpoint_exit_2(
    s3_env: S3Server, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_env.url("vol.zarr/raw")
    missing_bucket = _plan(model, "s3://no-such-bucket/vol.zarr/raw")
    assert_bad_input(missing_bucket, "does not exist", "no bucket 'no-such-bucket'")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    nowhere = _plan(model, url, "--storage-option", "endpoint_url=http://127.0.0.1:9")
    assert_bad_input(nowhere, "cannot reach", "endpoint_url")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert_bad_input(_plan(model, url), "access to", "denied", "AWS_SECRET_ACCESS_KEY")


def test_sigkill_then_resume_on_an_s3_input_equals_the_local_run(
    s3_env: S3Server, model: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed.zarr"
    url = s3_env.url("vol.zarr/raw")
    args = ["--model", str(model), "--input", url, "--output", str(out), "--tile-shape", "4,8,8"]
    proc = subprocess.Popen(
        [EXE, "predict", *args, "--device", "cpu", "--no-progress", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if list(out.rglob("done/zarr.json")):  # tiles are being written
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    resumed = _predict(model, url, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_output(out, reference)
    # Another input is refused: the identity of the remote input is part of the run.
    other = _predict(model, s3_env.url("ome.zarr"), out, "--resume")
    assert_bad_input(other, "cannot resume", "s3://")
