"""HDF5 files through the optional ``h5py``: recognising, opening and listing them.

Kept apart from the reader (:mod:`._hdf5_input`) so that :mod:`._volume` can reopen a
dataset in another process without importing the reader.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import StitchsafeError

__all__: list[str] = []

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# The superblock lies at 0, or after a user block of 512, 1024, 2048... bytes.
_SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


def is_hdf5(path: str) -> bool:
    """Whether the regular file ``path`` is an HDF5 file (by its signature, not its name).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".h5") as f:
    ...     _ = f.write(HDF5_MAGIC + bytes(8)); f.flush()
    ...     is_hdf5(f.name), is_hdf5(__file__)
    (True, False)
    """
    try:
        with open(path, "rb") as f:
            for offset in _SUPERBLOCK_OFFSETS:
                f.seek(offset)
                if f.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
                    return True
    except OSError:
        return False
    return False


def h5py_module(file: str) -> Any:
    """The ``h5py`` module, or a one-paragraph error saying how to install it."""
    try:
        import h5py  # noqa: PLC0415 - optional extra, needed only for HDF5 inputs
    except ImportError:
        raise StitchsafeError(
            f"the input {file!r} is an HDF5 file, and reading HDF5 needs the optional "
            "package h5py, which is not installed. Install it with: pip install "
            "stitchsafe[hdf5] (or pip install h5py), or convert the file to zarr or TIFF."
        ) from None
    return h5py


def open_hdf5_file(file: str) -> Any:
    """``file`` opened read-only with h5py; a truncated or corrupt file is refused."""
    h5py = h5py_module(file)
    try:
        return h5py.File(file, "r")
    except OSError as e:
        reason = str(e).rstrip(". ") or type(e).__name__
        raise StitchsafeError(
            f"cannot open the HDF5 file {file!r} ({reason}). The file looks truncated or "
            "corrupt (or is still being written); copy or export it again and run again."
        ) from None


def open_hdf5_dataset(file: str, key: str) -> tuple[Any, Any]:
    """The dataset ``key`` of ``file`` (opened read-only) and the open file, to close."""
    handle = open_hdf5_file(file)
    try:
        return handle[key], handle
    except Exception:
        handle.close()
        raise


def hdf5_contents(handle: Any, limit: int = 12) -> tuple[list[str], list[str]]:
    """Paths of the datasets (with shape and dtype) and groups in an open file, at most
    ``limit`` of each (then ``...``)."""
    datasets: list[str] = []
    groups: list[str] = []

    def visit(name: str, node: Any) -> None:
        if hasattr(node, "shape"):
            shape = "x".join(map(str, node.shape)) or "scalar"
            datasets.append(f"{name} ({shape} {node.dtype})")
        else:
            groups.append(name)

    handle.visititems(visit)
    return _cut(datasets, limit), _cut(groups, limit)


def _cut(names: list[str], limit: int) -> list[str]:
    return names if len(names) <= limit else [*names[:limit], f"... ({len(names)} in all)"]


def split_hdf5_path(given: str) -> tuple[str, str] | None:
    """``(file, dataset path)`` when ``given`` is ``file.h5/path/in/file``: the first path
    component that is an existing HDF5 file (by its signature), and what follows it.

    >>> split_hdf5_path("no/such/file.h5/raw") is None
    True
    """
    parts = given.replace(os.sep, "/").split("/")
    for i in range(1, len(parts)):
        head = "/".join(parts[:i]) or "/"
        if os.path.isdir(head):
            continue
        if os.path.isfile(head) and is_hdf5(head):
            return head, "/".join(p for p in parts[i:] if p)
        return None
    return None
