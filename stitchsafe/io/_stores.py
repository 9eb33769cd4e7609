"""Remote stores: zarr inputs at ``s3://``, ``gs://``, ``https://``... URLs, and outputs at
``s3://``, ``gs://``... URLs, through zarr.

A URL is read through :class:`zarr.storage.FsspecStore` (fsspec's file systems: ``s3fs``
for ``s3://``, ``gcsfs`` for ``gs://``, aiohttp for ``http(s)://``). Credentials and
endpoints come from where those libraries look (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``~/.aws``...), from fsspec's own
configuration (``FSSPEC_S3='{"endpoint_url": ...}'``), or from
:func:`use_storage_options` (``--storage-option``), which puts them into that
configuration for every protocol the run opens, and into the environment, so that
worker processes started later read the same store. Every failure of the store (no
access, no bucket, no endpoint) becomes one :class:`~stitchsafe.errors.StitchsafeError`
paragraph (:func:`remote_failure`); an output URL is checked before anything is written
(:func:`check_remote_output`).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import fsspec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync as zarr_sync
from zarr.storage import FsspecStore

from ..errors import StitchsafeError
from ._gcs_credentials import ENV as GCS_CREDENTIALS_ENV
from ._gcs_credentials import check_gcs_credentials
from ._volume import SUPPORTED_INPUTS

__all__ = ["is_url", "parse_storage_options", "use_storage_options"]

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# The options of the running command (--storage-option), for every remote protocol.
_OPTIONS: dict[str, Any] = {}
# fsspec's configuration of each protocol before the options went into it.
_BASE: dict[str, tuple[dict[str, Any], str | None]] = {}
_CONNECTION = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ConnectionError",
    "TimeoutError",
    "gaierror",
)
# gcsfs's protocols (the others named in hints are S3-compatible stores).
_GCS = ("gs", "gcs")
_ACCESS = (
    "PermissionError",
    "NoCredentialsError",
    "PartialCredentialsError",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
)


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URL of a remote store (``s3://``, ``gs://``, ``https://``...).

    >>> is_url("s3://bucket/vol.zarr"), is_url("https://host/vol.zarr"), is_url("vol.zarr")
    (True, True, False)
    >>> is_url("file:///data/vol.zarr")  # a local path in URL form: read as a local path
    False
    """
    if not isinstance(path, (str, os.PathLike)):  # an array in hand, say
        return False
    match = _URL.match(os.fspath(path))
    return match is not None and match.group(1).lower() not in ("file", "local")


def protocol_of(url: str) -> str:
    """The protocol of a URL, lower case: ``s3``, ``gs``, ``https``..."""
    match = _URL.match(url)
    return match.group(1).lower() if match else "file"


def parse_storage_options(values: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items (values as JSON where they parse) or JSON objects, merged.

    >>> parse_storage_options(["endpoint_url=http://127.0.0.1:9000", "anon=true"])
    {'endpoint_url': 'http://127.0.0.1:9000', 'anon': True}
    >>> parse_storage_options(['{"client_kwargs": {"region_name": "eu-west-1"}}'])
    {'client_kwargs': {'region_name': 'eu-west-1'}}
    >>> parse_storage_options(["anon"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --storage-option 'anon' is neither KEY=VALUE nor ...
    """
    options: dict[str, Any] = {}
    for item in values:
        text = item.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError as e:
                raise StitchsafeError(
                    f"--storage-option {item!r} starts like a JSON object but is not one "
                    f"({e}); pass KEY=VALUE, or a JSON object such as "
                    '\'{"endpoint_url": "https://..."}\'.'
                ) from None
            options.update(parsed)
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise StitchsafeError(
                f"--storage-option {item!r} is neither KEY=VALUE nor a JSON object; pass e.g. "
                "--storage-option endpoint_url=https://s3.example.org (repeat it for more)."
            )
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value  # a bare string
    return options


def use_storage_options(options: dict[str, Any]) -> None:
    """Open every remote store of this process with ``options`` (``--storage-option``).

    They are given to the fsspec file system of each protocol the run opens (see
    :func:`prepare_url`), over fsspec's own configuration; earlier options are withdrawn.
    """
    for protocol, (conf, env) in _BASE.items():
        fsspec.config.conf[protocol] = conf
        variable = f"FSSPEC_{protocol.upper()}"
        if env is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = env
    _BASE.clear()
    _OPTIONS.clear()
    _OPTIONS.update(options)


def prepare_url(url: str) -> str:
    """``url`` without a trailing slash, its protocol configured with the run's options.

    The options go into fsspec's configuration (what every file system of the protocol
    is made with, in zarr's stores too) and into the ``FSSPEC_<PROTOCOL>`` environment
    variable, which worker processes started later read when they import fsspec. A
    ``gs://`` store's credentials file is checked first (:mod:`._gcs_credentials`).
    """
    protocol = protocol_of(url)
    if _OPTIONS:
        variable = f"FSSPEC_{protocol.upper()}"
        base = _BASE.setdefault(
            protocol, (dict(fsspec.config.conf.get(protocol, {})), os.environ.get(variable))
        )
        conf = {**base[0], **_OPTIONS}
        fsspec.config.conf[protocol] = conf
        os.environ[variable] = json.dumps(conf)
    if protocol in _GCS:
        check_gcs_credentials(dict(fsspec.config.conf.get(protocol, {})))
    return url.rstrip("/")


def _store(url: str) -> FsspecStore:
    """A read-only zarr store at ``url``."""
    try:
        return FsspecStore.from_url(url, read_only=True)
    except ImportError as e:
        raise StitchsafeError(
            f"reading {url!r} needs the fsspec file system for {protocol_of(url)}:// URLs, "
            f"which is not installed ({e}). Install it (s3fs for s3:// and aiohttp for "
            "https:// come with pip install 'stitchsafe[remote]'; gcsfs for gs://), or copy "
            "the image to a local disk."
        ) from None
    except Exception as e:  # a malformed URL or option: the store says what
        raise remote_failure(url, e) from None


def read_key(url: str, name: str) -> bytes | None:
    """The bytes of ``name`` inside the store at ``url`` (``None`` when absent)."""
    store = _store(url)
    try:
        buf = zarr_sync(store.get(name, prototype=default_buffer_prototype()))
    except Exception as e:
        raise remote_failure(f"{url}/{name}", e) from None
    return None if buf is None else buf.to_bytes()


def list_children(url: str) -> list[str]:
    """The names one level below ``url`` (empty where the store cannot list: https)."""
    store = _store(url)

    async def names() -> list[str]:
        return [name async for name in store.list_dir("")]

    try:
        return sorted(zarr_sync(names()))
    except Exception:  # noqa: BLE001 - listing only names candidates in messages
        return []


def missing_remote(url: str) -> StitchsafeError:
    """Why there is no zarr array or group at ``url``: no bucket, or nothing at that key."""
    store = _store(url)
    bucket = store.path.split("/", 1)[0]
    if protocol_of(url) not in ("http", "https") and bucket:
        try:
            found = zarr_sync(store.fs._exists(bucket))
        except Exception as e:
            raise remote_failure(url, e) from None
        if not found:
            return StitchsafeError(
                f"the input {url!r} does not exist: there is no bucket {bucket!r} at this "
                "endpoint (or these credentials cannot see it). Check the URL, the endpoint "
                f"({_endpoint_hint(url)}) and the credentials."
            )
    return StitchsafeError(
        f"the input {url!r} does not exist: the store holds no zarr array or group there "
        "(no zarr.json, .zarray or .zgroup). Check the URL and the key; remote inputs are "
        f"read as zarr (copy a TIFF or HDF5 file to a local disk first); {SUPPORTED_INPUTS}."
    )


def check_remote_output(group: str) -> None:
    """Refuse an output URL that cannot hold an output, before anything is written: a
    read-only protocol (``https://``), a bucket without a key, a bucket that does not
    exist, credentials that may not list it. Local paths pass.

    >>> check_remote_output("out.zarr")
    >>> check_remote_output("https://host/out.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the output 'https://host/out.zarr' is ...
    """
    if not is_url(group):
        return
    if protocol_of(group) in ("http", "https"):
        raise StitchsafeError(
            f"the output {group!r} is at an http(s):// URL, which stitchsafe reads but cannot "
            "write. Choose an output in an object store (e.g. --output s3://bucket/out.zarr) "
            "or on a local disk."
        )
    store = _store(prepare_url(group))
    bucket, _, key = store.path.partition("/")
    if not key:
        raise StitchsafeError(
            f"the output {group!r} is a whole bucket; give the output's own key in it, e.g. "
            f"--output {group.rstrip('/')}/out.zarr (the run's lock object goes beside it)."
        )
    try:
        zarr_sync(store.is_empty(""))
    except FileNotFoundError:
        raise StitchsafeError(
            f"the output {group!r} cannot be written: there is no bucket {bucket!r} at this "
            "endpoint (or these credentials cannot see it). Create the bucket first, or "
            f"check the URL, the endpoint ({_endpoint_hint(group)}) and the credentials."
        ) from None
    except Exception as e:
        raise remote_failure(group, e) from None


def remote_failure(url: str, error: BaseException) -> StitchsafeError:
    """One paragraph for a remote store that could not be read: access, endpoint, or else."""
    names = {cls.__name__ for cls in type(error).__mro__}
    response = getattr(error, "response", None)
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    reason = f"{type(error).__name__}: {error}".rstrip(". ")
    # gcsfs's HttpError carries the HTTP status: 401 and 403 are refused credentials.
    refused = "HttpError" in names and getattr(error, "code", None) in (401, 403)
    if names & set(_ACCESS) or code in _ACCESS or refused:
        return StitchsafeError(
            f"access to {url!r} was denied ({reason}). Check the credentials "
            f"({_credentials_hint(url)}) and that they may read (for an output, also write) "
            "this bucket."
        )
    if names & set(_CONNECTION):
        return StitchsafeError(
            f"cannot reach the store of {url!r} ({reason}). Check the endpoint "
            f"({_endpoint_hint(url)}) and the network, and run again."
        )
    return StitchsafeError(
        f"cannot read {url!r} ({reason}). Check the URL, the endpoint and the credentials "
        "(--storage-option KEY=VALUE passes options to the store), and run again."
    )


def _endpoint_hint(url: str) -> str:
    """Where the endpoint of ``url``'s protocol is set.

    >>> _endpoint_hint("gs://bucket/a.zarr")
    'for gs:// STORAGE_EMULATOR_HOST or --storage-option endpoint_url=...'
    """
    protocol = protocol_of(url)
    if protocol in ("http", "https"):
        return f"for {protocol}:// the host in the URL"
    variable = "STORAGE_EMULATOR_HOST" if protocol in _GCS else "AWS_ENDPOINT_URL"
    return f"for {protocol}:// {variable} or --storage-option endpoint_url=..."


def _credentials_hint(url: str) -> str:
    """Where the credentials of ``url``'s protocol are set."""
    if protocol_of(url) in ("http", "https"):
        return "for http(s):// the headers the server wants, as --storage-option client_kwargs=..."
    if protocol_of(url) in _GCS:
        return (
            f"for {protocol_of(url)}:// {GCS_CREDENTIALS_ENV}, gcloud's "
            "application-default login, or --storage-option token=KEY.json"
        )
    return (
        f"for {protocol_of(url)}:// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, "
        "or --storage-option key=... --storage-option secret=..."
    )
