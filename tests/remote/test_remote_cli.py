"""The console script on inputs in a real S3-compatible server (moto, on 127.0.0.1).

``plan`` and ``check`` read an OME-Zarr image in the store as they read its local copy; bad
credentials, a missing bucket and an unreachable endpoint exit 2. ``predict`` from and to the
store, and resume, are tested in ``test_remote_output.py``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cli_helpers import assert_bad_input, run_cli
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
