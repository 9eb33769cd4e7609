"""The output layout as OME-Zarr readers see it: images and labels only, no bookkeeping.

The done mask and the scratch arrays live in ``<container>/.stitchsafe/`` (no zarr node,
no OME-Zarr metadata); ome-zarr-py's reader, napari's builtin zarr reader and zarr's own
listing find only the images, and ome-zarr-models accepts them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from cli_helpers import run_cli
from nets import make_net
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Reader
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel
from ome_zarr_models.v05.labels import Labels

from stitchsafe.io import BOOKKEEPING, done_mask_path
from stitchsafe.models import save_checkpoint, unet_metadata


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("layout")
    net, cfg = make_net("2d-d2-f3")
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 16))
    common = ["--model", str(tmp / "model.pt"), "--input", str(tmp / "vol.zarr"),
              "--tile-shape", "18,9", "--device", "cpu", "--no-progress", "--json"]  # fmt: skip
    runs = {}
    for name, extra in (("full", []), ("labels-only", ["--no-embeddings"])):
        out = tmp / f"{name}.zarr"
        proc = run_cli("predict", *common, "--output", str(out), *extra)
        assert proc.returncode == 0, proc.stderr
        runs[name] = (out, json.loads(proc.stdout))
    runs["args"] = ["predict", *common]
    return runs


def _read_nodes(path: Path) -> list[Any]:
    """What ome-zarr-py's reader finds at ``path``: its nodes, in order."""
    location = parse_url(str(path))
    assert location is not None
    return list(Reader(location)())


def _paths(nodes: list[Any]) -> list[str]:
    return [str(node.zarr.path).rstrip("/") for node in nodes]


def _as_earlier_version(out: Path, dest: Path) -> Path:
    """The output ``out`` (its root the image) laid out as earlier versions wrote it: the
    image at ``embeddings`` (its labels under it), the done mask inside the image
    (``embeddings/stitchsafe-done``), a root group without metadata."""
    root = json.loads((out / "zarr.json").read_text())
    zarr.open_group(dest, mode="w")
    image = dest / "embeddings"
    image.mkdir()
    for name in os.listdir(out):
        if name not in ("zarr.json", BOOKKEEPING):
            shutil.copytree(out / name, image / name)
    (image / "zarr.json").write_text(json.dumps(root))
    shutil.copytree(done_mask_path(out, ""), image / "stitchsafe-done")
    return dest


def test_the_done_mask_is_in_the_bookkeeping_folder(outputs: dict[str, Any]) -> None:
    for out, image in ((outputs["full"][0], ""), (outputs["labels-only"][0], "")):
        mask = zarr.open_array(done_mask_path(out, image), mode="r")
        assert np.all(mask[...] == 1)
        assert Path(done_mask_path(out, image)).is_relative_to(out / BOOKKEEPING)
        # The folder is no zarr node: zarr's listing of the container does not show it.
        assert not (out / BOOKKEEPING / "zarr.json").exists()
        assert BOOKKEEPING not in dict(zarr.open_group(out, mode="r").members())
        assert not any(
            name.startswith("stitchsafe-")
            for _, dirs, files in os.walk(out)
            for name in [*dirs, *files]
        )


def test_ome_zarr_readers_find_only_images_and_labels(outputs: dict[str, Any]) -> None:
    """The output path that --json prints is the image: ome-zarr-py's reader opened on it
    finds the embeddings and their labels, and nothing of the bookkeeping."""
    out, printed = outputs["full"]
    assert printed["output"] == str(out) and printed["embeddings"] == "0"
    assert printed["labels"] == "labels/instances/0"
    nodes = _read_nodes(Path(printed["output"]))
    paths = _paths(nodes)
    assert paths[0] == str(out) and paths[-1] == str(out / "labels/instances")
    assert not any(BOOKKEEPING in p or "done" in p for p in paths)
    image = nodes[0]
    levels = zarr.open_group(out, mode="r").attrs["ome"]["multiscales"][0]
    assert len(image.data) == len(levels["datasets"])
    assert image.data[0].shape == (1, 40, 50)  # the embeddings, level 0
    labels = [n for n in nodes if str(n.zarr.path).rstrip("/").endswith("labels/instances")]
    assert len(labels) == 1 and labels[0].data[0].shape == (40, 50)
    np.testing.assert_array_equal(
        labels[0].data[0], zarr.open_array(out / printed["labels"], mode="r")[...]
    )
    # Labels-only: the container is the label image, and nothing else.
    only, printed = outputs["labels-only"]
    assert printed["labels"] == "0"
    nodes = _read_nodes(Path(printed["output"]))
    assert len(nodes) == 1 and nodes[0].data[0].shape == (40, 50)
    assert nodes[0].load(Label) is not None  # read as labels, not as an image


def test_ome_zarr_models_accepts_the_image_groups(outputs: dict[str, Any]) -> None:
    out = outputs["full"][0]
    image = Image.from_zarr(zarr.open_group(out, mode="r"))
    assert [d.path for d in image.attributes.ome.multiscales[0].datasets][0] == "0"
    labels = Labels.from_zarr(zarr.open_group(out / "labels", mode="r"))
    assert labels.attributes.ome.labels == ["instances"]
    ImageLabel.from_zarr(zarr.open_group(out / "labels/instances", mode="r"))
    ImageLabel.from_zarr(zarr.open_group(outputs["labels-only"][0], mode="r"))


def test_napari_builtin_zarr_reader_sees_only_resolution_levels(outputs: dict[str, Any]) -> None:
    """napari's builtin reader opens every array of a group as a resolution level: the
    done mask of a labels-only output used to be one of them."""
    read = pytest.importorskip("napari_builtins.io._read")
    for label_image in (
        outputs["labels-only"][0],
        outputs["full"][0] / "labels/instances",
    ):
        levels = zarr.open_group(label_image, mode="r").attrs["ome"]["multiscales"][0]
        arrays, shape = read.read_zarr_dataset(str(label_image))
        expected = [zarr.open_array(label_image / d["path"]).shape for d in levels["datasets"]]
        assert sorted(tuple(a.shape) for a in arrays) == sorted(expected)
        assert tuple(shape) == (40, 50)


def test_an_output_of_an_earlier_version_still_resumes(
    outputs: dict[str, Any], tmp_path: Path
) -> None:
    """Earlier versions kept the image at ``embeddings`` (labels under it) and the done
    mask inside it (``embeddings/stitchsafe-done``): ``info`` reads the progress there,
    ``--resume`` continues with it and keeps the labels where they were."""
    out = _as_earlier_version(outputs["full"][0], tmp_path / "old.zarr")
    legacy = out / "embeddings" / "stitchsafe-done"
    zarr.open_array(legacy, mode="r+")[0, 0] = 0
    image = zarr.open_group(out / "embeddings", mode="r+")
    image.attrs["stitchsafe"] = {**image.attrs["stitchsafe"], "complete": False}
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    total = int(np.prod(zarr.open_array(legacy, mode="r").shape))
    assert info["tiles"] == {"done": total - 1, "total": total}
    proc = run_cli(*outputs["args"], "--output", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tiles"] == 1
    assert np.all(zarr.open_array(legacy, mode="r")[...] == 1)
    before = zarr.open_array(outputs["full"][0] / "0", mode="r")[...]
    after = zarr.open_array(out / "embeddings/0", mode="r")[...]
    assert np.array_equal(after, before)
    assert json.loads(proc.stdout)["labels"] == "embeddings/labels/instances/0"
    assert not (out / "labels").exists() and not (out / "0").exists()
    labels = zarr.open_array(out / "embeddings/labels/instances/0", mode="r")[...]
    expected = zarr.open_array(outputs["full"][0] / "labels/instances/0", mode="r")[...]
    assert np.array_equal(labels, expected)
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert info["image"] == "embeddings" and info["tiles"] == {"done": total, "total": total}
    assert [lab["array"] for lab in info["labels"]] == ["embeddings/labels/instances/0"]
    proc = run_cli("segment", "--input", str(out), "--overwrite", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["labels"] == "embeddings/labels/instances/0"
