"""Tests for stitchsafe.io: real zarr / OME-Zarr / TIFF files on disk, no mocks."""

from __future__ import annotations

import json
import os
import pickle
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import (
    OutputSpec,
    Volume,
    default_output_location,
    mark_complete,
    open_volume,
    pad_indices,
    prepare_output,
    read_padded,
    write_block,
)

RNG = np.random.default_rng(42)


def _data(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return RNG.integers(0, 1000, size=shape).astype(dtype)


def _zarr(path: Path, data: np.ndarray, *, fmt: int = 3, chunks: Any = None) -> str:
    chunks = chunks or tuple(max(1, s // 2) for s in data.shape)
    a = zarr.create_array(
        str(path), shape=data.shape, dtype=data.dtype, chunks=chunks, zarr_format=fmt
    )
    a[...] = data
    return str(path)


def _ome(
    path: Path,
    data: np.ndarray,
    *,
    version: str,
    axes: list[dict[str, Any]],
    scale: list[float] | None = None,
) -> str:
    """A minimal OME-Zarr image written by hand: level "0" plus a dummy level "1"."""
    fmt = 3 if version == "0.5" else 2
    g = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    g.create_array("0", shape=data.shape, dtype=data.dtype, chunks=data.shape)[...] = data
    g.create_array("1", shape=data.shape, dtype=data.dtype, chunks=data.shape)
    ms = {
        "axes": axes,
        "datasets": [
            {
                "path": p,
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale or [1.0] * data.ndim}
                ],
            }
            for p in ("0", "1")
        ],
    }
    if version == "0.5":
        g.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        g.attrs["multiscales"] = [{"version": "0.4", **ms}]
    return str(path)


def _ax(name: str, kind: str, unit: str | None = None) -> dict[str, Any]:
    d = {"name": name, "type": kind}
    if unit:
        d["unit"] = unit
    return d


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
    data = _data(shape)
    v = open_volume(_zarr(tmp_path / "raw.zarr", data, fmt=fmt), spatial_dims=spatial)
    assert (v.kind, v.container, v.array_path) == ("zarr", None, None)
    assert v.has_channel_axis == (channels is not None)
    assert v.dtype == np.uint16
    assert v.axes == ("z", "y", "x")[-spatial:]
    _check_reads(v, data if channels else data[None])


@pytest.mark.parametrize("fmt", [2, 3], ids=["v2", "v3"])
def test_group_with_key(tmp_path: Path, fmt: int) -> None:
    data = _data((6, 8, 10), "float32")
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
    data = _data((1, 1, 4, 5, 6))
    v = open_volume(_zarr(tmp_path / "a.zarr", data), spatial_dims=3)
    assert (v.shape, v.channels) == ((4, 5, 6), 1)
    _check_reads(v, data[0])
    # A v3 array that names its axes: the channel axis may sit anywhere.
    zyxc = _data((4, 5, 6, 2))
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
    path = _zarr(tmp_path / "a.zarr", _data(shape))
    with pytest.raises(StitchsafeError, match=rf"shape \({shape[0]}, .*expected {spatial} spatial"):
        open_volume(path, spatial_dims=spatial)


# --------------------------------------------------------------------------- OME-Zarr input


def test_ome_zarr_05_tczyx(tmp_path: Path) -> None:
    data = _data((1, 2, 4, 6, 5))
    axes = [_ax("t", "time"), _ax("c", "channel")] + [_ax(n, "space", "micrometer") for n in "zyx"]
    path = _ome(tmp_path / "img.zarr", data, version="0.5", axes=axes, scale=[1, 1, 2, 0.5, 0.5])
    v = open_volume(path, spatial_dims=3)
    assert (v.kind, v.container, v.array_path) == ("ome-zarr", path, "0")
    assert (v.shape, v.channels, v.has_channel_axis) == ((4, 6, 5), 2, True)
    assert v.scale == (2.0, 0.5, 0.5) and v.units == ("micrometer",) * 3
    _check_reads(v, data[0])


def test_ome_zarr_04_on_zarr_v2(tmp_path: Path) -> None:
    data = _data((3, 7, 9))
    axes = [_ax("c", "channel"), _ax("y", "space"), _ax("x", "space")]
    path = _ome(tmp_path / "img.zarr", data, version="0.4", axes=axes)
    assert os.path.exists(os.path.join(path, ".zattrs"))
    v = open_volume(path, spatial_dims=2)
    assert (v.kind, v.shape, v.channels, v.axes) == ("ome-zarr", (7, 9), 3, ("y", "x"))
    _check_reads(v, data)
    # A 3-D OME image with z=1 serves a 2-D model.
    flat = _data((1, 7, 9))
    zyx = [_ax(n, "space") for n in "zyx"]
    v = open_volume(_ome(tmp_path / "z1.zarr", flat, version="0.4", axes=zyx), spatial_dims=2)
    assert (v.shape, v.has_channel_axis) == ((7, 9), False)
    _check_reads(v, flat)


def test_ome_zarr_image_inside_container(tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "c.zarr"), mode="w")
    root.create_array("other", shape=(2,), dtype="uint8")
    data = _data((5, 6))
    _ome(
        tmp_path / "c.zarr" / "raw",
        data,
        version="0.5",
        axes=[_ax("y", "space"), _ax("x", "space")],
    )
    v = open_volume(tmp_path / "c.zarr", key="raw", spatial_dims=2)
    assert (v.kind, v.container, v.array_path) == ("ome-zarr", str(tmp_path / "c.zarr"), "raw/0")
    _check_reads(v, data[None])


def test_bioformats2raw_layout(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "b.zarr"), mode="w")
    g.attrs["ome"] = {"version": "0.5", "bioformats2raw.layout": 3}
    data = _data((4, 5))
    _ome(
        tmp_path / "b.zarr" / "0", data, version="0.5", axes=[_ax("y", "space"), _ax("x", "space")]
    )
    v = open_volume(tmp_path / "b.zarr", spatial_dims=2)
    assert v.array_path == "0/0"
    _check_reads(v, data[None])


def test_ome_time_series_refused(tmp_path: Path) -> None:
    axes = [_ax("t", "time"), _ax("y", "space"), _ax("x", "space")]
    path = _ome(tmp_path / "t.zarr", _data((3, 4, 5)), version="0.5", axes=axes)
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
    data = _data(case["shape"])
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
    rgb = _data((20, 30, 3), "uint8")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    v = open_volume(tmp_path / "rgb.tif", spatial_dims=2)
    assert (v.shape, v.channels) == ((20, 30), 3)
    _check_reads(v, np.moveaxis(rgb, -1, 0))
    zcyx = _data((4, 2, 20, 30))
    tifffile.imwrite(tmp_path / "ij.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    v = open_volume(tmp_path / "ij.tif", spatial_dims=3)
    assert (v.shape, v.channels, v.axes) == ((4, 20, 30), 2, ("z", "y", "x"))
    _check_reads(v, np.moveaxis(zcyx, 1, 0))


def test_tiff_detected_by_magic_and_series_key(tmp_path: Path) -> None:
    a, b = _data((10, 12)), _data((5, 6))
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
    data = _data((3000, 2000))
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
    data = _data((8, 40, 40))
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
    v = open_volume(_zarr(tmp_path / "a.zarr", _data((4, 5))), spatial_dims=2)
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
    complex_path = _zarr(tmp_path / "cx.zarr", np.zeros((4, 4), np.complex64))
    with pytest.raises(StitchsafeError, match="complex64"):
        open_volume(complex_path, spatial_dims=2)


# --------------------------------------------------------------------------- padding


@given(
    begin=st.integers(-40, 40),
    length=st.integers(0, 60),
    size=st.integers(1, 9),
    mode=st.sampled_from(["reflect", "symmetric", "edge", "wrap", "constant"]),
)
@settings(max_examples=400, deadline=None)
def test_pad_indices_matches_numpy_pad(begin: int, length: int, size: int, mode: str) -> None:
    end = begin + length
    before, after = max(0, -begin), max(0, end - size)
    values = np.arange(1, size + 1)
    padded = np.pad(values, (before, after), mode=mode)
    expected = padded[begin + before : end + before]
    idx = pad_indices(begin, end, size, mode)
    got = np.where(idx >= 0, values[np.maximum(idx, 0)], 0)
    np.testing.assert_array_equal(got, expected)


def test_pad_indices_unknown_mode() -> None:
    with pytest.raises(StitchsafeError, match="unknown padding mode 'mirror'"):
        pad_indices(0, 3, 3, "mirror")


PAD_SHAPES = [(1,), (5,), (1, 4), (3, 1), (4, 5), (2, 1, 3), (3, 4, 5)]


@pytest.fixture(scope="module")
def pad_volumes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, tuple[Volume, np.ndarray]]:
    out = {}
    for i, shape in enumerate(PAD_SHAPES):
        channels = 1 + i % 2
        data = RNG.standard_normal((channels, *shape)).astype(np.float32)
        path = tmp_path_factory.mktemp("pad") / "v.zarr"
        stored = data if channels > 1 else data[0]
        out[shape] = (open_volume(_zarr(path, stored), spatial_dims=len(shape)), data)
    return out


@given(
    which=st.integers(0, len(PAD_SHAPES) - 1),
    corners=st.lists(st.tuples(st.integers(-12, 15), st.integers(0, 25)), min_size=3, max_size=3),
    mode=st.sampled_from(["reflect", "edge", "constant", "symmetric", "wrap"]),
)
@settings(max_examples=250, deadline=None)
def test_read_padded_matches_numpy_pad(
    pad_volumes: dict, which: int, corners: list[tuple[int, int]], mode: str
) -> None:
    v, data = pad_volumes[PAD_SHAPES[which]]
    box = Box(tuple(b for b, _ in corners[: v.ndim]), tuple(b + n for b, n in corners[: v.ndim]))
    got = read_padded(v, box, mode=mode)
    assert got.dtype == np.float32 and got.shape == (v.channels, *box.shape)
    before = [max(0, -b) for b in box.begin]
    after = [max(0, e - s) for e, s in zip(box.end, v.shape, strict=True)]
    padded = np.pad(data, [(0, 0), *zip(before, after, strict=True)], mode=mode)
    window = tuple(slice(b + p, e + p) for b, e, p in zip(box.begin, box.end, before, strict=True))
    np.testing.assert_array_equal(got, padded[(slice(None), *window)])


@pytest.mark.parametrize("mode", ["reflect", "edge", "constant"])
def test_read_padded_applies_transform_before_padding(tmp_path: Path, mode: str) -> None:
    data = _data((6, 7))
    v = open_volume(_zarr(tmp_path / "a.zarr", data), spatial_dims=2)
    transform = lambda x: (x - np.float32(500)) * np.float32(0.01)  # noqa: E731
    box = Box((-4, 3), (9, 15))
    got = read_padded(v, box, mode=mode, transform=transform)
    padded = np.pad(transform(data.astype(np.float32)), [(4, 3), (0, 8)], mode=mode)
    np.testing.assert_array_equal(got[0], padded[:, 3:15])
    if mode == "constant":
        assert (got[0, :4] == 0).all()


def test_read_padded_reads_only_the_bounding_box(tmp_path: Path) -> None:
    class CountingVolume:
        """Records the boxes read; forwards everything else to a real volume."""

        def __init__(self, inner: Volume) -> None:
            self.inner, self.boxes = inner, []

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def read(self, box: Box) -> np.ndarray:
            self.boxes.append(box)
            return self.inner.read(box)

    v = CountingVolume(open_volume(_zarr(tmp_path / "a.zarr", _data((50, 60))), spatial_dims=2))
    read_padded(v, Box((-3, 10), (7, 20)), mode="reflect")  # type: ignore[arg-type]
    read_padded(v, Box((45, 58), (55, 64)), mode="constant")  # type: ignore[arg-type]
    read_padded(v, Box((60, 0), (70, 10)), mode="constant")  # type: ignore[arg-type]
    assert v.boxes == [Box((0, 10), (7, 20)), Box((45, 58), (50, 60))]


# --------------------------------------------------------------------------- output


def _prepare(group: Path | str, **kw: Any) -> OutputSpec:
    args: dict[str, Any] = dict(
        shape=(10, 12, 14), channels=3, chunks=(4, 8, 8), axes=("z", "y", "x")
    )
    args.update(kw)
    return prepare_output(group, **args)


def test_prepare_output_metadata(tmp_path: Path) -> None:
    spec = _prepare(tmp_path / "out.zarr", attributes={"plan": {"tiles": 12}})
    assert spec == OutputSpec(str(tmp_path / "out.zarr"), "embeddings", "embeddings/0")
    meta = json.loads((tmp_path / "out.zarr" / "embeddings" / "zarr.json").read_text())
    ome = meta["attributes"]["ome"]
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert ms["axes"] == [
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    assert ms["datasets"] == [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * 4}]}
    ]
    assert meta["attributes"]["stitchsafe"] == {"plan": {"tiles": 12}}
    arr = zarr.open_array(str(tmp_path / "out.zarr" / "embeddings" / "0"), mode="r")
    assert arr.metadata.zarr_format == 3
    assert (arr.shape, arr.chunks, arr.dtype) == ((3, 10, 12, 14), (3, 4, 8, 8), np.float32)
    assert arr.fill_value == 0 and arr.metadata.dimension_names == ("c", "z", "y", "x")
    assert "blosc" in type(arr.compressors[0]).__name__.lower()


def test_prepare_output_units_and_scale(tmp_path: Path) -> None:
    spec = _prepare(
        tmp_path / "o.zarr", image="results/emb", scale=(2.0, 0.5, 0.5), units=("micrometer",) * 3
    )
    assert spec.array == "results/emb/0"
    img = zarr.open_group(str(tmp_path / "o.zarr" / "results" / "emb"), mode="r")
    (ms,) = img.attrs["ome"]["multiscales"]
    assert ms["axes"][1]["unit"] == "micrometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 2.0, 0.5, 0.5]


def test_output_validates_with_ome_zarr_models(tmp_path: Path) -> None:
    models = pytest.importorskip("ome_zarr_models.v05")
    _prepare(tmp_path / "o.zarr", units=("micrometer", None, None))
    image = models.Image.from_zarr(zarr.open_group(str(tmp_path / "o.zarr" / "embeddings")))
    assert image.attributes.ome.multiscales[0].axes[0].type == "channel"


def test_output_opens_with_ome_zarr_reader(tmp_path: Path) -> None:
    reader_mod = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    spec = _prepare(tmp_path / "o.zarr")
    data = RNG.standard_normal((3, 10, 12, 14)).astype(np.float32)
    write_block(spec, Box((0, 0, 0), (10, 12, 14)), data)
    nodes = list(reader_mod.Reader(parse_url(str(tmp_path / "o.zarr" / "embeddings")))())
    assert nodes and nodes[0].metadata["axes"][0]["name"] == "c"
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), data)


def test_output_beside_raw_input_keeps_it(tmp_path: Path) -> None:
    data = _data((6, 20, 20))
    raw = _ome(tmp_path / "c.zarr", data, version="0.5", axes=[_ax(n, "space") for n in "zyx"])
    v = open_volume(raw, spatial_dims=3)
    group, image = default_output_location(v)
    assert (group, image) == (raw, "embeddings")
    spec = _prepare(group, image=image, shape=v.shape, chunks=(6, 8, 8))
    with pytest.raises(StitchsafeError, match="already holds 'embeddings'.*--overwrite"):
        _prepare(group, image=image, shape=v.shape, chunks=(6, 8, 8))
    write_block(spec, Box((0, 0, 0), (6, 8, 8)), np.ones((3, 6, 8, 8), np.float32))
    spec = _prepare(group, image=image, shape=v.shape, chunks=(6, 8, 8), overwrite=True)
    out = zarr.open_array(os.path.join(group, "embeddings", "0"), mode="r")
    assert out[:].max() == 0  # the old image was replaced, not reused
    with pytest.raises(StitchsafeError, match="not written by stitchsafe"):
        _prepare(group, image="0", overwrite=True)
    # The raw image and its metadata are untouched.
    again = open_volume(raw, spatial_dims=3)
    np.testing.assert_array_equal(again.read(Box.from_shape(again.shape))[0], data)
    assert (again.kind, again.array_path) == ("ome-zarr", "0")


@pytest.mark.parametrize("what", ["v2-group", "file", "non-empty-dir", "v3-array"])
def test_prepare_output_refuses_non_v3_group(tmp_path: Path, what: str) -> None:
    target = tmp_path / "o.zarr"
    if what == "v2-group":
        zarr.open_group(str(target), mode="w", zarr_format=2)
    elif what == "file":
        target.write_text("x")
    elif what == "non-empty-dir":
        target.mkdir()
        (target / "notes.txt").write_text("x")
    else:
        zarr.create_array(str(target), shape=(2,), dtype="uint8")
    with pytest.raises(StitchsafeError, match="already exists and is"):
        _prepare(target)


def test_write_block_round_trip_and_alignment(tmp_path: Path) -> None:
    spec = _prepare(tmp_path / "o.zarr")
    full = RNG.standard_normal((3, 10, 12, 14)).astype(np.float32)
    boxes = [
        Box((z, y, x), (min(z + 4, 10), min(y + 8, 12), min(x + 8, 14)))
        for z in (0, 4, 8)
        for y in (0, 8)
        for x in (0, 8)
    ]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda b: write_block(spec, b, full[(slice(None), *b.to_slices())]), boxes))
    arr = zarr.open_array(str(tmp_path / "o.zarr" / "embeddings" / "0"), mode="r")
    np.testing.assert_array_equal(arr[:], full)
    with pytest.raises(ValueError, match="not aligned"):
        write_block(spec, Box((0, 0, 2), (4, 8, 10)), np.zeros((3, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        write_block(spec, Box((0, 0, 0), (4, 8, 8)), np.zeros((2, 4, 8, 8), np.float32))


def test_write_block_from_another_process(tmp_path: Path) -> None:
    import multiprocessing

    spec = _prepare(tmp_path / "o.zarr")
    box = Box((4, 8, 8), (8, 12, 14))
    data = np.full((3, *box.shape), 7.0, np.float32)
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=write_block, args=(spec, box, data))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    arr = zarr.open_array(str(tmp_path / "o.zarr" / "embeddings" / "0"), mode="r")
    assert arr[(slice(None), *box.to_slices())].min() == 7.0 and arr[:, :4].max() == 0


def test_mark_complete_merges_attributes(tmp_path: Path) -> None:
    spec = _prepare(tmp_path / "o.zarr", attributes={"plan": {"tiles": 2}})
    mark_complete(spec, {"complete": True, "seconds": 1.5})
    img = zarr.open_group(str(tmp_path / "o.zarr" / "embeddings"), mode="r")
    assert img.attrs["stitchsafe"] == {"plan": {"tiles": 2}, "complete": True, "seconds": 1.5}
    assert img.attrs["ome"]["version"] == "0.5"


def test_default_output_location(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "vol.ome.tif", _data((4, 5)))
    v = open_volume(tmp_path / "vol.ome.tif", spatial_dims=2)
    assert default_output_location(v) == (str(tmp_path / "vol.stitchsafe.zarr"), "embeddings")
    v = open_volume(_zarr(tmp_path / "raw.zarr", _data((4, 5))), spatial_dims=2)
    assert default_output_location(v) == (str(tmp_path / "raw.stitchsafe.zarr"), "embeddings")
    for fmt in (2, 3):
        g = zarr.open_group(str(tmp_path / f"c{fmt}.zarr"), mode="w", zarr_format=fmt)
        g.create_array("raw", shape=(4, 5), dtype="uint8")
        v = open_volume(tmp_path / f"c{fmt}.zarr", key="raw", spatial_dims=2)
        expected = str(tmp_path / "c3.zarr") if fmt == 3 else str(tmp_path / "c2.stitchsafe.zarr")
        assert default_output_location(v) == (expected, "embeddings")


def test_output_cache_is_thread_safe(tmp_path: Path) -> None:
    spec = _prepare(tmp_path / "o.zarr", shape=(8, 8, 8), chunks=(1, 8, 8))
    barrier = threading.Barrier(8)

    def work(z: int) -> None:
        barrier.wait()
        write_block(spec, Box((z, 0, 0), (z + 1, 8, 8)), np.full((3, 1, 8, 8), z, np.float32))

    threads = [threading.Thread(target=work, args=(z,)) for z in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    arr = zarr.open_array(str(tmp_path / "o.zarr" / "embeddings" / "0"), mode="r")
    assert arr[0, :, 0, 0].tolist() == list(range(8))
