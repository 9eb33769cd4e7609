"""Pyramids through the installed console script: written by default after predict (also
labels-only) and segment, none with --no-pyramid, and a pass that failed is finished by
--resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import assert_bad_input, run_cli
from nets import make_net

from stitchsafe.models import save_checkpoint, unet_metadata

ROLES = ["embedding", "embedding", "foreground"]
LABELS = "labels/instances"  # the output container is the embeddings image


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pyramid")
    net, cfg = make_net("3d-d1-f2", out_channels=3)
    meta = unet_metadata(cfg, channel_roles=ROLES, labels={"threshold": 0.05, "min_size": 2})
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    zz, yy, xx = np.mgrid[:8, :40, :36]
    data = (1000 * (np.sin(zz / 2.0) * np.cos(yy / 3.0) * np.sin(xx / 4.0) > 0.1)).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(8, 16, 16))
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


def _predict(s: dict[str, Path], out: Path, *extra: str) -> dict:
    proc = run_cli(
        "predict", "--model", str(s["model"]), "--input", str(s["input"]), "--output", str(out),
        "--tile-shape", "4,8,8", "--device", "cpu", "--no-progress", "--json", *extra,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _listed(image_dir: Path) -> list[str]:
    """The levels the image's OME-Zarr metadata lists, read from its zarr.json."""
    attrs = json.loads((image_dir / "zarr.json").read_text())["attributes"]
    return [d["path"] for d in attrs["ome"]["multiscales"][0]["datasets"]]


def _levels(image_dir: Path) -> list[np.ndarray]:
    return [np.asarray(zarr.open_array(image_dir / p, mode="r")) for p in _listed(image_dir)]


@pytest.fixture(scope="module")
def reference(setup: dict[str, Path]) -> Path:
    out = setup["tmp"] / "ref.zarr"
    _predict(setup, out)
    return out


def test_predict_writes_levels_of_embeddings_and_labels(reference: Path) -> None:
    assert _listed(reference) == ["0", "1", "2", "3"]
    assert _listed(reference / LABELS) == ["0", "1", "2", "3"]
    emb, lab = _levels(reference), _levels(reference / LABELS)
    assert [e.shape for e in emb] == [(3, 8, 40, 36), (3, 4, 20, 18), (3, 2, 10, 9), (3, 1, 5, 5)]
    np.testing.assert_array_equal(lab[3], lab[0][::8, ::8, ::8])
    info = run_cli("info", str(reference), "--json")
    assert info.returncode == 0, info.stderr
    pyramids = {p["image"]: p for p in json.loads(info.stdout)["pyramids"]}
    assert pyramids[""]["complete"] and pyramids[""]["method"] == "mean"
    assert [lv["shape"] for lv in pyramids[LABELS]["levels"]][-1] == [1, 5, 5]
    emb_shapes = [lv["shape"] for lv in pyramids[""]["levels"]]
    assert emb_shapes == [[8, 40, 36], [4, 20, 18], [2, 10, 9], [1, 5, 5]]


def test_labels_only_levels_equal_the_full_runs(setup: dict[str, Path], reference: Path) -> None:
    out = setup["tmp"] / "labels-only.zarr"
    _predict(setup, out, "--no-embeddings")
    only, full = _levels(out), _levels(reference / LABELS)
    assert len(only) == len(full) == 4
    for a, b in zip(only, full):
        np.testing.assert_array_equal(a, b)


def test_no_pyramid_then_a_failed_pyramid_pass_is_finished_by_resume(
    setup: dict[str, Path], reference: Path
) -> None:
    out = setup["tmp"] / "levels.zarr"
    _predict(setup, out, "--no-pyramid")
    for image in ("", LABELS):
        assert _listed(out / image) == ["0"]
        assert not (out / image / "1").exists()
    # Something not written by stitchsafe where level 2 goes: the pass stops there.
    (out / "2").mkdir()
    (out / "2" / "keep.txt").write_text("mine")
    args = [
        "predict", "--model", str(setup["model"]), "--input", str(setup["input"]),
        "--output", str(out), "--tile-shape", "4,8,8", "--device", "cpu", "--no-progress",
        "--resume",
    ]  # fmt: skip
    assert_bad_input(run_cli(*args), "level 2", "move it away")
    assert _listed(out) == ["0", "1"]  # only whole levels are listed
    assert "INCOMPLETE (2 of 4 levels written)" in run_cli("info", str(out)).stdout
    shutil.rmtree(out / "2")
    # What a run killed while it created level 2 leaves: its folder, with at most zarr's
    # unfinished write of the level's zarr.json. The next run makes the level anew.
    (out / "2").mkdir()
    (out / "2" / f"zarr.{'0' * 32}.partial").write_bytes(b'{"zarr_for')
    assert _predict(setup, out, "--resume")["tiles"] == 0  # only what was left
    for image in ("", LABELS):
        done, clean = _levels(out / image), _levels(reference / image)
        assert len(done) == len(clean) == 4
        for a, b in zip(done, clean):
            np.testing.assert_array_equal(a, b)
    proc = run_cli("segment", "--input", str(out), "--overwrite", "--no-pyramid", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert _listed(out / LABELS) == ["0"] and not (out / LABELS / "1").exists()
