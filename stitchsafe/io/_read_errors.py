"""Errors for reads that failed: which file, dataset or chunk of an input cannot be read.

:func:`read_failure` names the chunk that cannot be decoded (each chunk under the failed
read is tried on its own), after letting zarr's other chunk reads end, so that a process
exiting on the error prints no tracebacks of reads left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

from zarr.core.sync import sync as zarr_sync

from ..errors import StitchsafeError
from ..geometry import Box
from ._bioio_file import MICROSCOPE_KINDS, format_of_kind

# Used by the volumes of this package only: no public names.
__all__: list[str] = []


def box_text(box: Box, axes: tuple[str, ...]) -> str:
    """A box in words, per named axis.

    >>> box_text(Box((0, 16), (8, 32)), ("y", "x"))
    'y 0:8, x 16:32'
    """
    return ", ".join(f"{n} {b}:{e}" for n, b, e in zip(axes, box.begin, box.end))


def read_failure(
    source: Any, box: Box, axes: tuple[str, ...], index: tuple[Any, ...], error: Exception
) -> Exception:
    """The error for a read of ``box`` (``index`` into the stored array) that failed with
    ``error``: the file, or the chunk that cannot be read, named. ``source``: the volume's
    stored array (its ``kind``, ``location``, ``key`` and ``array()``)."""
    _settle_reads()
    reason = f"{type(error).__name__}: {error}".rstrip(". ")
    if source.kind == "tiff":
        return StitchsafeError(
            f"cannot read {box_text(box, axes)} of the TIFF file {source.location!r} "
            f"({reason}). The file is corrupt or truncated; re-export it (or convert it to "
            "zarr) and run again."
        )
    if source.kind == "hdf5":
        return StitchsafeError(
            f"cannot read {box_text(box, axes)} of the dataset {source.key!r} of the "
            f"HDF5 file {source.location!r} ({reason}). The file is corrupt or truncated; "
            "copy or export it again and run again."
        )
    if source.kind in MICROSCOPE_KINDS:
        return StitchsafeError(
            f"cannot read {box_text(box, axes)} of the {format_of_kind(source.kind).name} "
            f"file {source.location!r} ({reason}). The file is corrupt or truncated; copy or "
            "export it again and run again."
        )
    where = f"the zarr array {source.location!r}"
    bad = _bad_chunk(source, index)
    if bad is None:
        return StitchsafeError(
            f"cannot read {box_text(box, axes)} of {where} ({reason}). The store may "
            "be corrupt, or was changed while stitchsafe read it; check it and run again."
        )
    key, coords, reason = bad
    file = f"{source.location.rstrip('/')}/{key}"
    return StitchsafeError(
        f"cannot read chunk {key!r} (chunk index {coords}, the file {file!r}) of {where}: "
        f"{reason}. The chunk is corrupt or truncated; restore it from a copy (or rewrite "
        "the array) and run again."
    )


async def _others_done() -> None:
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current]
    if others:
        await asyncio.wait(others, timeout=5)


def _settle_reads() -> None:
    """Let the chunk reads still running in zarr's event loop end (after one failed).

    zarr reads a box's chunks as tasks; when one fails the others run on, and a process
    that exits at once destroys them mid-way, printing tracebacks after the error.
    """
    with contextlib.suppress(Exception):
        zarr_sync(_others_done())


def _bad_chunk(source: Any, index: tuple[Any, ...]) -> tuple[str, tuple[int, ...], str] | None:
    """Key, grid index and error of the first chunk under ``index`` that cannot be read.

    Each chunk (shard, for sharded arrays) is read on its own; ``None`` when all of them
    read (the failure was not one chunk's) or the array cannot be searched.
    """
    try:
        arr = source.array()
        shape = tuple(int(n) for n in arr.shape)
        chunks = tuple(int(c) for c in arr.metadata.chunk_grid.chunk_shape)
        ranges = []
        for i, n, c in zip(index, shape, chunks):
            lo, hi = (
                (i, i + 1)
                if isinstance(i, int)
                else (i.start or 0, n if i.stop is None else i.stop)
            )
            ranges.append(range(lo // c, (hi - 1) // c + 1))
    except Exception:
        return None
    for coords in itertools.islice(itertools.product(*ranges), 100_000):
        cell = tuple(slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(coords, chunks, shape))
        try:
            arr[cell]
        except MemoryError:
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}".rstrip(". ")
            return str(arr.metadata.encode_chunk_key(coords)), tuple(coords), reason
    return None
