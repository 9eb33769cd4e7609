"""Where predict puts its results, as OME-Zarr readers open them.

An OME-Zarr input in a writable zarr v3 container (written by ome-zarr-py) gets its labels
under its own ``labels/`` group beside the user's other labels, so that opening the input
image shows raw + labels; the embeddings are their own image in the container. A
container that predict makes is the image itself (see ``test_layout.py``); a group of the
user's given as ``--output`` keeps its root and gets an ``embeddings`` image.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
import zarr
from cli_helpers import assert_bad_input, run_cli
from nets import make_net
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from ome_zarr.writer import write_image, write_labels
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel
from ome_zarr_models.v05.labels import Labels

from stitchsafe.io import LABELS_OF, done_mask_path
from stitchsafe.models import save_checkpoint, unet_metadata

SHAPE = (40, 50)


def _nodes(path: Path) -> list[Any]:
    location = parse_url(str(path))
    assert location is not None
    return list(Reader(location)())


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``vol.zarr/raw`` (ome-zarr-py) with the user's labels ``cells``, and predict's run
    into the container (the default output)."""
    tmp = tmp_path_factory.mktemp("ome-input")
    net, cfg = make_net("2d-d2-f3")
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    data = (np.random.default_rng(1).random(SHAPE) * 1000).astype(np.uint16)
    root = zarr.open_group(tmp / "vol.zarr", mode="w")
    raw = root.create_group("raw")
    write_image(data, raw, axes="yx", scale_factors=[2, 4])  # levels of 40x50, 20x25, 10x12
    cells = np.zeros(SHAPE, np.uint8)
    cells[5:15, 5:15] = 1
    write_labels(cells, raw, name="cells", axes="yx", scaler=None, scale_factors=[2, 4])
    args = ["predict", "--model", str(tmp / "model.pt"), "--input", str(tmp / "vol.zarr"),
            "--input-key", "raw", "--tile-shape", "18,9", "--device", "cpu", "--no-progress",
            "--threshold", "0.05", "--json"]  # fmt: skip
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    return {"tmp": tmp, "out": tmp / "vol.zarr", "args": args, "result": json.loads(proc.stdout)}


def test_labels_go_under_the_raw_image(container: dict[str, Any]) -> None:
    out, result = container["out"], container["result"]
    assert result["output"] == str(out) and result["embeddings"] == "embeddings/0"
    assert result["labels"] == "raw/labels/instances/0"
    # ome-zarr-py opened on the input image finds raw + the user's labels + stitchsafe's.
    nodes = _nodes(out / "raw")
    assert nodes[0].load(Multiscales) is not None and nodes[0].data[0].shape == SHAPE
    found = {str(n.zarr.path).rstrip("/").rsplit("/", 1)[-1]: n for n in nodes if n.load(Label)}
    assert sorted(found) == ["cells", "instances"]
    np.testing.assert_array_equal(
        found["instances"].data[0], zarr.open_array(out / result["labels"], mode="r")[...]
    )
    # Valid OME-Zarr 0.5: the user's labels are still listed, the image-label points at raw.
    listed = Labels.from_zarr(zarr.open_group(out / "raw/labels", mode="r"))
    assert listed.attributes.ome.labels == ["cells", "instances"]
    label = ImageLabel.from_zarr(zarr.open_group(out / "raw/labels/instances", mode="r"))
    assert label.attributes.ome.image_label.source.image == "../../"
    # ... and has as many levels as the raw image (which ome-zarr-models checks).
    Image.from_zarr(zarr.open_group(out / "raw", mode="r"))
    ours, theirs = [a.shape for a in found["instances"].data], [a.shape for a in nodes[0].data]
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):  # halved alike (a stride keeps the odd voxel: 13, not 12)
        assert all(abs(x - y) <= 1 for x, y in zip(a, b)), (ours, theirs)
    # The embeddings: their own image, no labels under them; where the labels went is
    # recorded with them.
    Image.from_zarr(zarr.open_group(out / "embeddings", mode="r"))
    assert not (out / "embeddings" / "labels").exists()
    attrs = zarr.open_group(out / "embeddings", mode="r").attrs["stitchsafe"]
    assert attrs[LABELS_OF] == "raw"
    assert [str(n.zarr.path).rstrip("/") for n in _nodes(out / "embeddings")] == [
        str(out / "embeddings")
    ]


def test_the_container_root_lists_its_images(container: dict[str, Any]) -> None:
    """The container's root had no metadata: it now lists raw + embeddings the way
    bioformats2raw does (which napari-ome-zarr follows; see tests/viewer)."""
    out = container["out"]
    root = BioFormats2Raw.from_zarr(zarr.open_group(out, mode="r"))
    assert root.attributes.ome.bioformats2raw_layout == 3
    assert zarr.open_group(out / "OME", mode="r").attrs["ome"]["series"] == ["raw", "embeddings"]
    xml = ElementTree.parse(out / "OME" / "METADATA.ome.xml").getroot()
    assert [e.attrib["ID"] for e in xml] == ["Image:raw", "Image:embeddings"]
    assert all(e.tag.endswith("Image") for e in xml)


def test_info_segment_and_resume_find_the_labels(container: dict[str, Any]) -> None:
    out, result = container["out"], container["result"]
    first = zarr.open_array(out / result["labels"], mode="r")[...]
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert info["image"] == "embeddings"
    assert [lab["array"] for lab in info["labels"]] == ["raw/labels/instances/0"]
    assert "raw/labels/instances/0" in [a["path"] for a in info["arrays"]]
    args = ["segment", "--input", str(out), "--threshold", "0.05", "--no-progress", "--json"]
    assert_bad_input(run_cli(*args), "already holds", "--overwrite")
    proc = run_cli(*args, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["labels"] == "raw/labels/instances/0"
    np.testing.assert_array_equal(zarr.open_array(out / result["labels"], mode="r")[...], first)
    # A resume (one tile left) derives the labels again, in the same place.
    zarr.open_array(done_mask_path(out, "embeddings"), mode="r+")[0, 0] = 0
    proc = run_cli(*container["args"], "--resume")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["labels"] == "raw/labels/instances/0"
    np.testing.assert_array_equal(zarr.open_array(out / result["labels"], mode="r")[...], first)
    listed = zarr.open_group(out / "raw/labels", mode="r").attrs["ome"]["labels"]
    assert listed == ["cells", "instances"]
    assert zarr.open_array(out / "raw/labels/cells/s0", mode="r")[10, 10] == 1


def test_a_group_of_the_users_keeps_its_root(container: dict[str, Any], tmp_path: Path) -> None:
    """``--output`` naming an existing group that stitchsafe did not make: the results go
    into it as the image ``embeddings``, with their labels, and its root is left alone."""
    out = tmp_path / "mine.zarr"
    zarr.open_group(out, mode="w", attributes={"owner": "me"}).create_array(
        "notes", shape=(3,), dtype="uint8"
    )
    args = [*container["args"][:-1], "--output", str(out), "--json"]
    args = [a for a in args if a not in ("--input-key", "raw")]
    args[args.index(str(container["out"]))] = str(container["out"] / "raw")
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["embeddings"] == "embeddings/0" and d["labels"] == "embeddings/labels/instances/0"
    assert zarr.open_group(out, mode="r").attrs.asdict() == {"owner": "me"}


def test_a_container_predict_made_is_replaced_whole(
    container: dict[str, Any], tmp_path: Path
) -> None:
    """The root image of a container predict made: refused without --overwrite, replaced
    with it (labels and bookkeeping too); the input stays untouched."""
    out = tmp_path / "made.zarr"
    args = [a for a in container["args"] if a not in ("--input-key", "raw")]
    args[args.index(str(container["out"]))] = str(container["out"] / "raw")
    proc = run_cli(*args, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert (d["embeddings"], d["labels"]) == ("0", "labels/instances/0")
    before = zarr.open_array(out / "labels/instances/0", mode="r")[...]
    assert_bad_input(run_cli(*args, "--output", str(out)), "already holds", "--overwrite")
    (out / "labels" / "instances" / "stale.txt").write_text("old")
    proc = run_cli(*args, "--output", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "labels" / "instances" / "stale.txt").exists()
    np.testing.assert_array_equal(
        zarr.open_array(out / "labels/instances/0", mode="r")[...], before
    )
    # Labels-only into a container predict made with embeddings: the root is replaced.
    proc = run_cli(*args, "--output", str(out), "--overwrite", "--no-embeddings")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["labels"] == "0"
    assert not (out / "labels").exists()
    np.testing.assert_array_equal(zarr.open_array(out / "0", mode="r")[...], before)
    shutil.rmtree(out)


def test_labels_of_the_users_named_instances_are_refused_before_running(
    container: dict[str, Any], tmp_path: Path
) -> None:
    """The raw image already has labels ``instances`` that stitchsafe did not write: the
    run's labels would go there, so it stops before computing anything."""
    out = tmp_path / "theirs.zarr"
    raw = zarr.open_group(out, mode="w").create_group("raw")
    write_image(np.ones(SHAPE, np.uint16), raw, axes="yx", scale_factors=[])
    write_labels(np.ones(SHAPE, np.uint8), raw, name="instances", axes="yx", scaler=None,
                 scale_factors=[])  # fmt: skip
    args = list(container["args"])
    args[args.index(str(container["out"]))] = str(out)
    assert_bad_input(
        run_cli(*args), "raw/labels/instances", "not written by stitchsafe", "--output"
    )
    assert not (out / "embeddings").exists()
    assert zarr.open_group(out / "raw/labels", mode="r").attrs["ome"]["labels"] == ["instances"]
    # A labels-only run is refused alike, before anything is written.
    assert_bad_input(run_cli(*args, "--no-embeddings"), "raw/labels/instances", "--output")
    assert not (out / ".stitchsafe").exists() and not (out / "instances").exists()


def _ome_input(path: Path) -> None:
    """An ome-zarr-py image ``raw`` with three levels and the user's labels ``cells``."""
    data = (np.random.default_rng(1).random(SHAPE) * 1000).astype(np.uint16)
    raw = zarr.open_group(path, mode="w").create_group("raw")
    write_image(data, raw, axes="yx", scale_factors=[2, 4])
    cells = np.zeros(SHAPE, np.uint8)
    cells[5:15, 5:15] = 1
    write_labels(cells, raw, name="cells", axes="yx", scaler=None, scale_factors=[2, 4])


def test_labels_only_go_under_the_raw_image(container: dict[str, Any], tmp_path: Path) -> None:
    """``--no-embeddings`` into the input's container: the labels are the raw image's,
    beside the user's, built in the bookkeeping folder and moved there whole."""
    out = tmp_path / "vol.zarr"
    _ome_input(out)
    args = list(container["args"])
    args[args.index(str(container["out"]))] = str(out)
    proc = run_cli(*args, "--no-embeddings")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["output"] == str(out) and result["embeddings"] is None
    assert result["labels"] == "raw/labels/instances/0"
    first = zarr.open_array(out / result["labels"], mode="r")[...]
    assert first.max() > 0
    # ome-zarr-py on the raw image finds raw + the user's labels + stitchsafe's.
    nodes = _nodes(out / "raw")
    assert nodes[0].load(Multiscales) is not None and nodes[0].data[0].shape == SHAPE
    found = {str(n.zarr.path).rstrip("/").rsplit("/", 1)[-1]: n for n in nodes if n.load(Label)}
    assert sorted(found) == ["cells", "instances"]
    np.testing.assert_array_equal(found["instances"].data[0], first)
    assert len(found["instances"].data) == len(nodes[0].data) == 3
    listed = Labels.from_zarr(zarr.open_group(out / "raw/labels", mode="r"))
    assert listed.attributes.ome.labels == ["cells", "instances"]
    label = ImageLabel.from_zarr(zarr.open_group(out / "raw/labels/instances", mode="r"))
    assert label.attributes.ome.image_label.source.image == "../../"
    Image.from_zarr(zarr.open_group(out / "raw", mode="r"))
    # Nothing beside the raw image; only the done mask is left in the bookkeeping.
    assert sorted(p.name for p in out.iterdir()) == [".stitchsafe", "raw", "zarr.json"]
    book = out / ".stitchsafe"
    assert [str(p.relative_to(book)) for p in book.rglob("*") if p.name == "zarr.json"] == [
        "raw/labels/instances/done/zarr.json"
    ]
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert info["image"] == "raw/labels/instances" and info["complete"] is True
    assert info["labels"][0]["array"] == result["labels"]
    assert info["labels"][0]["objects"] == result["objects"]
    _resume_and_overwrite(out, args, result["labels"], first)


def _resume_and_overwrite(out: Path, args: list[str], labels: str, first: np.ndarray) -> None:
    """A labels-only run's complete labels under the raw image: kept by a resume (half
    its done marks gone), refused without --overwrite, made again alike with it."""
    book = out / ".stitchsafe"
    done = zarr.open_array(done_mask_path(out, "raw/labels/instances"), mode="r+")
    mask = done[...]
    mask.ravel()[::2] = 0
    done[...] = mask
    proc = run_cli(*args, "--no-embeddings", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["labels"] == labels
    np.testing.assert_array_equal(zarr.open_array(out / labels, mode="r")[...], first)
    # Again without --resume: refused (the labels exist); with --overwrite: the same labels.
    assert_bad_input(run_cli(*args, "--no-embeddings"), "already holds", "--overwrite")
    proc = run_cli(*args, "--no-embeddings", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(zarr.open_array(out / labels, mode="r")[...], first)
    assert zarr.open_group(out / "raw/labels", mode="r").attrs["ome"]["labels"] == [
        "cells",
        "instances",
    ]
    assert not (book / "raw" / "new-labels").exists()
