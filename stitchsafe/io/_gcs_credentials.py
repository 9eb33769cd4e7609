"""Google Cloud credentials named by a file, checked before a ``gs://`` store is opened.

gcsfs takes its credentials from ``--storage-option token=...`` or, by default, from the
file named by ``GOOGLE_APPLICATION_CREDENTIALS``, and fails badly on a bad one: a missing
token file is taken for a raw access token (and reported as an unreachable
``oauth2.googleapis.com``), a missing default file silently means anonymous access, a
malformed one ends in a ``KeyError``, and a key the token endpoint refuses is retried for
about a minute before a bare "401 Invalid Credentials". So a named file is read first:
it must exist and be a Google credentials file, and a service-account key or a user's
refresh token is exchanged for an access token once, as gcsfs would, so that a refusal
is reported at once with the endpoint's reason. A network failure there decides nothing
(the store reports it). Each file is checked once per process and version of the file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import StitchsafeError

__all__: list[str] = []  # used by ._stores; checked whenever a gs:// store opens

ENV = "GOOGLE_APPLICATION_CREDENTIALS"
# gcsfs's names of how to authenticate, which are not files.
_METHODS = ("google_default", "cache", "cloud", "anon", "browser", "token")
_TYPES = (
    "service_account",
    "authorized_user",
    "external_account",
    "external_account_authorized_user",
    "impersonated_service_account",
)
_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# Files already checked: (path, modification time, size).
_CHECKED: set[tuple[str, int, int]] = set()


def check_gcs_credentials(options: dict[str, Any]) -> None:
    """Refuse, in one paragraph, a credentials file that gcsfs would fail on.

    ``options`` are the storage options of the ``gs://`` store (``token`` among them).
    """
    named = _named_file(options)
    if named is None:
        return
    path, source = named
    try:
        stat = os.stat(path)
    except OSError:
        raise StitchsafeError(
            f"the Google credentials file {path!r} ({source}) does not exist or cannot be "
            f"read. Point {source} at a service-account key or the file `gcloud auth "
            "application-default login` writes, or pass --storage-option token=anon for a "
            "public bucket."
        ) from None
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key in _CHECKED:
        return
    info = _read(path, source)
    _exchange(info, path, source)
    _CHECKED.add(key)


def _named_file(options: dict[str, Any]) -> tuple[str, str] | None:
    """The credentials file gcsfs would use, and where it was named; ``None`` if none."""
    token = options.get("token")
    if isinstance(token, str) and token not in _METHODS:
        if os.sep in token or token.endswith(".json") or os.path.exists(token):
            return token, "--storage-option token"
        return None  # a raw access token
    if token not in (None, "google_default"):
        return None  # anonymous, the metadata server, a dict of credentials...
    value = os.environ.get(ENV, "")
    return (value, ENV) if value else None


def _read(path: str, source: str) -> dict[str, Any]:
    """The file's JSON object, refused unless it is a kind of Google credentials."""
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise StitchsafeError(
            f"the Google credentials file {path!r} ({source}) is not JSON ({e}); it should "
            "be a service-account key or the file `gcloud auth application-default login` "
            "writes."
        ) from None
    kind = info.get("type") if isinstance(info, dict) else None
    if kind not in _TYPES:
        raise StitchsafeError(
            f"the Google credentials file {path!r} ({source}) is not a Google credentials "
            f"file (its 'type' is {kind!r}, not one of {', '.join(_TYPES)}); it should be a "
            "service-account key or the file `gcloud auth application-default login` writes."
        )
    return info


def _exchange(info: dict[str, Any], path: str, source: str) -> None:
    """Ask the token endpoint for an access token with a service-account key or a user's
    refresh token; refuse what it refuses. Other kinds are left to gcsfs."""
    try:
        from google.auth import exceptions  # noqa: PLC0415 - with gcsfs only
        from google.auth.transport.requests import Request  # noqa: PLC0415
        from google.oauth2 import credentials, service_account  # noqa: PLC0415
    except ImportError:
        return  # no gcsfs: opening the store says so
    try:
        if info["type"] == "service_account":
            made: Any = service_account.Credentials.from_service_account_info(info, scopes=[_SCOPE])
        elif info["type"] == "authorized_user":
            made = credentials.Credentials.from_authorized_user_info(info, scopes=[_SCOPE])
        else:
            return
    except (KeyError, ValueError, TypeError) as e:
        raise StitchsafeError(
            f"the Google credentials file {path!r} ({source}) is a {info['type']} file that "
            f"cannot be used ({type(e).__name__}: {str(e).rstrip('. ')}); download the key or "
            "log in again."
        ) from None
    try:
        made.refresh(Request())
    except exceptions.RefreshError as e:
        reason = str(e.args[0] if e.args else e).rstrip(". ")
        raise StitchsafeError(
            f"access to Google Cloud Storage was refused: the token endpoint did not accept "
            f"the credentials in {path!r} ({source}): {reason}. Check that the key or login "
            "is current (not deleted, disabled or revoked), or name other credentials."
        ) from None
    except exceptions.TransportError:
        return  # no network to the token endpoint: the store reports that
