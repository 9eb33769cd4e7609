"""``stitchsafe info`` on real predict outputs: finished, interrupted, and not ours."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from nets import make_net
from cli_helpers import assert_bad_input, run_cli

from stitchsafe.cli import cli
from stitchsafe.models import save_checkpoint, unet_metadata
from stitchsafe.io import done_mask_path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("info")
    net, cfg = make_net("2d-d2-f3")
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 16))
    out = tmp / "out.zarr"
    proc = run_cli(
        "predict", "--model", str(tmp / "model.pt"), "--input", str(tmp / "vol.zarr"),
        "--output", str(out), "--tile-shape", "18,9", "--device", "cpu", "--no-progress",
        "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {"tmp": tmp, "model": tmp / "model.pt", "out": out, "predict": json.loads(proc.stdout)}


def _stored_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_info_json_on_a_finished_output(setup: dict[str, Any]) -> None:
    out, pred = setup["out"], setup["predict"]
    proc = run_cli("info", "--input", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    # The container predict made is the image: its path inside is "" (the root).
    assert d["path"] == str(out) and d["image"] == ""
    arrays = {a["path"]: a for a in d["arrays"]}
    done = ".stitchsafe/done"
    assert list(arrays) == ["0", done, "labels/instances/0"]
    for path, a in arrays.items():
        z = zarr.open_array(out / path, mode="r")
        assert a["shape"] == list(z.shape) and a["chunks"] == list(z.chunks)
        assert a["dtype"] == str(z.dtype) and a["shards"] is None
        assert a["stored_bytes"] == _stored_bytes(out / path) > 0
        assert a["bytes"] == z.nbytes
    assert arrays["0"]["shape"] == [1, 40, 50]
    assert arrays["0"]["chunks"] == [1, 18, 9]
    plan = d["plan"]
    assert plan["tile_shape"] == [18, 9] and plan["grid_shape"] == [3, 6] and plan["tiles"] == 18
    assert plan["period"] == [9, 9] and plan["halo"] == pred["plan"]["halo"]
    sha = hashlib.sha256(setup["model"].read_bytes()).hexdigest()
    assert d["model"] == {
        "path": str(setup["model"]),
        "format": "stitchsafe",
        "sha256": sha,
        "geometry_source": "metadata",
    }
    assert d["normalization"] == pred["normalization"]
    assert (d["pad_mode"], d["precision"], d["embeddings_dtype"]) == ("reflect", "fp32", "float32")
    assert d["complete"] is True and d["tiles"] == {"done": 18, "total": 18}
    [labels] = d["labels"]
    assert labels["name"] == "instances" and labels["complete"] is True
    assert labels["objects"] == pred["objects"] and labels["params"] == pred["label_params"]

    # The root named as the image gives the same output.
    again = CliRunner().invoke(cli, ["info", "--input", str(out), "--input-key", "", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["arrays"] == d["arrays"]
    # what predict warned of (an untrained net), said again, naming the label image
    assert pred["warnings"] and len(d["warnings"]) == len(pred["warnings"])
    for stored, said in zip(d["warnings"], pred["warnings"]):
        assert stored.startswith("labels instances: " + said.split(":")[0])


def test_info_text(setup: dict[str, Any]) -> None:
    out = str(setup["out"])
    proc = run_cli("info", "--input", str(out))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith(f"stitchsafe output {out}, image (the container's root): complete")
    for words in (
        "labels/instances/0",
        "float32",
        "chunks 1 x 18 x 9",
        "on disk",
        "18 tiles (3 x 6) of 18 x 9; period 9 x 9",
        "model sha256",
        "percentile (1.0, 99.8)",
        "pad mode reflect",
        "18 / 18 tiles done",
        f"instances: {setup['predict']['objects']} object"
        + ("" if setup["predict"]["objects"] == 1 else "s"),
        "exact: tiles on the period lattice",
    ):
        assert words in text, (words, text)


def test_info_on_an_interrupted_run(setup: dict[str, Any]) -> None:
    # What a run killed part-way leaves: complete false, some tiles not marked, no labels.
    out = setup["tmp"] / "interrupted.zarr"
    shutil.copytree(setup["out"], out)
    shutil.rmtree(out / "labels")
    mask = zarr.open_array(done_mask_path(out, ""), mode="r+")
    mask[1:, 2:] = 0
    image = zarr.open_group(out, mode="r+")
    stored: Any = image.attrs.asdict()["stitchsafe"]
    image.attrs["stitchsafe"] = {**stored, "complete": False}

    proc = run_cli("info", "--input", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["complete"] is False and d["tiles"] == {"done": 18 - 2 * 4, "total": 18}
    assert d["labels"] == [] and [a["path"] for a in d["arrays"]][-1] == ".stitchsafe/done"
    text = CliRunner().invoke(cli, ["info", "--input", str(out)]).output
    assert "INCOMPLETE" in text and "10 / 18 tiles done" in text and "--resume" in text
    assert "labels         none" in text


def test_info_picks_an_image_by_name(setup: dict[str, Any]) -> None:
    # Two images in a group (as an earlier version, or the user, put them).
    out = setup["tmp"] / "two.zarr"
    zarr.open_group(out, mode="w")
    keep = shutil.ignore_patterns(".stitchsafe")
    shutil.copytree(setup["out"], out / "embeddings", ignore=keep)
    shutil.copytree(out / "embeddings", out / "second")
    r = CliRunner().invoke(cli, ["info", "--input", str(out), "--input-key", "second", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["image"] == "second"
    r = CliRunner().invoke(cli, ["info", "--input", str(out), "--json"])
    assert json.loads(r.stdout)["image"] == "embeddings"  # predict's default name wins
    shutil.rmtree(out / "embeddings")
    os.rename(out / "second", out / "third")
    shutil.copytree(out / "third", out / "fourth")
    r = CliRunner().invoke(cli, ["info", "--input", str(out)])
    assert r.exit_code == 2 and "fourth, third" in r.output and "--input-key" in r.output


def test_info_bad_paths_exit_2(setup: dict[str, Any]) -> None:
    tmp = setup["tmp"]
    assert_bad_input(
        run_cli("info", "--input", str(tmp / "missing.zarr")), "missing.zarr", "does not exist"
    )
    assert_bad_input(
        run_cli("info", "--input", str(tmp / "vol.zarr")), "is a zarr array", "--output"
    )
    assert_bad_input(run_cli("info", "--input", str(tmp / "model.pt")), "not a zarr group")
    zarr.open_group(tmp / "plain.zarr", mode="w").create_group("raw")
    assert_bad_input(
        run_cli("info", "--input", str(tmp / "plain.zarr")), "holds no output written by stitchsafe"
    )
    assert_bad_input(
        run_cli("info", "--input", str(setup["out"]), "--input-key", "nope"),
        "no output image 'nope'",
    )
