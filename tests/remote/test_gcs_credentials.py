"""``gs://`` credentials named by a file, through the console script against fake-gcs-server.

The emulator does not authenticate, so the credentials are judged where Google judges them:
at the token endpoint a service-account key names (``token_uri``). Here that is a small
server on 127.0.0.1 that answers as Google's does, granting an access token or refusing
the grant (``400 invalid_grant``). A refused key, a missing file and a file that is not
Google credentials each exit 2 in one paragraph naming the file and where it was named; a
granted key reads the bucket. gcsfs's own error for a refused request (``HttpError`` 401
or 403) is reported as refused access.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cli_helpers import assert_bad_input, run_cli

if TYPE_CHECKING:  # the fixtures' type (tests/remote/conftest.py)
    from conftest import GcsServer


class TokenEndpoint:
    """An OAuth 2.0 token endpoint on 127.0.0.1 that grants or refuses every request."""

    def __init__(self) -> None:
        self.grant = False
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.requests += 1
                if endpoint.grant:
                    status, body = 200, {"access_token": "t", "expires_in": 3600}
                else:
                    status = 400
                    body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
                data = json.dumps({**body, "token_type": "Bearer"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"


@pytest.fixture()
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    thread = threading.Thread(target=endpoint.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        endpoint.server.shutdown()
        endpoint.server.server_close()


def _service_account_key(path: Path, token_uri: str) -> Path:
    """A service-account key file with a fresh RSA key, its token endpoint ``token_uri``."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - google-auth's
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "1",
        "private_key": pem.decode(),
        "client_email": "reader@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(key))
    return path


def _plan(url: str, *extra: str) -> Any:
    return run_cli("plan", "--input", url, "--device", "cpu", *extra)


def test_a_refused_key_exits_2_and_a_granted_one_reads(
    gcs_env: GcsServer,
    token_endpoint: TokenEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = _service_account_key(tmp_path / "key.json", token_endpoint.url)
    url = gcs_env.url("vol.zarr/raw")
    refused = _plan(url, "--storage-option", f"token={key}")
    assert_bad_input(refused, "refused", "invalid_grant", str(key), "--storage-option token")
    # Asked once (google-auth may repeat a request), not for a minute as gcsfs does alone.
    assert 1 <= token_endpoint.requests <= 3
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    assert_bad_input(_plan(url), "refused", "GOOGLE_APPLICATION_CREDENTIALS")
    token_endpoint.grant = True
    granted = _plan(url)
    assert granted.returncode == 0, granted.stderr
    assert "tile write box" in granted.stdout


def test_a_missing_or_foreign_credentials_file_exits_2(
    gcs_env: GcsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = gcs_env.url("vol.zarr/raw")
    missing = tmp_path / "no-such-key.json"
    assert_bad_input(
        _plan(url, "--storage-option", f"token={missing}"), "does not exist", str(missing)
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    assert_bad_input(_plan(url), "does not exist", "GOOGLE_APPLICATION_CREDENTIALS")
    not_json = tmp_path / "notes.txt"
    not_json.write_text("my key is somewhere else")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(not_json))
    assert_bad_input(_plan(url), "is not json", str(not_json))
    foreign = tmp_path / "aws.json"
    foreign.write_text(json.dumps({"AccessKeyId": "x", "SecretAccessKey": "y"}))
    assert_bad_input(
        _plan(url, "--storage-option", f"token={foreign}"),
        "not a google credentials file",
        "service_account",
    )
    half = tmp_path / "half.json"
    half.write_text(json.dumps({"type": "service_account"}))
    assert_bad_input(
        _plan(url, "--storage-option", f"token={half}"), "cannot be used", "client_email"
    )
    # Anonymous access names no file: the emulator's bucket reads.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    assert _plan(url, "--storage-option", "token=anon").returncode == 0


@pytest.mark.parametrize("status", [401, 403])
def test_gcsfs_refusals_are_reported_as_refused_access(gcs_env: GcsServer, status: int) -> None:
    # gcs_env first: gcsfs reads GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT when it is imported
    # (imported with it unset, it asks real GCS over gRPC and waits for ever).
    import gcsfs.retry as retry  # noqa: PLC0415
    from stitchsafe.io._stores import remote_failure  # noqa: PLC0415 - the function itself

    error = retry.HttpError({"code": status, "message": "Invalid Credentials"})
    message = str(remote_failure("gs://bucket/vol.zarr", error))
    assert "was denied" in message and "GOOGLE_APPLICATION_CREDENTIALS" in message
    other = str(remote_failure("gs://bucket/vol.zarr", retry.HttpError({"code": 404})))
    assert "was denied" not in other
