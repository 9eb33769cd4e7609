"""Tests for stitchsafe.io: index maps against ``numpy.pad``, padded reads of real zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from images import RNG, random_image, write_zarr

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import PAD_MODES, pad_indices, read_padded
from stitchsafe.io import Volume, open_volume


@given(
    begin=st.integers(-40, 40),
    length=st.integers(0, 60),
    size=st.integers(1, 9),
    mode=st.sampled_from(PAD_MODES),
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
        out[shape] = (open_volume(write_zarr(path, stored), spatial_dims=len(shape)), data)
    return out


@given(
    which=st.integers(0, len(PAD_SHAPES) - 1),
    corners=st.lists(st.tuples(st.integers(-12, 15), st.integers(0, 25)), min_size=3, max_size=3),
    mode=st.sampled_from(PAD_MODES),
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
    data = random_image((6, 7))
    v = open_volume(write_zarr(tmp_path / "a.zarr", data), spatial_dims=2)
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

    v = CountingVolume(
        open_volume(write_zarr(tmp_path / "a.zarr", random_image((50, 60))), spatial_dims=2)
    )
    read_padded(v, Box((-3, 10), (7, 20)), mode="reflect")  # type: ignore[arg-type]
    read_padded(v, Box((45, 58), (55, 64)), mode="constant")  # type: ignore[arg-type]
    read_padded(v, Box((60, 0), (70, 10)), mode="constant")  # type: ignore[arg-type]
    assert v.boxes == [Box((0, 10), (7, 20)), Box((45, 58), (50, 60))]
