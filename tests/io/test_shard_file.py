"""Whole shards stored without zarr's codec pipeline hold zarr's own bytes.

:func:`write_whole_shard` encodes each inner chunk itself and writes the shard with one
``writev``. Against zarr writing the same data into an array with the same metadata:
every inner chunk's stored bytes are identical, the index is valid (zarr checks its
crc32c when it reads) and zarr reads the data back; over 2-D and 3-D images with
channels, float32/uint16/uint8 and three blosc settings. Anything it cannot write
(unsharded, other codecs, big-endian, a shard cut by the array's end) is left to zarr
with nothing written, and :func:`write_block` goes through it for whole local shards
(chunks in C order: zarr's own path lays them in Morton order) and through zarr for the
cut shards at the array's end.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from stitchsafe.geometry import Box
from stitchsafe.io import ChunkPolicy, ImageLayout, create_output, write_block, write_whole_shard

CASES = {  # shape, shards, inner chunks, dtype, blosc's cname and shuffle
    "3d-f4-lz4": ((3, 16, 32, 24), (3, 8, 16, 12), (1, 8, 8, 6), "f4", "lz4", "shuffle"),
    "2d-f4-zstd": ((2, 32, 40), (2, 16, 20), (1, 8, 10), "f4", "zstd", "bitshuffle"),
    "3d-u2-blosclz": ((1, 16, 16, 16), (1, 8, 8, 8), (1, 4, 4, 4), "u2", "blosclz", "noshuffle"),
    "2d-u1": ((1, 24, 24), (1, 12, 24), (1, 6, 8), "u1", "lz4", "shuffle"),
}


def _array(path: Path, shape: Any, shards: Any, chunks: Any, dtype: str, codec: Any) -> Any:
    """A sharded array storing every chunk (as stitchsafe's outputs are opened)."""
    arr = zarr.create_array(
        path, shape=shape, shards=shards, chunks=chunks, dtype=dtype, compressors=codec
    )
    return zarr.Array(
        zarr.AsyncArray(arr.metadata, arr.store_path, config={"write_empty_chunks": True})
    )


def _shard_path(arr: Any, root: Path, index: tuple[int, ...]) -> Path:
    return root.joinpath(*str(arr.metadata.encode_chunk_key(index)).split("/"))


def _stored_chunks(path: Path, grid: tuple[int, ...]) -> dict[tuple[int, ...], bytes]:
    """The inner chunks' stored bytes of the shard file ``path`` by their coordinates,
    after checking the index's crc32c; also the chunks' order in the file."""
    raw = path.read_bytes()
    n = math.prod(grid)
    table, crc = raw[-(16 * n + 4) : -4], raw[-4:]
    assert int.from_bytes(crc, "little") == google_crc32c.value(table)
    index = np.frombuffer(table, dtype="<u8").reshape(*grid, 2)
    return {
        coords: raw[int(index[coords][0]) : int(index[coords][0] + index[coords][1])]
        for coords in itertools.product(*map(range, grid))
    }


def _c_ordered(path: Path, grid: tuple[int, ...]) -> bool:
    raw = path.read_bytes()
    table = raw[-(16 * math.prod(grid) + 4) : -4]
    offsets = np.frombuffer(table, dtype="<u8")[0::2]
    return bool(np.all(np.diff(offsets.astype(np.int64)) > 0))


@pytest.mark.parametrize("case", list(CASES))
def test_whole_shard_holds_zarrs_own_chunk_bytes(tmp_path: Path, case: str) -> None:
    shape, shards, chunks, dtype, cname, shuffle = CASES[case]
    codec = BloscCodec(cname=cname, clevel=5, shuffle=shuffle)
    ours = _array(tmp_path / "ours.zarr", shape, shards, chunks, dtype, codec)
    theirs = _array(tmp_path / "theirs.zarr", shape, shards, chunks, dtype, codec)
    rng = np.random.default_rng(1)
    wider = (rng.normal(size=(*shape[:-1], shape[-1] + 2)) * 50 + 100).astype(dtype)
    data = wider[..., 1:-1]  # its blocks are strided views, as a tile's crop is
    # the second shard along every spatial axis that has two
    index = (0, *(int(n > s) for n, s in zip(shape[1:], shards[1:])))
    where = tuple(slice(i * s, (i + 1) * s) for i, s in zip(index, shards))
    block = np.ascontiguousarray(data[where])

    path = _shard_path(ours, tmp_path / "ours.zarr", index)
    assert not data[where].flags.c_contiguous  # a view into the larger array
    assert write_whole_shard(ours, str(path), data[where])
    theirs[where] = block

    grid = tuple(s // c for s, c in zip(shards, chunks))
    mine = _stored_chunks(path, grid)
    assert mine == _stored_chunks(_shard_path(theirs, tmp_path / "theirs.zarr", index), grid)
    assert _c_ordered(path, grid)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "ours.zarr", mode="r")[where], block)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def _refusals(tmp_path: Path) -> dict[str, tuple[Any, np.ndarray]]:
    """Arrays and blocks :func:`write_whole_shard` must leave to zarr."""
    blosc = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    cut = _array(tmp_path / "cut.zarr", (2, 20, 20), (2, 16, 16), (1, 8, 8), "float32", blosc)
    plain = zarr.create_array(
        tmp_path / "plain.zarr", shape=(2, 16, 16), chunks=(1, 8, 8), dtype="f4"
    )
    zstd = _array(tmp_path / "zstd.zarr", (2, 16, 16), (2, 8, 8), (1, 4, 4), "f4", ZstdCodec())
    return {
        "unsharded": (plain, np.zeros((2, 16, 16), "f4")),
        "zstd codec": (zstd, np.zeros((2, 8, 8), "f4")),
        "big-endian": (
            _array(tmp_path / "big.zarr", (2, 16, 16), (2, 8, 8), (1, 4, 4), ">f4", blosc),
            np.zeros((2, 8, 8), ">f4"),
        ),
        "cut by the array's end": (cut, np.zeros((2, 4, 4), "f4")),
        "other dtype": (cut, np.zeros((2, 16, 16), "f8")),
    }  # fmt: skip


def test_what_it_cannot_write_is_left_to_zarr(tmp_path: Path) -> None:
    for name, (arr, block) in _refusals(tmp_path).items():
        path = tmp_path / "shard"
        assert not write_whole_shard(arr, str(path), block), name
        assert not path.exists(), name


def test_write_block_stores_whole_shards_itself_and_cut_ones_through_zarr(tmp_path: Path) -> None:
    """3 x 2 shards of 16 x 16 (inner chunks 8 x 8), the last row cut to 8 rows."""
    layout = ImageLayout(
        shape=(40, 32), chunks=(16, 16), axes=("y", "x"), channels=2,
        chunking=ChunkPolicy(target_voxels=64),
    )  # fmt: skip
    spec = create_output(tmp_path / "out.zarr", layout)
    arr = zarr.open_array(tmp_path / "out.zarr" / "embeddings" / "0", mode="r")
    assert arr.shards == (2, 16, 16) and arr.chunks[1:] == (8, 8)  # the layout this tests
    data = np.random.default_rng(2).normal(size=(2, 40, 32)).astype(np.float32)
    root = tmp_path / "out.zarr" / "embeddings" / "0"
    for y, x in itertools.product(range(0, 40, 16), range(0, 32, 16)):
        box = Box((y, x), (min(y + 16, 40), x + 16))
        shard = _shard_path(arr, root, (0, y // 16, x // 16))
        if y == 0:
            shard.parent.mkdir(parents=True, exist_ok=True)
            shard.write_bytes(b"damaged")  # left by an interrupted run: replaced
        write_block(spec, box, data[(slice(None), *box.to_slices())])
        grid = (2, 2, 2)
        if box.shape == (16, 16):
            assert _c_ordered(shard, grid), box
    np.testing.assert_array_equal(zarr.open_array(root, mode="r")[:], data)
