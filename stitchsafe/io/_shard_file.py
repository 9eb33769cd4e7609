"""Whole shards encoded and stored in one go: the fast path of writing a tile locally.

zarr writes a shard through its asynchronous codec pipeline: a task per inner chunk, a
shard-sized buffer filled with the fill value and then with the data, the encoded chunks
joined into one more buffer, then stored. On a local disk, for the shards stitchsafe
writes (a tile's write box: every inner chunk stored, codecs ``bytes`` then ``blosc``,
index ``bytes`` then ``crc32c`` at the end), :func:`write_whole_shard` encodes each inner
chunk with the same codec library zarr uses (numcodecs' ``Blosc``, configured from the
array's metadata), so each chunk's bytes are zarr's own, and writes chunks, index and
checksum with one ``writev`` into a temporary file renamed over the shard (atomic, as
zarr's local store does). It took half the CPU time of zarr's path for a 7 x 64 x 128 x
96 float32 tile (``benchmarks/read_amplification.py`` measures predict end to end).

Chunks lie in C order in the shard (zarr lays them in Morton order; the index, which
readers go by, says where each one is). Any other case — other codecs, a shard cut by
the array's end, a byte order other than little-endian — returns ``False`` for zarr to
write it.
"""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation

__all__ = ["write_whole_shard"]

_SHUFFLES = {
    "noshuffle": numcodecs.Blosc.NOSHUFFLE,
    "shuffle": numcodecs.Blosc.SHUFFLE,
    "bitshuffle": numcodecs.Blosc.BITSHUFFLE,
}


def write_whole_shard(arr: Any, path: str, data: np.ndarray) -> bool:
    """Store ``data``, the whole shard of ``arr`` at the file ``path``, if this module
    can encode it (see above); ``False`` (nothing written) when zarr must.

    ``data`` has the shard's full shape (a shard cut by the array's end does not); the
    caller checked that ``path`` is its key on a local disk. Every inner chunk is stored,
    as zarr does with ``write_empty_chunks`` on (stitchsafe's outputs are opened so).
    """
    sharding = _plain_sharding(arr)
    if sharding is None or tuple(data.shape) != tuple(arr.shards):
        return False
    if data.dtype != np.dtype(arr.dtype).newbyteorder("<"):
        return False
    blosc = _numcodecs_blosc(sharding.codecs[1], data.dtype.itemsize)
    inner = tuple(int(c) for c in sharding.chunk_shape)
    parts: list[bytes] = []
    index: list[int] = []
    offset = 0
    for begin in itertools.product(*(range(0, s, c) for s, c in zip(data.shape, inner))):
        chunk = data[tuple(slice(b, b + c) for b, c in zip(begin, inner))]
        encoded = blosc.encode(np.ascontiguousarray(chunk))
        parts.append(encoded)
        index += (offset, len(encoded))
        offset += len(encoded)
    table = np.asarray(index, dtype="<u8").tobytes()
    parts += [table, np.uint32(google_crc32c.value(table)).astype("<u4").tobytes()]
    _store(path, parts)
    return True


def _plain_sharding(arr: Any) -> ShardingCodec | None:
    """``arr``'s sharding codec when it is the one this module writes, else ``None``."""
    codecs = getattr(getattr(arr, "metadata", None), "codecs", ())
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sharding = codecs[0]
    inner, index = sharding.codecs, sharding.index_codecs
    plain = (
        len(inner) == 2
        and _little_bytes(inner[0])
        and isinstance(inner[1], BloscCodec)
        and len(index) == 2
        and _little_bytes(index[0])
        and isinstance(index[1], Crc32cCodec)
        and sharding.index_location == ShardingCodecIndexLocation.end
    )
    return sharding if plain else None


def _little_bytes(codec: Any) -> bool:
    """Whether ``codec`` is zarr's ``bytes`` codec, little-endian (or without an endian,
    for one-byte types: then there is nothing to swap)."""
    endian = getattr(getattr(codec, "endian", None), "value", None)
    return isinstance(codec, BytesCodec) and endian in ("little", None)


def _numcodecs_blosc(codec: BloscCodec, itemsize: int) -> numcodecs.Blosc:
    """The numcodecs ``Blosc`` that zarr's ``codec`` encodes with."""
    return numcodecs.Blosc(
        cname=codec.cname.value,
        clevel=int(codec.clevel),
        shuffle=_SHUFFLES[codec.shuffle.value],
        blocksize=int(codec.blocksize),
        typesize=int(codec.typesize or itemsize),
    )


def _store(path: str, parts: list[bytes]) -> None:
    """Write ``parts`` one after the other as the file ``path``, through a temporary file
    beside it renamed over it: a reader never sees half a shard."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{uuid.uuid4().hex}.partial"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            written = os.writev(fd, parts)
            if written < sum(len(p) for p in parts):  # a short write: the rest, in turn
                rest = memoryview(b"".join(parts))[written:]
                while rest:
                    rest = rest[os.write(fd, rest) :]
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
