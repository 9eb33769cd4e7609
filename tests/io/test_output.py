"""Tests for stitchsafe.io: OME-Zarr 0.5 images written to disk and read back."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from images import RNG, axis, random_image, write_ome, write_zarr

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import (
    OutputSpec,
    default_output_location,
    mark_complete,
    prepare_labels,
    prepare_output,
    write_block,
)
from stitchsafe.io import open_volume


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
    data = random_image((6, 20, 20))
    raw = write_ome(
        tmp_path / "c.zarr", data, version="0.5", axes=[axis(n, "space") for n in "zyx"]
    )
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


def test_write_block_stores_a_block_of_fill_values(tmp_path: Path) -> None:
    """Every written chunk is stored, zeros (the fill value) too: zarr's default would
    compare each chunk with the fill value first and leave such chunks out."""
    spec = _prepare(tmp_path / "o.zarr")
    stored = tmp_path / "o.zarr" / "embeddings" / "0" / "c"
    write_block(spec, Box((0, 0, 0), (4, 8, 8)), np.zeros((3, 4, 8, 8), np.float32))
    write_block(spec, Box((4, 0, 0), (8, 8, 8)), np.ones((3, 4, 8, 8), np.float32))
    objects = sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file())
    assert objects == ["0/0/0/0", "0/1/0/0"]
    arr = zarr.open_array(str(tmp_path / "o.zarr" / "embeddings" / "0"), mode="r")
    assert arr[:, :4, :8, :8].max() == 0 and arr[:, 4:8, :8, :8].min() == 1


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
    tifffile.imwrite(tmp_path / "vol.ome.tif", random_image((4, 5)))
    v = open_volume(tmp_path / "vol.ome.tif", spatial_dims=2)
    # A container stitchsafe makes: its root is the image.
    assert default_output_location(v) == (str(tmp_path / "vol.stitchsafe.zarr"), "")
    v = open_volume(write_zarr(tmp_path / "raw.zarr", random_image((4, 5))), spatial_dims=2)
    assert default_output_location(v) == (str(tmp_path / "raw.stitchsafe.zarr"), "")
    for fmt in (2, 3):
        g = zarr.open_group(str(tmp_path / f"c{fmt}.zarr"), mode="w", zarr_format=fmt)
        g.create_array("raw", shape=(4, 5), dtype="uint8")
        v = open_volume(tmp_path / f"c{fmt}.zarr", key="raw", spatial_dims=2)
        # Beside the raw image in the input's own zarr v3 container; else a new one.
        expected = (
            (str(tmp_path / "c3.zarr"), "embeddings")
            if fmt == 3
            else (str(tmp_path / "c2.stitchsafe.zarr"), "")
        )
        assert default_output_location(v) == expected
    assert default_output_location(v, "instances") == (str(tmp_path / "c3.zarr"), "instances")
    # An output of an earlier version beside the input keeps its image where it was.
    old = zarr.open_group(str(tmp_path / "c2.stitchsafe.zarr"), mode="w")
    old.create_group("embeddings", attributes={"stitchsafe": {"plan": {}}})
    v = open_volume(tmp_path / "c2.zarr", key="raw", spatial_dims=2)
    assert default_output_location(v) == (str(tmp_path / "c2.stitchsafe.zarr"), "embeddings")


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


def _labels(group: Path, **kw: Any) -> OutputSpec:
    args: dict[str, Any] = dict(shape=(10, 12, 14), chunks=(4, 8, 8), axes=("z", "y", "x"))
    args.update(kw)
    return prepare_labels(group, **args)


def test_prepare_labels_metadata_and_validation(tmp_path: Path) -> None:
    models = pytest.importorskip("ome_zarr_models.v05")
    group = tmp_path / "o.zarr"
    _prepare(group, units=("micrometer", None, None), scale=(2.0, 0.5, 0.5))
    attributes = {"params": {"threshold": 1.0}}
    units = ("micrometer", None, None)
    spec = _labels(group, attributes=attributes, scale=(2.0, 0.5, 0.5), units=units)
    assert spec == OutputSpec(
        str(group), "embeddings/labels/instances", "embeddings/labels/instances/0"
    )
    root = group / "embeddings" / "labels"
    assert json.loads((root / "zarr.json").read_text())["attributes"] == {
        "ome": {"version": "0.5", "labels": ["instances"]}
    }
    attrs = json.loads((root / "instances" / "zarr.json").read_text())["attributes"]
    assert attrs["ome"]["image-label"] == {"source": {"image": "../../"}}
    (ms,) = attrs["ome"]["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert ms["axes"][0]["unit"] == "micrometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.5]
    assert attrs["stitchsafe"] == {"params": {"threshold": 1.0}}
    arr = zarr.open_array(str(root / "instances" / "0"), mode="r")
    assert (arr.shape, arr.chunks, arr.dtype) == ((10, 12, 14), (4, 8, 8), np.uint32)
    assert arr.fill_value == 0
    models.Labels.from_zarr(zarr.open_group(str(root)))
    models.ImageLabel.from_zarr(zarr.open_group(str(root / "instances")))
    models.Image.from_zarr(zarr.open_group(str(group / "embeddings")))


def test_prepare_labels_overwrite_and_foreign_labels(tmp_path: Path) -> None:
    group = tmp_path / "o.zarr"
    _prepare(group)
    with pytest.raises(StitchsafeError, match="not a zarr v3 image group"):
        _labels(group, image="missing")
    # Someone else's label image is kept and stays listed.
    foreign = zarr.open_group(str(group / "embeddings" / "labels"), mode="a")
    foreign.attrs["ome"] = {"version": "0.5", "labels": ["cells"]}
    foreign.create_group("cells")
    _labels(group, dtype="uint64")
    listed = zarr.open_group(str(group / "embeddings" / "labels")).attrs["ome"]["labels"]
    assert listed == ["cells", "instances"]
    with pytest.raises(StitchsafeError, match="already holds.*--overwrite"):
        _labels(group)
    _labels(group, overwrite=True)
    assert zarr.open_group(str(group / "embeddings" / "labels")).attrs["ome"]["labels"] == [
        "cells",
        "instances",
    ]
    with pytest.raises(StitchsafeError, match="not written by stitchsafe"):
        _labels(group, name="cells", overwrite=True)
    assert (group / "embeddings" / "labels" / "cells").exists()


def test_the_container_root_as_the_image(tmp_path: Path) -> None:
    """``image=""``: the group's root is the image (levels ``0``..., labels at
    ``labels/<name>``), as OME-Zarr readers open it; replaced whole only with overwrite,
    and only when stitchsafe wrote it."""
    models = pytest.importorskip("ome_zarr_models.v05")
    reader = pytest.importorskip("ome_zarr.reader")
    parse_url = pytest.importorskip("ome_zarr.io").parse_url

    group = tmp_path / "r.zarr"
    spec = _prepare(group, image="", attributes={"plan": {"tiles": 1}})
    assert spec == OutputSpec(str(group), "", "0")
    data = RNG.standard_normal((3, 10, 12, 14)).astype(np.float32)
    write_block(spec, Box((0, 0, 0), (10, 12, 14)), data)
    labels = _labels(group, image="")
    assert labels == OutputSpec(str(group), "labels/instances", "labels/instances/0")
    image = models.Image.from_zarr(zarr.open_group(str(group), mode="r"))
    assert image.attributes.ome.multiscales[0].datasets[0].path == "0"
    nodes = list(reader.Reader(parse_url(str(group)))())
    assert [str(n.zarr.path).rstrip("/") for n in nodes] == [
        str(group),
        str(group / "labels"),
        str(group / "labels/instances"),
    ]
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), data)
    with pytest.raises(StitchsafeError, match="already holds.*--overwrite"):
        _prepare(group, image="")
    _prepare(group, image="", overwrite=True)
    assert sorted(os.listdir(group)) == ["0", "zarr.json"]  # the labels went with it
    assert zarr.open_array(str(group / "0"), mode="r")[...].max() == 0
    theirs = tmp_path / "theirs.zarr"
    zarr.open_group(str(theirs), mode="w", attributes={"ome": {"version": "0.5"}})
    with pytest.raises(StitchsafeError, match="not written by stitchsafe"):
        _prepare(theirs, image="", overwrite=True)
    assert (theirs / "zarr.json").exists()
