"""The output chunk policy: bounded inner chunks, one shard per tile write box.

The policy is pure arithmetic (:class:`stitchsafe.io.ChunkPolicy`), checked here on a
GPU-sized plan, 2-D, odd and tiny tiles, and on arbitrary write boxes (hypothesis); the
arrays it describes are then created and filled through :mod:`stitchsafe.io` and read
back with zarr, ome-zarr-models and ome-zarr-py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from stitchsafe.geometry import Box, make_plan, unet_geometry
from stitchsafe.io import (
    MAX_CHUNK_BYTES,
    TARGET_VOXELS,
    ChunkPolicy,
    ImageLayout,
    StorageChunks,
    create_label_image,
    create_output,
    storage_shape,
    write_block,
)

DTYPES = ["uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"]


def _check_bounds(s: StorageChunks, box: tuple[int, ...], channels: int | None, dtype: str) -> None:
    """What every storage must satisfy: bounded chunks that tile one shard per write box."""
    itemsize = np.dtype(dtype).itemsize
    whole = box if channels is None else (channels, *box)
    assert s.chunk_bytes == math.prod(s.chunks) * itemsize <= MAX_CHUNK_BYTES
    assert s.written == whole  # one stored object per write box
    assert all(w % c == 0 for w, c in zip(s.written, s.chunks)), (s, box)
    if s.shards is None:
        assert s.chunks == whole and s.chunks_per_shard == 1
    elif channels is not None:
        assert s.chunks[0] == 1  # one channel per inner chunk


def test_a_gpu_sized_plan_gets_bounded_inner_chunks_and_one_shard_per_tile() -> None:
    # A 256^3 write box of 16 float32 channels is 1 GiB: one chunk per tile, as before,
    # would pass no viewer and come close to blosc's 2 GiB limit.
    plan = make_plan((1024, 2048, 2048), unet_geometry([(2, 2, 2)] * 4), tile_shape=(256,) * 3)
    s = ChunkPolicy().storage(plan.chunks, channels=16, dtype="float32")
    _check_bounds(s, plan.chunks, 16, "float32")
    assert s.shards == (16, 256, 256, 256)
    assert s.chunks == (1, 64, 64, 64) and s.chunk_bytes == 1 << 20
    assert math.prod(s.chunks[1:]) <= TARGET_VOXELS[3]
    # 1000 such tiles: 1000 shards, not a million chunk files.
    assert s.chunks_per_shard == 1024
    labels = ChunkPolicy().storage(plan.chunks, channels=None, dtype="uint64")
    _check_bounds(labels, plan.chunks, None, "uint64")
    assert labels.chunks == (64, 64, 64) and labels.shards == (256, 256, 256)


@pytest.mark.parametrize(
    ("box", "channels", "dtype", "chunks", "shards"),
    [
        ((2048, 2048), 16, "float32", (1, 256, 256), (16, 2048, 2048)),
        ((1024, 1024), None, "uint32", (256, 256), (1024, 1024)),
        ((16, 512, 512), 8, "float16", (1, 16, 128, 128), (8, 16, 512, 512)),
        ((144, 144, 144), 3, "float32", (1, 36, 72, 72), (3, 144, 144, 144)),
        # Odd: 203 = 7 x 29, 101 and 37 are prime; no divisor near half of a prime.
        ((37, 101, 203), 3, "float32", (1, 37, 101, 29), (3, 37, 101, 203)),
        # A prime length is cut only for the byte bound: 1009^2 float32 is < 4 MiB...
        ((1009, 1009), 2, "float32", (1, 1009, 1009), (2, 1009, 1009)),
        ((1009, 1009), 1, "float32", (1, 1009, 1009), None),
        # ... and 1009^2 float64 is not.
        ((1009, 1009), None, "float64", (1, 1009), (1009, 1009)),
        # Tiny tiles stay one chunk of every channel, unsharded, as before.
        ((4, 8, 8), 3, "float32", (3, 4, 8, 8), None),
        ((18, 9), None, "uint32", (18, 9), None),
        ((1, 1), 1, "uint8", (1, 1, 1), None),
        # Small spatially, large in bytes: split by channel only.
        ((128, 128), 128, "float32", (1, 128, 128), (128, 128, 128)),
    ],
    ids=["2d-gpu", "2d-labels", "thin-3d", "144^3", "odd", "prime", "prime-1ch",
         "prime-f64", "tiny-3d", "small-labels", "one-voxel", "many-channels"],
)  # fmt: skip
def test_policy_for_2d_odd_and_tiny_tiles(
    box: tuple[int, ...],
    channels: int | None,
    dtype: str,
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
) -> None:
    s = ChunkPolicy().storage(box, channels=channels, dtype=dtype)
    assert (s.chunks, s.shards) == (chunks, shards)
    _check_bounds(s, box, channels, dtype)


@settings(max_examples=300, deadline=None)
@given(
    box=st.lists(st.integers(1, 3000), min_size=1, max_size=3).map(tuple),
    channels=st.one_of(st.none(), st.integers(1, 64)),
    dtype=st.sampled_from(DTYPES),
)
def test_every_write_box_gets_bounded_chunks_that_divide_its_shard(
    box: tuple[int, ...], channels: int | None, dtype: str
) -> None:
    s = ChunkPolicy().storage(box, channels=channels, dtype=dtype)
    _check_bounds(s, box, channels, dtype)
    spatial = s.chunks if channels is None else s.chunks[1:]
    if all(w & (w - 1) == 0 for w in box):  # powers of two (U-Net periods): always within
        assert math.prod(spatial) <= TARGET_VOXELS[len(box)]


def test_policy_options_and_bad_values() -> None:
    flat = ChunkPolicy(sharded=False).storage((256, 256, 256), channels=16, dtype="float32")
    assert (flat.chunks, flat.shards) == ((1, 64, 64, 64), None)
    small = ChunkPolicy(target_voxels=8**3).storage((32, 32, 32), channels=2, dtype="float32")
    assert (small.chunks, small.shards) == ((1, 8, 8, 8), (2, 32, 32, 32))
    whole = ChunkPolicy(target_voxels=1 << 62, max_bytes=1 << 62)
    assert whole.storage((256,) * 3, channels=16, dtype="float32").shards is None
    for bad in ({"target_voxels": 0}, {"max_bytes": 0}):
        with pytest.raises(ValueError, match="must be positive"):
            ChunkPolicy(**bad)  # type: ignore[arg-type]


def test_sharded_output_writes_one_object_per_tile_and_reads_back(tmp_path: Path) -> None:
    """Tiles at the volume's edge write partial shards; zarr stores and reads them right."""
    shape, tile = (20, 70, 90), (16, 32, 32)
    policy = ChunkPolicy(target_voxels=8 * 16 * 16)
    layout = ImageLayout(shape=shape, chunks=tile, axes="zyx", channels=3, chunking=policy)
    assert (layout.array_chunks, layout.array_shards) == ((1, 8, 16, 16), (3, 16, 32, 32))
    spec = create_output(tmp_path / "o.zarr", layout)
    plan_grid = [range(0, s, t) for s, t in zip(shape, tile)]
    data = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
    data[:, :16, :32, :32] = 0  # an all-zero tile is stored too (write_empty_chunks)
    for z in plan_grid[0]:
        for y in plan_grid[1]:
            for x in plan_grid[2]:
                box = Box(
                    (z, y, x), tuple(min(b + t, s) for b, t, s in zip((z, y, x), tile, shape))
                )
                write_block(spec, box, data[(slice(None), *box.to_slices())])
    arr = zarr.open_array(str(tmp_path / "o.zarr" / "embeddings" / "0"), mode="r")
    assert (arr.chunks, arr.shards, storage_shape(arr)) == ((1, 8, 16, 16), (3, 16, 32, 32),
                                                            (3, 16, 32, 32))  # fmt: skip
    np.testing.assert_array_equal(arr[...], data)
    stored = tmp_path / "o.zarr" / "embeddings" / "0" / "c"
    keys = sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file())
    tiles = [f"0/{z}/{y}/{x}" for z in range(2) for y in range(3) for x in range(3)]
    assert keys == sorted(tiles)
    with pytest.raises(ValueError, match="not aligned"):
        write_block(spec, Box((0, 0, 16), (16, 32, 48)), np.zeros((3, 16, 32, 32), np.float32))


def test_sharded_images_validate_and_open_with_ome_zarr_readers(tmp_path: Path) -> None:
    models = pytest.importorskip("ome_zarr_models.v05")
    reader = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    shape, tile = (600, 560), (512, 512)
    layout = ImageLayout(shape=shape, chunks=tile, axes="yx", channels=2)
    assert (layout.array_chunks, layout.array_shards) == ((1, 256, 256), (2, 512, 512))
    spec = create_output(tmp_path / "o.zarr", layout)
    data = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    boxes = [
        Box((y, x), (min(y + 512, 600), min(x + 512, 560))) for y in (0, 512) for x in (0, 512)
    ]
    for box in boxes:
        write_block(spec, box, data[(slice(None), *box.to_slices())])
    labels = ImageLayout(shape=shape, chunks=tile, axes="yx", dtype="uint32")
    label_spec = create_label_image(tmp_path / "o.zarr", labels)
    out = zarr.open_array(str(tmp_path / "o.zarr" / label_spec.array), mode="r+")
    assert (out.chunks, out.shards) == ((256, 256), (512, 512))
    ids = np.arange(math.prod(shape), dtype=np.uint32).reshape(shape)
    for box in boxes:
        out[box.to_slices()] = ids[box.to_slices()]
    image = models.Image.from_zarr(zarr.open_group(str(tmp_path / "o.zarr" / "embeddings")))
    assert image.attributes.ome.multiscales[0].axes[0].type == "channel"
    models.ImageLabel.from_zarr(zarr.open_group(str(tmp_path / "o.zarr" / "instances")))
    for image_name, expected in (("embeddings", data), ("instances", ids)):
        nodes = list(reader.Reader(parse_url(str(tmp_path / "o.zarr" / image_name)))())
        np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), expected)
