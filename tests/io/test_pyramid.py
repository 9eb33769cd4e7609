"""Pyramids: every level equals a plain-numpy downsampling of level 0, read back with the
OME-Zarr libraries users have; the anisotropic rule; an interrupted pass is finished."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from stitchsafe.errors import StitchsafeError
from stitchsafe.io import (
    ChunkPolicy,
    ImageLayout,
    OutputSpec,
    create_label_image,
    create_output,
    downsample,
    pyramid_factors,
    read_pyramid,
    write_pyramid,
)

RNG = np.random.default_rng(7)


def reference_mean(x: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Mean over blocks of ``factors`` (the last block of an odd axis is smaller), in
    float64 and rounded to ``x``'s dtype: NaN padding and ``nanmean`` of the blocks."""
    padded_shape = [math.ceil(n / f) * f for n, f in zip(x.shape, factors)]
    padded = np.full(padded_shape, np.nan)
    padded[tuple(slice(0, n) for n in x.shape)] = x
    blocks = padded.reshape([v for n, f in zip(padded_shape, factors) for v in (n // f, f)])
    return np.nanmean(blocks, axis=tuple(range(1, blocks.ndim, 2))).astype(x.dtype)


def reference_stride(x: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """The first voxel of every block."""
    return x[tuple(slice(None, None, f) for f in factors)]


def _image(tmp: Path, layout: ImageLayout, data: np.ndarray) -> OutputSpec:
    if layout.channels is None:
        spec = create_label_image(tmp / "o.zarr", layout)
    else:
        spec = create_output(tmp / "o.zarr", layout)
    zarr.open_array(str(tmp / "o.zarr" / spec.array), mode="r+")[...] = data
    return spec


CASES = {
    # name: (spatial shape, write box, channels, dtype, chunk policy)
    "2d-embeddings-sharded": ((600, 561), (512, 512), 2, "float32", ChunkPolicy()),
    "3d-embeddings-odd": ((9, 37, 41), (4, 16, 16), 3, "float32", ChunkPolicy()),
    "3d-embeddings-float16-sharded": (
        (13, 40, 36),
        (8, 16, 16),
        2,
        "float16",
        ChunkPolicy(target_voxels=256),
    ),
    "2d-labels-odd": ((77, 45), (16, 16), None, "uint32", ChunkPolicy()),
    "3d-labels-sharded": (
        (11, 33, 35),
        (8, 16, 16),
        None,
        "uint64",
        ChunkPolicy(target_voxels=128),
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_levels_equal_a_reference_downsampling_of_level_0(tmp_path: Path, case: str) -> None:
    shape, box, channels, dtype, policy = CASES[case]
    layout = ImageLayout(
        shape=shape, chunks=box, axes="zyx"[-len(shape) :], dtype=dtype, channels=channels,
        chunking=policy,
    )  # fmt: skip
    full = layout.array_shape
    if channels is None:
        data = RNG.integers(0, 50, size=full).astype(dtype)  # runs of equal ids
    else:
        data = RNG.standard_normal(full).astype(dtype)
    spec = _image(tmp_path, layout, data)
    pyramid = write_pyramid(spec, workers=2)
    assert pyramid.complete and pyramid.planned == len(pyramid.levels) >= 2
    assert pyramid.method == ("stride" if channels is None else "mean")
    image_dir = tmp_path / "o.zarr" / spec.image
    level0 = zarr.open_array(str(image_dir / "0"), mode="r")
    assert (level0.shards is not None) == case.endswith("sharded")
    expected = data
    lead = 0 if channels is None else 1
    for previous, level in zip(pyramid.levels, pyramid.levels[1:]):
        step = tuple(round(b / a) for a, b in zip(previous.scale, level.scale))
        assert set(step) <= {1, 2} and 2 in step
        factors = (1,) * lead + step
        if channels is None:
            expected = reference_stride(expected, factors)
        else:
            expected = reference_mean(expected, factors)
        arr = zarr.open_array(str(image_dir / level.path), mode="r")
        assert arr.shape == expected.shape  # ceil at odd sizes
        assert level.shape == expected.shape[lead:]
        if channels is None:
            np.testing.assert_array_equal(arr[...], expected)
        else:
            tolerance = 1e-6 if dtype == "float32" else 1e-3
            np.testing.assert_allclose(arr[...], expected, rtol=tolerance, atol=0)
        # Stored like level 0: dtype, codecs, chunks and shards.
        assert arr.dtype == level0.dtype
        assert (arr.chunks, arr.shards) == (level0.chunks, level0.shards)
        assert arr.compressors == level0.compressors
    top = pyramid.levels[-1].shape
    assert all(n <= c for n, c in zip(top, level0.chunks[lead:]))


@pytest.mark.parametrize("labels", [False, True], ids=["mean", "stride"])
def test_constant_chunks_are_stored_in_mean_levels_only(tmp_path: Path, labels: bool) -> None:
    """A level of means stores every chunk without comparing it with the fill value first
    (as level 0 does); a labels level leaves background chunks out (zarr's default)."""
    layout = ImageLayout(
        shape=(40, 40), chunks=(16, 16), axes="yx", dtype="uint32" if labels else "float32",
        channels=None if labels else 1,
    )  # fmt: skip
    spec = _image(tmp_path, layout, np.zeros(layout.array_shape, layout.dtype))
    level = write_pyramid(spec).levels[1]
    stored = tmp_path / "o.zarr" / spec.image / level.path / "c"
    files = [p for p in stored.rglob("*") if p.is_file()] if stored.exists() else []
    assert len(files) == (0 if labels else 4)  # 20 x 20 in chunks of 16 x 16


@pytest.mark.parametrize("factors", [(3,), (2, 3), (1, 2, 3), (3, 1, 2, 2)])
def test_mean_of_runs_of_any_length_equals_the_reference(factors: tuple[int, ...]) -> None:
    """Odd sizes (a shorter last run) and factors above 2, float32 as the embeddings."""
    shape = tuple(7 + 2 * i for i in range(len(factors)))
    x = RNG.standard_normal(shape).astype(np.float32)
    got = downsample(x, factors, "mean", x.dtype)
    np.testing.assert_allclose(got, reference_mean(x, factors), rtol=1e-6, atol=0)


def test_downsampling_mean_and_stride_by_hand() -> None:
    x = np.array([[1, 2, 3], [5, 6, 7], [9, 10, 11]], np.float32)
    spec_mean = reference_mean(x, (2, 2))
    np.testing.assert_array_equal(spec_mean, [[3.5, 5], [9.5, 11]])
    np.testing.assert_array_equal(reference_stride(x, (2, 2)), [[1, 3], [9, 11]])


def test_multiscales_read_back_with_ome_zarr_models_and_reader(tmp_path: Path) -> None:
    models = pytest.importorskip("ome_zarr_models.v05")
    reader = pytest.importorskip("ome_zarr.reader")
    parse_url = pytest.importorskip("ome_zarr.io").parse_url

    layout = ImageLayout(
        shape=(10, 72, 64), chunks=(8, 16, 16), axes="zyx", channels=2, scale=(2.0, 0.5, 0.5),
        units=("micrometer",) * 3, translation=(100.0, 5.0, 0.0),
    )  # fmt: skip
    data = RNG.standard_normal(layout.array_shape).astype(np.float32)
    write_pyramid(_image(tmp_path, layout, data))
    image = models.Image.from_zarr(zarr.open_group(str(tmp_path / "o.zarr" / "embeddings")))
    datasets = image.attributes.ome.multiscales[0].datasets
    got = [(d.path, list(d.coordinateTransformations[0].scale), _translation(d)) for d in datasets]
    # y and x are halved until their voxels are as long as z's, then all axes together;
    # a mean voxel sits at the centre of the level-0 voxels it averages.
    assert got == [
        ("0", [1.0, 2.0, 0.5, 0.5], [0.0, 100.0, 5.0, 0.0]),
        ("1", [1.0, 2.0, 1.0, 1.0], [0.0, 100.0, 5.25, 0.25]),
        ("2", [1.0, 2.0, 2.0, 2.0], [0.0, 100.0, 5.75, 0.75]),
        ("3", [1.0, 4.0, 4.0, 4.0], [0.0, 101.0, 6.75, 1.75]),
    ]
    nodes = list(reader.Reader(parse_url(str(tmp_path / "o.zarr" / "embeddings")))())
    shapes = [tuple(level.shape) for level in nodes[0].data]
    assert shapes == [(2, 10, 72, 64), (2, 10, 36, 32), (2, 10, 18, 16), (2, 5, 9, 8)]
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), data)


def _translation(dataset: object) -> list[float]:
    transforms = dataset.coordinateTransformations  # type: ignore[attr-defined]
    return list(transforms[1].translation) if len(transforms) > 1 else []


def test_label_levels_keep_level_0_translation_and_validate(tmp_path: Path) -> None:
    models = pytest.importorskip("ome_zarr_models.v05")
    layout = ImageLayout(
        shape=(40, 30), chunks=(8, 8), axes="yx", dtype="uint32", scale=(0.5, 0.5),
        translation=(3.0, 4.0),
    )  # fmt: skip
    ids = RNG.integers(0, 9, size=(40, 30)).astype(np.uint32)
    pyramid = write_pyramid(_image(tmp_path, layout, ids))
    assert [level.translation for level in pyramid.levels] == [(3.0, 4.0)] * 4
    assert [level.scale for level in pyramid.levels] == [(0.5, 0.5), (1, 1), (2, 2), (4, 4)]
    label = models.ImageLabel.from_zarr(zarr.open_group(str(tmp_path / "o.zarr" / "instances")))
    assert [d.path for d in label.attributes.ome.multiscales[0].datasets] == ["0", "1", "2", "3"]
    top = zarr.open_array(str(tmp_path / "o.zarr" / "instances" / "3"), mode="r")[...]
    np.testing.assert_array_equal(top, ids[::8, ::8])  # no label invented


@pytest.mark.parametrize(
    ("shape", "scale", "top", "expected"),
    [
        ((40, 1000, 1000), (2.0, 0.5, 0.5), (64, 64, 64),
         [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]),
        ((100, 100, 100), (1.0, 1.0, 1.5), (16, 16, 16), [(2, 2, 2), (2, 2, 2), (2, 2, 2)]),
        ((64, 64, 64), (1.0, 1.0, 2.5), (8, 8, 8),
         [(2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2)]),
        ((3, 600, 600), (1.0, 1.0, 1.0), (64, 64, 64),
         [(2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2)]),
        ((256, 256), (1.0, 1.0), (256, 256), []),
    ],
    ids=["z-coarse", "within-2x", "x-coarse", "thin-z", "fits"],
)  # fmt: skip
def test_anisotropic_rule(
    shape: tuple[int, ...], scale: tuple[float, ...], top: tuple[int, ...], expected: list
) -> None:
    assert pyramid_factors(shape, scale, top) == expected


def test_interrupted_pass_is_finished_from_the_first_level_not_whole(tmp_path: Path) -> None:
    layout = ImageLayout(shape=(64, 48), chunks=(8, 8), axes="yx", channels=2)
    data = RNG.standard_normal(layout.array_shape).astype(np.float32)
    spec = _image(tmp_path, layout, data)
    image_dir = tmp_path / "o.zarr" / "embeddings"
    (image_dir / "2").mkdir()
    (image_dir / "2" / "notes.txt").write_text("not a level")
    with pytest.raises(StitchsafeError, match="level 2 cannot be written"):
        write_pyramid(spec)
    stopped = read_pyramid(str(tmp_path / "o.zarr"), "embeddings")
    assert stopped is not None and stopped.complete is False
    assert [level.path for level in stopped.levels] == ["0", "1"]  # only whole levels
    assert (image_dir / "2" / "notes.txt").exists()  # nothing that is not ours deleted
    level1 = (image_dir / "1" / "zarr.json").stat().st_mtime_ns
    os.remove(image_dir / "2" / "notes.txt")
    os.rmdir(image_dir / "2")
    finished = write_pyramid(spec)
    assert finished.complete and [level.path for level in finished.levels] == ["0", "1", "2", "3"]
    assert (image_dir / "1" / "zarr.json").stat().st_mtime_ns == level1  # not written again
    clean = tmp_path / "clean"
    clean.mkdir()
    write_pyramid(_image(clean, layout, data))
    for level in finished.levels:
        np.testing.assert_array_equal(
            zarr.open_array(str(image_dir / level.path), mode="r")[...],
            zarr.open_array(str(clean / "o.zarr" / "embeddings" / level.path), mode="r")[...],
        )
    again = write_pyramid(spec)  # complete: nothing is redone
    assert again == finished
    assert (image_dir / "1" / "zarr.json").stat().st_mtime_ns == level1
