"""The few file-like operations an output needs, on a local path or in a remote store.

An output (a zarr v3 group with its bookkeeping and labels) may be a local folder or a
URL (``s3://bucket/out.zarr``). zarr writes both through its stores; what zarr's array
and group API does not do (is something there, what is below it, remove it, create an
object only if it is absent) is done here: on a local path with :mod:`os` as before, at
a URL through zarr's :class:`~zarr.storage.FsspecStore` (its store API, and for the
conditional create and the server-side copy the fsspec file system the store holds).
An object store has no folders: a "folder" there is a key prefix with keys below it, and
nothing is ever renamed (see :func:`place_copy`).

Every failure of the store (no access, no bucket, no endpoint) becomes one
:class:`~stitchsafe.errors.StitchsafeError` paragraph, as for remote inputs.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync as zarr_sync
from zarr.storage import FsspecStore

from ..errors import StitchsafeError
from ._stores import is_url, prepare_url, remote_failure

__all__ = [
    "place_absolute",
    "place_copy",
    "place_create",
    "place_exists",
    "place_isdir",
    "place_isfile",
    "place_keys",
    "place_listdir",
    "place_read",
    "place_remove",
    "place_size",
    "place_write",
]

T = TypeVar("T")


def _store(url: str) -> FsspecStore:
    """A writable zarr store whose root is ``url``."""
    try:
        return FsspecStore.from_url(prepare_url(url), read_only=False)
    except Exception as e:  # a malformed URL, a missing file system: the store says what
        raise remote_failure(url, e) from None


def _run(url: str, work: Callable[[FsspecStore], Awaitable[T]]) -> T:
    """``work(store)`` at ``url``, run to its end; failures as one paragraph."""
    store = _store(url)
    try:
        return zarr_sync(work(store))
    except StitchsafeError:
        raise
    except Exception as e:
        raise remote_failure(url, e) from None


def _split(url: str) -> tuple[str, str]:
    """``(parent URL, name)`` of ``url``: ``("s3://b/out.zarr", "zarr.json")``."""
    parent, name = posixpath.split(url.rstrip("/"))
    return parent, name


def place_absolute(path: str | os.PathLike[str]) -> str:
    """``path`` made absolute (a URL as it is), for workers that run elsewhere.

    >>> place_absolute("s3://bucket/out.zarr"), place_absolute("/data/out.zarr")
    ('s3://bucket/out.zarr', '/data/out.zarr')
    """
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def place_exists(path: str | os.PathLike[str], *, links: bool = False) -> bool:
    """Whether anything is at ``path``: a file or folder, or at a URL an object or keys
    below it. ``links``: a dangling symbolic link counts (:func:`os.path.lexists`)."""
    path = os.fspath(path)
    if not is_url(path):
        return os.path.lexists(path) if links else os.path.exists(path)
    return place_isfile(path) or place_isdir(path)


def place_isdir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder; at a URL, whether keys lie below it."""
    path = os.fspath(path)
    if not is_url(path):
        return os.path.isdir(path)

    async def below(store: FsspecStore) -> bool:
        return not await store.is_empty("")

    return _run(path, below)


def place_isfile(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file; at a URL, whether an object has exactly that key."""
    path = os.fspath(path)
    if not is_url(path):
        return os.path.isfile(path)
    parent, name = _split(path)

    async def there(store: FsspecStore) -> bool:
        return await store.exists(name)

    return _run(parent, there)


def place_listdir(path: str | os.PathLike[str]) -> list[str]:
    """The names one level below ``path`` (files and folders), sorted; absent: ``[]``."""
    path = os.fspath(path)
    if not is_url(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    async def names(store: FsspecStore) -> list[str]:
        return sorted({name.strip("/") async for name in store.list_dir("")} - {""})

    return _run(path, names)


def place_keys(path: str | os.PathLike[str]) -> list[str]:
    """Every file below ``path`` (at a URL every key), relative and ``/``-separated."""
    path = os.fspath(path)
    if not is_url(path):
        return [
            posixpath.join(os.path.relpath(root, path).replace(os.sep, "/"), name).removeprefix(
                "./"
            )
            for root, _, names in os.walk(path)
            for name in names
        ]

    async def keys(store: FsspecStore) -> list[str]:
        return [key async for key in store.list_prefix("")]

    return _run(path, keys)


def place_size(path: str | os.PathLike[str]) -> int:
    """The bytes stored below ``path`` (every file, at a URL every object); absent: 0."""
    path = os.fspath(path)
    if not is_url(path):
        stored = 0
        for here, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):  # removed while we walk: no longer counts
                    stored += os.lstat(os.path.join(here, name)).st_size
        return stored

    async def size(store: FsspecStore) -> int:
        return int(await store.getsize_prefix(""))

    return _run(path, size)


def place_remove(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` and everything below it (a file, a folder, a link, or at a URL an
    object and every key below it); nothing when it is absent."""
    path = os.fspath(path)
    if not is_url(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        return
    parent, name = _split(path)

    async def remove(store: FsspecStore) -> None:
        await store.delete_dir(name)
        await store.delete(name)

    _run(parent, remove)


def place_read(path: str | os.PathLike[str]) -> bytes | None:
    """The bytes of the file (object) at ``path``; ``None`` when there is none."""
    path = os.fspath(path)
    if not is_url(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None
    parent, name = _split(path)

    async def read(store: FsspecStore) -> bytes | None:
        buf = await store.get(name, prototype=default_buffer_prototype())
        return None if buf is None else buf.to_bytes()

    return _run(parent, read)


def place_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` as the file (object) ``path``, replacing what was there."""
    path = os.fspath(path)
    if not is_url(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    parent, name = _split(path)

    async def write(store: FsspecStore) -> None:
        await store.set(name, default_buffer_prototype().buffer.from_bytes(data))

    _run(parent, write)


def place_create(url: str, data: bytes) -> bool:
    """Create the object ``url`` holding ``data`` only if there is none: ``False`` if one
    was there.

    On S3 (and stores like it) the write is conditional (``If-None-Match: *``): of two
    writers at once exactly one succeeds. Where the file system cannot write
    conditionally, the object is written when absent and read back, so that a writer
    that lost a race almost always sees it; there this is advisory.
    """
    parent, name = _split(url)

    async def create(store: FsspecStore) -> bool:
        path = f"{store.path}/{name}"
        try:
            await store.fs._pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except (TypeError, NotImplementedError, ValueError):  # no conditional writes here
            if await store.exists(name):
                return False
            await store.fs._pipe_file(path, data)
            buf = await store.get(name, prototype=default_buffer_prototype())
            return buf is not None and buf.to_bytes() == data
        return True

    return _run(parent, create)


def place_copy(source: str, target: str, keys: Sequence[str]) -> None:
    """Copy ``keys`` (relative to ``source``) to the same keys below ``target``, in the
    store (a server-side copy on S3), in the order given by groups: all but the last key
    at once, then the last one. Both URLs must be in the same store."""
    if not keys:
        return

    async def copy(store: FsspecStore) -> None:
        fs: Any = store.fs
        src, dst = _store(source).path, _store(target).path
        first, last = list(keys[:-1]), keys[-1]
        if first:
            await fs._copy([f"{src}/{k}" for k in first], [f"{dst}/{k}" for k in first])
        await fs._copy(f"{src}/{last}", f"{dst}/{last}")

    _run(target, copy)
