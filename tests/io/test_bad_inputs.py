"""Bad inputs are refused up front: one ``Error:`` paragraph, exit 2, the file/chunk/field named.

Real files written by tifffile and zarr, then damaged as disks, copies and people damage
them; the installed console script as users run it, with and without ``--model`` (the
true reason is reported either way).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import done_mask_path, open_volume
from stitchsafe.models import bundled_model

RNG = np.random.default_rng(15)
STACK = RNG.integers(0, 1000, size=(8, 48, 48)).astype(np.uint16)


def _predict(input: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``stitchsafe predict`` on ``input`` into ``<input>.out.zarr``, without progress bars."""
    out = input.with_name(input.name + ".out.zarr")
    return run_cli("predict", "--input", str(input), "--output", str(out), "--no-progress", *extra)


def _write_tiff(path: Path, data: np.ndarray, flavour: str, compression: str | None) -> Path:
    """A Z, Y, X stack as ImageJ hyperstack, OME-TIFF or tifffile's shaped TIFF."""
    meta: dict[str, Any] = {"axes": "ZYX"}
    kwargs: dict[str, Any] = {"imagej": True} if flavour == "imagej" else {"ome": flavour == "ome"}
    tifffile.imwrite(path, data, compression=compression, metadata=meta, **kwargs)
    return path


def _cut(path: Path, keep: int) -> Path:
    """Keep the first ``keep`` bytes of ``path`` (a copy interrupted, a disk that filled)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return path


# --------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("compression", [None, "zlib"], ids=["raw", "zlib"])
@pytest.mark.parametrize("flavour", ["imagej", "ome", "shaped"])
def test_truncated_tiff_is_refused(tmp_path: Path, flavour: str, compression: str | None) -> None:
    path = _write_tiff(tmp_path / "stack.tif", STACK, flavour, compression)
    with tifffile.TiffFile(path) as tf:  # the intact file is one 3-D series
        assert tf.series[0].shape == STACK.shape
    _cut(path, path.stat().st_size // 2)
    proc = _predict(path)  # without --model: the true reason, not "no bundled model fits"
    assert_bad_input(proc, "stack.tif", "truncated")
    assert "bundled model" not in proc.stderr
    assert not (tmp_path / "stack.tif.out.zarr").exists()  # nothing run, nothing marked complete


def test_truncated_tiff_is_refused_with_model_too(tmp_path: Path) -> None:
    path = _cut(_write_tiff(tmp_path / "s.tif", STACK, "imagej", "zlib"), 15_000)
    proc = _predict(path, "--model", str(bundled_model(3)))
    assert_bad_input(proc, "s.tif", "truncated")


def _ome_xml(planes: int) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="48" SizeY="48" '
        f'SizeZ="{planes}" SizeC="1" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        f'<TiffData IFD="0" PlaneCount="{planes}"/></Pixels></Image></OME>'
    )


DECLARED = {
    "imagej": "ImageJ=1.11a\nimages=8\nslices=8\n",
    "ome": _ome_xml(8),
    "shaped": '{"shape": [8, 48, 48]}',
}


@pytest.mark.parametrize("compression", [None, "zlib"], ids=["raw", "zlib"])
@pytest.mark.parametrize("flavour", list(DECLARED))
def test_tiff_with_fewer_planes_than_its_metadata_declares(
    tmp_path: Path, flavour: str, compression: str | None
) -> None:
    # A well-formed file (its page chain ends properly) whose own metadata declares 8
    # planes while only 5 were written: the page count is checked against the metadata.
    path = tmp_path / "short.tif"
    tifffile.imwrite(
        path, STACK[:5], description=DECLARED[flavour], metadata=None, compression=compression
    )
    with pytest.raises(StitchsafeError, match="truncated or corrupt") as err:
        open_volume(path, spatial_dims=3)
    assert any(w in str(err.value) for w in ("declares 8", "of the 8 image planes", "data runs"))


@pytest.mark.parametrize("compression", [None, "zlib"], ids=["raw", "zlib"])
def test_tiff_cut_inside_its_last_page(tmp_path: Path, compression: str | None) -> None:
    path = tmp_path / "tail.tif"
    tifffile.imwrite(path, STACK[0], compression=compression)  # one page, its data last
    _cut(path, path.stat().st_size - 100)  # the directory intact, the data cut
    with pytest.raises(StitchsafeError, match="truncated or corrupt: .* runs to byte"):
        open_volume(path, spatial_dims=2)


@pytest.mark.parametrize("compression", [None, "zlib"], ids=["raw", "zlib"])
@pytest.mark.parametrize("flavour", ["imagej", "ome", "shaped"])
def test_intact_tiffs_still_read(tmp_path: Path, flavour: str, compression: str | None) -> None:
    path = _write_tiff(tmp_path / "ok.tif", STACK, flavour, compression)
    v = open_volume(path, spatial_dims=3)
    assert (v.shape, v.channels) == (STACK.shape, 1)
    np.testing.assert_array_equal(v.read(Box.from_shape(STACK.shape))[0], STACK)
    v.close()


def test_corrupt_tiff_tile_is_refused_without_traceback(tmp_path: Path) -> None:
    # The file is whole (its length and directories intact) but a compressed tile is not:
    # the failure shows only when the tile is read, and must still be one paragraph.
    path = tmp_path / "flip.tif"
    tifffile.imwrite(path, STACK, compression="zlib", tile=(16, 16))
    with tifffile.TiffFile(path) as tf:
        offset, count = tf.pages[3].dataoffsets[2], tf.pages[3].databytecounts[2]
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = bytes(count)
    path.write_bytes(bytes(data))
    proc = _predict(path)
    assert_bad_input(proc, "flip.tif", "corrupt", "z ", "re-export")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # one paragraph only


# --------------------------------------------------------------------------- zarr chunks


@pytest.mark.parametrize("fmt", [2, 3], ids=["v2", "v3"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_zarr_chunk_is_named(tmp_path: Path, fmt: int, damage: str) -> None:
    path = tmp_path / "raw.zarr"
    zarr.create_array(str(path), data=STACK[0], chunks=(16, 16), zarr_format=fmt)
    chunk = path / ("1.2" if fmt == 2 else "c/1/2")
    if damage == "garbage":
        chunk.write_bytes(b"not a compressed chunk" * 3)
    else:
        _cut(chunk, chunk.stat().st_size // 2)
    proc = _predict(path)
    key = "1.2" if fmt == 2 else "c/1/2"
    assert_bad_input(proc, f"chunk '{key}'", "(1, 2)", "raw.zarr", "restore it")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_corrupt_chunk_met_while_tiles_run_loses_nothing(tmp_path: Path) -> None:
    # No normalisation sample (--normalize none on integers) and a chunk outside the
    # input's identity sample: the damage shows only when its tile is read. The run stops
    # with the chunk named; the tiles already written stay, and once the chunk is
    # restored --resume completes the same output as an undamaged run.
    data = RNG.integers(0, 1000, size=(128, 128)).astype(np.uint16)
    path = tmp_path / "in.zarr"
    zarr.create_array(str(path), data=data, chunks=(16, 16))
    chunk = path / "c" / "7" / "6"
    good = chunk.read_bytes()
    chunk.write_bytes(b"\0garbage" * 4)
    args = ("--tile-shape", "32", "--normalize", "none")
    out = tmp_path / "in.zarr.out.zarr"
    assert_bad_input(_predict(path, *args), "chunk 'c/7/6'", "in.zarr")
    assert out.exists(), "the chunk was read before the tiles (in a sample); pick another"
    done = zarr.open_array(done_mask_path(out, ""), mode="r")[...]
    assert 0 < np.count_nonzero(done) < done.size  # some tiles were written, and kept
    chunk.write_bytes(good)
    proc = _predict(path, *args, "--resume")
    assert proc.returncode == 0, proc.stderr
    clean = tmp_path / "clean.zarr"
    shutil.copytree(path, clean)
    assert _predict(clean, *args).returncode == 0
    for image in ("0", "labels/instances/0"):
        got = zarr.open_array(str(out / image), mode="r")[...]
        want = zarr.open_array(str(tmp_path / "clean.zarr.out.zarr" / image), mode="r")[...]
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- OME-Zarr


def _ome_multiscale() -> dict[str, Any]:
    return {
        "axes": [{"name": n, "type": "space"} for n in "zyx"],
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]}
        ],
    }


def _broken(variant: str) -> Any:
    """The ``multiscales`` value of one malformed variant."""
    ms = _ome_multiscale()
    level0 = ms["datasets"][0]
    edits = {
        "datasets-missing": lambda: ms.pop("datasets"),
        "datasets-empty": lambda: ms.update(datasets=[]),
        "path-missing": lambda: level0.pop("path"),
        "path-not-a-string": lambda: level0.update(path=0),
        "path-names-no-array": lambda: level0.update(path="nope"),
        "axes-not-a-list": lambda: ms.update(axes="zyx"),
        "axes-wrong-length": lambda: ms.update(axes=ms["axes"][:2]),
        "axis-not-an-object": lambda: ms["axes"].__setitem__(0, 3),
        "transforms-not-a-list": lambda: level0.update(coordinateTransformations={"scale": 1}),
        "transform-not-an-object": lambda: level0.update(coordinateTransformations=["scale"]),
        "scale-not-numbers": lambda: level0["coordinateTransformations"][0].update(
            scale=["a", 1, 1]
        ),
        "scale-wrong-length": lambda: level0["coordinateTransformations"][0].update(scale=[1, 1]),
    }
    if variant == "multiscales-not-a-list":
        return {"datasets": []}
    if variant == "multiscales-empty":
        return []
    edits[variant]()
    return [ms]


FIELDS = {
    "multiscales-not-a-list": "multiscales is an object, not a list",
    "multiscales-empty": "multiscales is an empty list",
    "datasets-missing": "multiscales[0].datasets is missing",
    "datasets-empty": "multiscales[0].datasets is an empty list",
    "path-missing": "multiscales[0].datasets[0].path is missing",
    "path-not-a-string": "multiscales[0].datasets[0].path is 0",
    "path-names-no-array": "multiscales[0].datasets[0].path is 'nope'",
    "axes-not-a-list": "multiscales[0].axes is a string",
    "axes-wrong-length": "multiscales[0].axes lists 2 axes",
    "axis-not-an-object": "multiscales[0].axes[0] is a number",
    "transforms-not-a-list": "datasets[0].coordinateTransformations is an object",
    "transform-not-an-object": "datasets[0].coordinateTransformations[0] is a string",
    "scale-not-numbers": "coordinateTransformations[0].scale is ['a', 1, 1]",
    "scale-wrong-length": "coordinateTransformations[0].scale has 2 values for 3 axes",
}


@pytest.mark.parametrize("variant", list(FIELDS))
def test_malformed_ome_metadata_names_the_field(tmp_path: Path, variant: str) -> None:
    version = "0.5" if len(variant) % 2 else "0.4"  # both versions, spread over the variants
    path = tmp_path / "img.zarr"
    g = zarr.open_group(str(path), mode="w", zarr_format=3 if version == "0.5" else 2)
    g.create_array("0", data=STACK[:4, :16, :16])
    multiscales = copy.deepcopy(_broken(variant))
    if version == "0.5":
        g.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    else:
        g.attrs["multiscales"] = multiscales
    proc = _predict(path)  # without --model: the metadata's problem, not the model's
    assert_bad_input(proc, "img.zarr", "OME-Zarr metadata", "malformed", FIELDS[variant])
    assert "bundled model" not in proc.stderr


def test_ome_attribute_of_the_wrong_type(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=3)
    g.create_array("0", data=STACK[:4, :16, :16])
    g.attrs["ome"] = "0.5"
    with pytest.raises(StitchsafeError, match="ome is a string, not an object"):
        open_volume(tmp_path / "img.zarr", spatial_dims=3)


# --------------------------------------------------------------------------- not files


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    # Reading a FIFO blocks until someone writes; the refusal must come before any read.
    proc = subprocess.run(
        [EXE, "predict", "--input", str(fifo), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_bad_input(proc, "pipe.tif", "FIFO", "regular file")


@pytest.mark.parametrize("model", [False, True], ids=["bundled", "--model"])
def test_dangling_symlink_is_named(tmp_path: Path, model: bool) -> None:
    link = tmp_path / "image.zarr"
    link.symlink_to(tmp_path / "moved-away.zarr")
    extra = ("--model", str(bundled_model(2))) if model else ()
    proc = _predict(link, *extra)
    assert_bad_input(proc, "image.zarr", "symbolic link", "moved-away.zarr", "does not exist")


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "shape,words",
    [
        ((0, 48, 48), ("(0, 48, 48)", "axis 0 has size 0")),
        ((48, 48, 0), ("(48, 48, 0)", "axis 2 has size 0")),
        ((2**20, 2**20, 2**20), ("1048576", "2**53", "shape in its metadata looks wrong")),
    ],
    ids=["empty-z", "empty-x", "absurd"],
)
def test_impossible_shapes(tmp_path: Path, shape: tuple[int, ...], words: tuple[str, ...]) -> None:
    path = tmp_path / "shape.zarr"
    zarr.create_array(str(path), shape=shape, dtype="uint8", chunks=(16, 16, 16))
    assert_bad_input(_predict(path), "shape.zarr", *words)


@pytest.mark.parametrize(
    "shape,words",
    [
        # An input that is no image as read: an input problem, whether or not --model.
        ((2, 3, 4, 16, 16), ("has shape (2, 3, 4, 16, 16)", "not a 2-d or 3-d image", "axes")),
        # A fine image with more channels than the bundled models take.
        ((2, 3, 16, 16), ("no bundled model fits", "has 2 channels", "--model")),
    ],
    ids=["axes", "channels"],
)
def test_no_bundled_model_fits_says_why(
    tmp_path: Path, shape: tuple[int, ...], words: tuple[str, ...]
) -> None:
    path = tmp_path / "many.zarr"
    zarr.create_array(str(path), data=np.zeros(shape, np.uint16))
    assert_bad_input(_predict(path), "many.zarr", *words)
