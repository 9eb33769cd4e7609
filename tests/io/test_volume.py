"""Tests for stitchsafe.io: real zarr / OME-Zarr / TIFF files on disk, no mocks."""

from __future__ import annotations

import os
import pickle
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from images import axis, random_image, write_ome, write_zarr

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import Volume, open_volume


def _boxes(shape: tuple[int, ...]) -> list[Box]:
    """A few boxes inside ``shape``: the whole volume, a corner, an interior one."""
    whole = Box.from_shape(shape)
    corner = Box.from_shape(tuple(max(1, s // 3) for s in shape))
    inner = Box(tuple(s // 4 for s in shape), tuple(max(s // 4 + 1, 3 * s // 4) for s in shape))
    return [whole, corner, inner]


def _check_reads(v: Volume, expected: np.ndarray) -> None:
    """``expected`` is ``(C, *spatial)``; every read matches numpy slicing."""
    assert v.shape == expected.shape[1:]
    assert v.channels == expected.shape[0]
    for box in _boxes(v.shape):
        got = v.read(box)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected[(slice(None), *box.to_slices())])


# --------------------------------------------------------------------------- zarr input


@pytest.mark.parametrize("fmt", [2, 3], ids=["v2", "v3"])
@pytest.mark.parametrize(
    "shape,spatial,channels",
    [((9, 11), 2, None), ((3, 9, 11), 2, 3), ((5, 7, 6), 3, None), ((2, 5, 7, 6), 3, 2)],
    ids=["2d", "2d-c", "3d", "3d-c"],
)
def test_zarr_array(tmp_path: Path, fmt: int, shape: tuple, spatial: int, channels: Any) -> None:
    data = random_image(shape)
    v = open_volume(write_zarr(tmp_path / "raw.zarr", data, fmt=fmt), spatial_dims=spatial)
    assert (v.kind, v.container, v.array_path) == ("zarr", None, None)
    assert v.has_channel_axis == (channels is not None)
    assert v.dtype == np.uint16
    assert v.axes == ("z", "y", "x")[-spatial:]
    _check_reads(v, data if channels else data[None])


@pytest.mark.parametrize("fmt", [2, 3], ids=["v2", "v3"])
def test_group_with_key(tmp_path: Path, fmt: int) -> None:
    data = random_image((6, 8, 10), "float32")
    g = zarr.open_group(str(tmp_path / "c.zarr"), mode="w", zarr_format=fmt)
    g.create_group("volumes").create_array(
        "raw", shape=data.shape, dtype="float32", chunks=(3, 4, 5)
    )
    g["volumes/raw"][...] = data
    v = open_volume(tmp_path / "c.zarr", key="/volumes/raw/", spatial_dims=3)
    assert (v.kind, v.container, v.array_path) == ("zarr", str(tmp_path / "c.zarr"), "volumes/raw")
    _check_reads(v, data[None])
    # The same array opened by its own path finds the enclosing container.
    w = open_volume(tmp_path / "c.zarr" / "volumes" / "raw", spatial_dims=3)
    assert (w.container, w.array_path) == (str(tmp_path / "c.zarr"), "volumes/raw")


def test_group_without_key_lists_arrays(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "c.zarr"), mode="w")
    g.create_array("raw", shape=(4, 4), dtype="uint8")
    g.create_group("sub").create_array("mask", shape=(4, 4), dtype="uint8")
    with pytest.raises(StitchsafeError, match="--input-key") as e:
        open_volume(tmp_path / "c.zarr", spatial_dims=2)
    assert "raw" in str(e.value) and "sub/mask" in str(e.value)
    with pytest.raises(StitchsafeError, match="no array or image 'nope'.*raw"):
        open_volume(tmp_path / "c.zarr", key="nope", spatial_dims=2)
    with pytest.raises(StitchsafeError, match="does not apply"):
        open_volume(tmp_path / "c.zarr" / "raw", key="x", spatial_dims=2)


def test_dimension_names_and_leading_singletons(tmp_path: Path) -> None:
    data = random_image((1, 1, 4, 5, 6))
    v = open_volume(write_zarr(tmp_path / "a.zarr", data), spatial_dims=3)
    assert (v.shape, v.channels) == ((4, 5, 6), 1)
    _check_reads(v, data[0])
    # A v3 array that names its axes: the channel axis may sit anywhere.
    zyxc = random_image((4, 5, 6, 2))
    a = zarr.create_array(
        str(tmp_path / "n.zarr"), shape=zyxc.shape, dtype="uint16", dimension_names="zyxc"
    )
    a[...] = zyxc
    v = open_volume(tmp_path / "n.zarr", spatial_dims=3)
    assert (v.shape, v.channels, v.has_channel_axis) == ((4, 5, 6), 2, True)
    _check_reads(v, np.moveaxis(zyxc, -1, 0))


@pytest.mark.parametrize(
    "shape,spatial",
    [((4, 5), 3), ((2, 3, 4, 5), 2), ((1, 2, 3, 4, 5), 2)],
    ids=["too-few", "too-many", "too-many-after-squeeze"],
)
def test_wrong_ndim(tmp_path: Path, shape: tuple, spatial: int) -> None:
    path = write_zarr(tmp_path / "a.zarr", random_image(shape))
    with pytest.raises(StitchsafeError, match=rf"shape \({shape[0]}, .*expected {spatial} spatial"):
        open_volume(path, spatial_dims=spatial)


# --------------------------------------------------------------------------- OME-Zarr input


def test_ome_zarr_05_tczyx(tmp_path: Path) -> None:
    data = random_image((1, 2, 4, 6, 5))
    axes = [axis("t", "time"), axis("c", "channel")] + [
        axis(n, "space", "micrometer") for n in "zyx"
    ]
    path = write_ome(
        tmp_path / "img.zarr", data, version="0.5", axes=axes, scale=[1, 1, 2, 0.5, 0.5]
    )
    v = open_volume(path, spatial_dims=3)
    assert (v.kind, v.container, v.array_path) == ("ome-zarr", path, "0")
    assert (v.shape, v.channels, v.has_channel_axis) == ((4, 6, 5), 2, True)
    assert v.scale == (2.0, 0.5, 0.5) and v.units == ("micrometer",) * 3
    _check_reads(v, data[0])


def test_ome_zarr_04_on_zarr_v2(tmp_path: Path) -> None:
    data = random_image((3, 7, 9))
    axes = [axis("c", "channel"), axis("y", "space"), axis("x", "space")]
    path = write_ome(tmp_path / "img.zarr", data, version="0.4", axes=axes)
    assert os.path.exists(os.path.join(path, ".zattrs"))
    v = open_volume(path, spatial_dims=2)
    assert (v.kind, v.shape, v.channels, v.axes) == ("ome-zarr", (7, 9), 3, ("y", "x"))
    _check_reads(v, data)
    # A 3-D OME image with z=1 serves a 2-D model.
    flat = random_image((1, 7, 9))
    zyx = [axis(n, "space") for n in "zyx"]
    v = open_volume(write_ome(tmp_path / "z1.zarr", flat, version="0.4", axes=zyx), spatial_dims=2)
    assert (v.shape, v.has_channel_axis) == ((7, 9), False)
    _check_reads(v, flat)


def test_ome_zarr_image_inside_container(tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "c.zarr"), mode="w")
    root.create_array("other", shape=(2,), dtype="uint8")
    data = random_image((5, 6))
    write_ome(
        tmp_path / "c.zarr" / "raw",
        data,
        version="0.5",
        axes=[axis("y", "space"), axis("x", "space")],
    )
    v = open_volume(tmp_path / "c.zarr", key="raw", spatial_dims=2)
    assert (v.kind, v.container, v.array_path) == ("ome-zarr", str(tmp_path / "c.zarr"), "raw/0")
    _check_reads(v, data[None])


def test_bioformats2raw_layout(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "b.zarr"), mode="w")
    g.attrs["ome"] = {"version": "0.5", "bioformats2raw.layout": 3}
    data = random_image((4, 5))
    write_ome(
        tmp_path / "b.zarr" / "0",
        data,
        version="0.5",
        axes=[axis("y", "space"), axis("x", "space")],
    )
    v = open_volume(tmp_path / "b.zarr", spatial_dims=2)
    assert v.array_path == "0/0"
    _check_reads(v, data[None])


def test_ome_time_series_refused(tmp_path: Path) -> None:
    axes = [axis("t", "time"), axis("y", "space"), axis("x", "space")]
    path = write_ome(tmp_path / "t.zarr", random_image((3, 4, 5)), version="0.5", axes=axes)
    with pytest.raises(StitchsafeError, match="time axis of size 3"):
        open_volume(path, spatial_dims=2)


# --------------------------------------------------------------------------- TIFF input


TIFF_CASES = {
    "2d": dict(shape=(37, 45), spatial=2, kw={}),
    "3d": dict(shape=(6, 37, 45), spatial=3, kw={}),
    "3d-bigtiff": dict(shape=(6, 37, 45), spatial=3, kw={"bigtiff": True}),
    "3d-tiled-zlib": dict(
        shape=(6, 37, 45), spatial=3, kw={"bigtiff": True, "tile": (16, 16), "compression": "zlib"}
    ),
    "2d-c-zlib": dict(shape=(2, 37, 45), spatial=2, kw={"compression": "zlib"}),
    "3d-c": dict(shape=(2, 6, 37, 45), spatial=3, kw={}),
}


@pytest.mark.parametrize("case", TIFF_CASES.values(), ids=TIFF_CASES.keys())
def test_tiff(tmp_path: Path, case: dict[str, Any]) -> None:
    data = random_image(case["shape"])
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, data, **case["kw"])
    with open_volume(path, spatial_dims=case["spatial"]) as v:
        assert (v.kind, v.container, v.array_path) == ("tiff", None, None)
        expected = data if v.has_channel_axis else data[None]
        assert v.has_channel_axis == (data.ndim == case["spatial"] + 1)
        _check_reads(v, expected)
    # close() releases handles; reading again reopens them.
    _check_reads(v, expected)
    v.close()


def test_tiff_channel_axes_from_metadata(tmp_path: Path) -> None:
    rgb = random_image((20, 30, 3), "uint8")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    v = open_volume(tmp_path / "rgb.tif", spatial_dims=2)
    assert (v.shape, v.channels) == ((20, 30), 3)
    _check_reads(v, np.moveaxis(rgb, -1, 0))
    zcyx = random_image((4, 2, 20, 30))
    tifffile.imwrite(tmp_path / "ij.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    v = open_volume(tmp_path / "ij.tif", spatial_dims=3)
    assert (v.shape, v.channels, v.axes) == ((4, 20, 30), 2, ("z", "y", "x"))
    _check_reads(v, np.moveaxis(zcyx, 1, 0))


def test_tiff_detected_by_magic_and_series_key(tmp_path: Path) -> None:
    a, b = random_image((10, 12)), random_image((5, 6))
    with tifffile.TiffWriter(tmp_path / "data.bin") as tw:
        tw.write(a)
        tw.write(b)
    _check_reads(open_volume(tmp_path / "data.bin", spatial_dims=2), a[None])
    _check_reads(open_volume(tmp_path / "data.bin", key="1", spatial_dims=2), b[None])
    with pytest.raises(StitchsafeError, match="2 image series"):
        open_volume(tmp_path / "data.bin", key="2", spatial_dims=2)
    with pytest.raises(StitchsafeError, match="index of an image series"):
        open_volume(tmp_path / "data.bin", key="raw", spatial_dims=2)


def test_tiff_reads_are_lazy(tmp_path: Path) -> None:
    # 64 x 512 x 512 uint16 = 32 MiB decoded, but nearly all zeros so it writes fast.
    path = tmp_path / "big.tif"
    big = np.zeros((64, 512, 512), np.uint16)
    big[np.arange(64), np.arange(64), :] = np.arange(64)[:, None]
    tifffile.imwrite(path, big, bigtiff=True, tile=(64, 64), compression="zlib")
    del big
    v = open_volume(path, spatial_dims=3)
    assert v.shape == (64, 512, 512)
    box = Box((10, 5, 300), (14, 37, 340))
    v.read(box)  # open the file and warm tifffile's caches outside the measurement
    tracemalloc.start()
    got = v.read(box)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got[0, :, 0, 0].tolist() == [0, 0, 0, 0]
    assert got[0, 1, 6, 0] == 11
    # The touched tiles (4 pages x 2 x 1 tiles of 64x64 uint16) are ~64 KiB; reading a
    # whole page would be 512 KiB and the whole file 32 MiB.
    assert peak < 512 * 1024, peak
    v.close()


def test_uncompressed_tiff_is_memory_mapped(tmp_path: Path) -> None:
    data = random_image((3000, 2000))
    tifffile.imwrite(tmp_path / "strip.tif", data)  # one 12 MB strip
    v = open_volume(tmp_path / "strip.tif", spatial_dims=2)
    box = Box((100, 200), (110, 230))
    tracemalloc.start()
    got = v.read(box)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(got[0], data[100:110, 200:230])
    assert peak < 1024 * 1024, peak


def test_volume_pickles_and_reads_from_threads(tmp_path: Path) -> None:
    data = random_image((8, 40, 40))
    tifffile.imwrite(tmp_path / "t.tif", data, tile=(16, 16), compression="zlib")
    v = open_volume(tmp_path / "t.tif", spatial_dims=3)
    v.read(Box((0, 0, 0), (1, 1, 1)))
    w = pickle.loads(pickle.dumps(v))
    assert (w.shape, w.dtype, w.path) == (v.shape, v.dtype, v.path)
    boxes = [
        Box((z, y, x), (z + 2, y + 9, x + 13)) for z in range(6) for y in (0, 20) for x in (0, 20)
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(w.read, boxes))
    for box, got in zip(boxes, results, strict=True):
        np.testing.assert_array_equal(got[0], data[box.to_slices()])


def test_read_box_outside_volume_is_an_error(tmp_path: Path) -> None:
    v = open_volume(write_zarr(tmp_path / "a.zarr", random_image((4, 5))), spatial_dims=2)
    with pytest.raises(ValueError, match="inside the volume"):
        v.read(Box((0, 0), (5, 5)))
    assert v.read(Box((1, 1), (1, 3))).shape == (1, 0, 2)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(StitchsafeError, match="does not exist"):
        open_volume(tmp_path / "missing.tif", spatial_dims=2)
    (tmp_path / "garbage.tif").write_bytes(b"this is not an image at all")
    with pytest.raises(StitchsafeError, match="not a TIFF"):
        open_volume(tmp_path / "garbage.tif", spatial_dims=2)
    (tmp_path / "trunc.tif").write_bytes(b"II*\x00" + b"\xff" * 20)
    with pytest.raises(StitchsafeError, match="truncated or corrupt"):
        open_volume(tmp_path / "trunc.tif", spatial_dims=2)
    (tmp_path / "dir.zarr").mkdir()
    (tmp_path / "dir.zarr" / "readme.txt").write_text("hi")
    with pytest.raises(StitchsafeError, match="not a zarr array or group"):
        open_volume(tmp_path / "dir.zarr", spatial_dims=2)
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text("{ not json")
    with pytest.raises(StitchsafeError, match="corrupt"):
        open_volume(tmp_path / "bad.zarr", spatial_dims=2)
    complex_path = write_zarr(tmp_path / "cx.zarr", np.zeros((4, 4), np.complex64))
    with pytest.raises(StitchsafeError, match="complex64"):
        open_volume(complex_path, spatial_dims=2)
