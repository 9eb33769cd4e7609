"""Level 1 written by the tiles: the pyramid the pass makes from level 0, every level equal
bit for bit, without the pass reading level 0 back; resumed tiles go on writing it; a
record the image cannot back up is not trusted."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from nets import make_net

import stitchsafe
from stitchsafe.geometry import Box
from stitchsafe.io import (
    ChunkPolicy,
    ImageLayout,
    OutputSpec,
    create_output,
    done_mask_path,
    level_one_of,
    read_pyramid,
    tiled_level_one,
    write_block,
    write_pyramid,
)
from stitchsafe.models import save_checkpoint, unet_metadata

CASES = {
    # name: (spatial shape, write box, channels, dtype, chunk policy, voxel size, level 1)
    "3d-odd-unsharded": ((9, 37, 41), (4, 16, 16), 3, "float32", ChunkPolicy(), None, (2, 2, 2)),
    "3d-float16-sharded": (
        (13, 40, 36), (8, 16, 16), 2, "float16", ChunkPolicy(target_voxels=256), None, (2, 2, 2),
    ),
    "2d-sharded": ((600, 561), (512, 512), 2, "float32", ChunkPolicy(), None, (2, 2)),
    "3d-anisotropic-sharded": (
        (10, 70, 66), (6, 32, 32), 2, "float32", ChunkPolicy(target_voxels=512), (3.0, 1.0, 1.0),
        (1, 2, 2),
    ),
}  # fmt: skip


def _layout(case: str) -> ImageLayout:
    shape, box, channels, dtype, policy, scale, _ = CASES[case]
    return ImageLayout(
        shape=shape, chunks=box, axes="zyx"[-len(shape) :], dtype=dtype, channels=channels,
        chunking=policy, scale=scale,
    )  # fmt: skip


def _boxes(layout: ImageLayout) -> list[Box]:
    """Every write box of ``layout``, clipped at the image's end, in C order."""
    ranges = [range(0, n, b) for n, b in zip(layout.shape, layout.chunks)]
    return [
        Box(begin, tuple(min(b + w, n) for b, w, n in zip(begin, layout.chunks, layout.shape)))
        for begin in itertools.product(*ranges)
    ]


def _write(spec: OutputSpec, data: np.ndarray, boxes: list[Box]) -> None:
    for box in boxes:
        write_block(spec, box, data[(slice(None), *box.to_slices())])


def _levels(group: Path) -> list[np.ndarray]:
    pyramid = read_pyramid(str(group), "")
    assert pyramid is not None and pyramid.complete
    return [zarr.open_array(str(group / level.path), mode="r")[...] for level in pyramid.levels]


def _data(layout: ImageLayout) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.standard_normal(layout.array_shape).astype(layout.dtype)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_tiles_write_the_level_one_the_pass_would_and_it_never_reads_level_0(
    tmp_path: Path, case: str
) -> None:
    layout, factors = _layout(case), CASES[case][-1]
    data = _data(layout)
    plain = create_output(tmp_path / "plain.zarr", layout, image="")
    _write(plain, data, _boxes(layout))
    write_pyramid(plain)

    spec = tiled_level_one(create_output(tmp_path / "tiled.zarr", layout, image=""))
    assert spec.level1_factors == factors
    level1 = zarr.open_array(str(tmp_path / "tiled.zarr" / "1"), mode="r")
    box = tuple(b // f for b, f in zip(layout.chunks, factors))
    level0 = zarr.open_array(str(tmp_path / "tiled.zarr" / "0"), mode="r")
    if level0.shards is None:
        assert level1.shards is None and level1.chunks[1:] == box
    else:  # one shard per write box, inner chunks no larger than level 0's
        assert level1.shards[1:] == box
        assert all(c <= c0 for c, c0 in zip(level1.chunks, level0.chunks))
    _write(spec, data, _boxes(layout))
    # Level 0's stored data goes away: a pass that read it would see only the fill value.
    shutil.move(tmp_path / "tiled.zarr" / "0" / "c", tmp_path / "level0-data")
    pyramid = write_pyramid(spec)
    shutil.move(tmp_path / "level0-data", tmp_path / "tiled.zarr" / "0" / "c")

    assert pyramid.complete
    assert read_pyramid(str(tmp_path / "tiled.zarr"), "") == read_pyramid(
        str(tmp_path / "plain.zarr"), ""
    )  # the same levels, scales and translations listed
    tiled, expected = _levels(tmp_path / "tiled.zarr"), _levels(tmp_path / "plain.zarr")
    assert len(tiled) == len(expected) >= 3
    for a, b in zip(tiled, expected):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_a_resumed_image_goes_on_writing_level_one(tmp_path: Path) -> None:
    layout = _layout("3d-float16-sharded")
    data, boxes = _data(layout), _boxes(layout)
    plain = create_output(tmp_path / "plain.zarr", layout, image="")
    _write(plain, data, boxes)
    write_pyramid(plain)

    first = tiled_level_one(create_output(tmp_path / "tiled.zarr", layout, image=""))
    _write(first, data, boxes[: len(boxes) // 2])
    # A new process knows only what the image recorded.
    group = tmp_path / "tiled.zarr"
    record = zarr.open_group(str(group), mode="r").attrs["stitchsafe"]
    again = level_one_of(OutputSpec(str(group), "", "0"), record)
    assert again == first
    _write(again, data, boxes[len(boxes) // 2 :])
    write_pyramid(again)
    for a, b in zip(_levels(group), _levels(tmp_path / "plain.zarr"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_level_one_not_backed_by_its_array_is_made_from_level_0(tmp_path: Path) -> None:
    """The record says the tiles wrote level 1, but its array is gone (or another shape):
    the pass makes it from level 0, as without the record."""
    layout = _layout("3d-odd-unsharded")
    data = _data(layout)
    spec = tiled_level_one(create_output(tmp_path / "o.zarr", layout, image=""))
    _write(spec, data, _boxes(layout))
    shutil.rmtree(tmp_path / "o.zarr" / "1")
    write_pyramid(spec)
    plain = create_output(tmp_path / "plain.zarr", layout, image="")
    _write(plain, data, _boxes(layout))
    write_pyramid(plain)
    for a, b in zip(_levels(tmp_path / "o.zarr"), _levels(tmp_path / "plain.zarr"), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("shape", "box"),
    [((9, 37, 41), (5, 16, 16)), ((8, 16, 16), (8, 16, 16))],
    ids=["box-not-divisible", "no-pyramid"],
)
def test_no_level_one_from_tiles_where_it_cannot_be(
    tmp_path: Path, shape: tuple[int, ...], box: tuple[int, ...]
) -> None:
    """A write box the first factors do not divide, or an image that gets no pyramid (it
    fits one chunk): the tiles write level 0 only, and nothing else is made."""
    layout = ImageLayout(shape=shape, chunks=box, axes="zyx", channels=2)
    spec = create_output(tmp_path / "o.zarr", layout, image="")
    assert tiled_level_one(spec) == spec and spec.level1_factors is None
    assert not (tmp_path / "o.zarr" / "1").exists()
    attrs = zarr.open_group(str(tmp_path / "o.zarr"), mode="r").attrs
    assert "level1" not in attrs.get("stitchsafe", {})


def test_predict_writes_level_one_with_its_tiles_and_resume_goes_on(tmp_path: Path) -> None:
    """``predict``: level 1 stored one shard per tile, every level equal to the pass run
    from level 0 afterwards; tiles left undone (their level-1 objects gone too) are
    computed again by ``--resume``, level 1 with them."""
    net, cfg = make_net("3d-d1-f2")
    save_checkpoint(net, tmp_path / "model.pt", metadata=unet_metadata(cfg))
    data = (np.random.default_rng(0).random((12, 40, 36)) * 1000).astype(np.uint16)
    zarr.create_array(tmp_path / "vol.zarr", data=data, chunks=(8, 16, 16))
    options = dict(tile_shape=(8, 16, 16), device="cpu", progress=False, labels=False)
    args = (tmp_path / "model.pt", tmp_path / "vol.zarr")
    plain = tmp_path / "plain.zarr"
    stitchsafe.predict(*args, output=plain, pyramid=False, **options)
    write_pyramid(OutputSpec(str(plain), "", "0"))
    out = tmp_path / "out.zarr"
    stitchsafe.predict(*args, output=out, **options)
    record = zarr.open_group(str(out), mode="r").attrs["stitchsafe"]
    assert record["level1"] == {"factors": [2, 2, 2]}
    assert record["pyramid"]["complete"]
    level1 = zarr.open_array(str(out / "1"), mode="r")
    assert (level1.shards or level1.chunks)[1:] == (4, 8, 8)  # the tile's write box halved
    for a, b in zip(_levels(out), _levels(plain), strict=True):
        np.testing.assert_array_equal(a, b)

    done = zarr.open_array(done_mask_path(out, ""), mode="r+")
    done[0, 1, 1] = 0
    done[1, 2, 0] = 0
    for index in ((0, 1, 1), (1, 2, 0)):  # one stored object per tile, all channels
        stored = out / "1" / "c" / "0" / "/".join(map(str, index))
        assert stored.is_file()
        stored.unlink()
    image = zarr.open_group(str(out), mode="r+")
    image.attrs["stitchsafe"] = {**image.attrs["stitchsafe"], "complete": False}
    stitchsafe.predict(*args, output=out, resume=True, **options)
    for a, b in zip(_levels(out), _levels(plain), strict=True):
        np.testing.assert_array_equal(a, b)
