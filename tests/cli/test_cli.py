"""The command line, through click's CliRunner and as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner
from cli_helpers import assert_bad_input, run_cli
from nets import make_net

from stitchsafe.cli import cli
from stitchsafe.models import save_checkpoint, save_torchscript, unet_metadata


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Path]:
    net, cfg = make_net("2d-d2-f3")
    model = tmp_path / "model.pt"
    save_checkpoint(net, model, metadata=unet_metadata(cfg))
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    inp = tmp_path / "vol.zarr"
    arr = zarr.create_array(inp, shape=data.shape, chunks=(16, 16), dtype=data.dtype)
    arr[...] = data
    return {"model": model, "input": inp, "tmp": tmp_path}


def test_help_is_light() -> None:
    # --help must not import torch, dask or zarr (start-up stays well under a second).
    code = (
        "import sys; from click.testing import CliRunner; import stitchsafe.cli as c; "
        "r = CliRunner().invoke(c.cli, ['--help']); assert r.exit_code == 0, r.output; "
        "heavy = [m for m in ('torch', 'dask', 'zarr', 'tifffile') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    proc = run_cli("--help")
    assert proc.returncode == 0 and "predict" in proc.stdout and "plan" in proc.stdout
    assert "segment" in proc.stdout


def test_plan_json_subprocess(setup: dict[str, Path]) -> None:
    proc = run_cli(
        "plan",
        "--model",
        str(setup["model"]),
        "--input",
        str(setup["input"]),
        "--tile-shape",
        "9",
        "--json",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["plan"]["period"] == [9, 9]
    assert d["plan"]["tile_shape"] == [9, 9]
    assert d["tiles"] == 5 * 6 == d["plan"]["tiles"]
    assert d["plan"]["geometry_source"] == "metadata"


def test_plan_human_readable(setup: dict[str, Path]) -> None:
    r = CliRunner().invoke(
        cli,
        ["plan", "--model", str(setup["model"]), "--input", str(setup["input"]), "--device", "cpu"],
    )
    assert r.exit_code == 0, r.output
    for word in (
        "period",
        "halo",
        "remainder r",
        "valid input sizes",
        "tiles",
        "halo overhead",
        "same-looking objects",
        "training rule",
    ):
        assert word in r.output


def test_predict_json_subprocess(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "out.zarr"
    proc = run_cli(
        "predict",
        "--model",
        str(setup["model"]),
        "--input",
        str(setup["input"]),
        "--output",
        str(out),
        "--tile-shape",
        "18,9",
        "--json",
        "--device",
        "cpu",
        "--batch-size",
        "3",
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    # The container predict makes is the embeddings image; its labels under it.
    assert d["output"] == str(out) and d["embeddings"] == "0"
    assert d["tiles"] == 3 * 6 and d["seconds"] > 0
    assert d["labels"] == "labels/instances/0" and d["objects"] >= 1
    labels = zarr.open_array(out / "labels" / "instances" / "0", mode="r")
    assert labels.shape == (40, 50) and labels.chunks == (18, 9) and labels.dtype == np.uint32
    assert int(np.asarray(labels).max()) == d["objects"]
    arr = zarr.open_array(out / "0", mode="r")
    assert arr.shape == (1, 40, 50) and arr.chunks == (1, 18, 9)
    attrs = zarr.open_group(out, mode="r").attrs.asdict()
    assert attrs["ome"]["version"] == "0.5"
    assert attrs["stitchsafe"]["complete"] is True


def test_existing_output_is_refused_and_kept(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "out.zarr"
    args = [
        "predict",
        "--model",
        str(setup["model"]),
        "--input",
        str(setup["input"]),
        "--output",
        str(out),
        "--tile-shape",
        "9",
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = np.asarray(zarr.open_array(out / "0", mode="r"))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "--overwrite" in r.output and "Traceback" not in r.output
    after = np.asarray(zarr.open_array(out / "0", mode="r"))
    np.testing.assert_array_equal(before, after)
    assert CliRunner().invoke(cli, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize(
    "arch, words",
    [
        ("2d-same", ("same",)),
        ("2d-instancenorm", ("normalisation",)),
    ],
)
def test_unstitchable_models_refused(
    setup: dict[str, Path], arch: str, words: tuple[str, ...]
) -> None:
    net, cfg = make_net(arch)
    model = setup["tmp"] / f"{arch}.pt"
    save_torchscript(net, model)
    proc = run_cli(
        "predict", "--model", str(model), "--input", str(setup["input"]), "--device", "cpu"
    )
    assert_bad_input(proc, *words)
    assert not (setup["input"] / "embeddings").exists()


def test_bad_inputs_exit_2(setup: dict[str, Path]) -> None:
    tmp, model, inp = setup["tmp"], str(setup["model"]), str(setup["input"])
    assert_bad_input(run_cli("plan", "--model", str(tmp / "nope.pt"), "--input", inp), "nope.pt")
    corrupt = tmp / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a model")
    assert_bad_input(run_cli("plan", "--model", str(corrupt), "--input", inp), "corrupt.pt")
    assert_bad_input(
        run_cli("plan", "--model", model, "--input", inp, "--tile-shape", "10"),
        "nearest valid values are 9 and 18",
    )
    assert_bad_input(
        run_cli("plan", "--model", model, "--input", str(tmp / "missing.zarr")), "missing.zarr"
    )
    assert_bad_input(
        run_cli("predict", "--model", model, "--input", inp, "--device", "cuda:7"), "cuda"
    )
    # channel-count mismatch: a 2-channel model on a 1-channel input
    net, cfg = make_net("2d-d2-f3", in_channels=2)
    two = tmp / "two.pt"
    save_checkpoint(net, two, metadata=unet_metadata(cfg))
    assert_bad_input(run_cli("plan", "--model", str(two), "--input", inp), "channel")


def test_python_api_matches_cli(setup: dict[str, Path]) -> None:
    import stitchsafe

    p = stitchsafe.plan(setup["model"], setup["input"], tile_shape=(18, 9), device="cpu")
    r = CliRunner().invoke(
        cli,
        [
            "plan",
            "--model",
            str(setup["model"]),
            "--input",
            str(setup["input"]),
            "--tile-shape",
            "18,9",
            "--json",
            "--device",
            "cpu",
        ],
    )
    d = json.loads(r.stdout)
    assert d["plan"] == p.to_dict()


@pytest.mark.skipif(os.environ.get("STITCHSAFE_SKIP_DEMO") == "1", reason="demo skipped")
def test_demo_runs_and_is_exact(tmp_path: Path) -> None:
    proc = run_cli("demo", "--output", str(tmp_path / "demo"), "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["exact"] is True and d["relative_deviation"] <= 1e-4
    assert d["naive_relative_deviation"] > 1e-2
    assert (tmp_path / "demo" / "sample.zarr" / "embeddings" / "0").exists()
    # The labels belong to the sample's raw image: opening it shows raw + labels.
    assert d["model"].endswith("cells3d.pt") and d["labels"] == "raw/labels/instances/0"
    # The bundled model really segments the held-out sample (measured 0.9 at release).
    assert d["objects"] > 0.5 * d["true_objects"] and d["ap50"] >= 0.5
    assert len(d["pictures"]) == 2
    assert d["warnings"] == []  # the result warnings fire on degenerate results only
    for picture in d["pictures"]:
        assert Path(picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--pooling-factor", "two"], "--pooling-factor 'two'"),
        (["--tile-shape", "0,4"], "--tile-shape '0,4'"),
        (["--depth", "3"], "--depth needs --pooling-factor"),
        (["--pooling-factor", "2,2", "--depth", "5"], "period"),
    ],
    ids=["pooling-not-int", "tile-zero", "depth-alone", "flags-disagree"],
)
def test_bad_flags_exit_2(setup: dict[str, Path], extra: list[str], words: str) -> None:
    r = CliRunner().invoke(
        cli, ["plan", "--model", str(setup["model"]), "--input", str(setup["input"]), *extra]
    )
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output


def _predict_args(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "predict",
        "--model",
        str(setup["model"]),
        "--input",
        str(setup["input"]),
        "--output",
        str(out),
        "--tile-shape",
        "18",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def test_segment_json_subprocess(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "out.zarr"
    r = CliRunner().invoke(cli, _predict_args(setup, out, "--threshold", "0.05", "--json"))
    assert r.exit_code == 0, r.output
    predicted = json.loads(r.stdout)
    first = np.asarray(zarr.open_array(out / predicted["labels"], mode="r"))
    args = ["segment", "--input", str(out), "--threshold", "0.05", "--json", "--no-progress"]
    proc = run_cli(*args)
    assert_bad_input(proc, "already holds", "--overwrite")
    proc = run_cli(*args, "--overwrite", "--label-dtype", "uint64")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["labels"] == predicted["labels"] == "labels/instances/0"
    assert d["objects"] == predicted["objects"] > 1 and d["params"]["threshold"] == 0.05
    again = np.asarray(zarr.open_array(out / d["labels"], mode="r"))
    assert again.dtype == np.uint64
    np.testing.assert_array_equal(again, first)
    seeded = ["--seed-threshold", "0.05", "--grow", "2", "--overwrite"]
    proc = run_cli(*args, *seeded)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["params"]["seed_threshold"] == 0.05 and d["params"]["grow"] == 2


def test_predict_no_labels_and_human_readable_segment(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "out.zarr"
    r = CliRunner().invoke(cli, _predict_args(setup, out, "--no-labels", "--json"))
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["labels"] is None and d["objects"] is None
    assert not (out / "labels").exists()
    r = CliRunner().invoke(cli, ["segment", "--input", str(out), "--min-size", "3"])
    assert r.exit_code == 0, r.output
    assert f"{out}/labels/instances/0" in r.output and "objects" in r.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["--threshold", "0"], "--threshold must be a positive"),
        (["--threshold", "-2"], "--threshold must be a positive"),
        (["--min-size", "-1"], "--min-size must be a non-negative"),
        (["--foreground-threshold", "1.5"], "--foreground-threshold"),
        (["--image", "nothing"], "embeddings array is missing"),
        (["--grow", "3"], "--grow needs --seed-threshold"),
        (["--seed-threshold", "0"], "--seed-threshold must be a positive"),
        (["--seed-threshold", "1", "--seed-foreground-threshold", "0"], "strictly between"),
    ],
    ids=[
        "threshold-zero",
        "threshold-negative",
        "min-size",
        "probability",
        "no-image",
        "grow-without-seeds",
        "seed-threshold",
        "seed-probability",
    ],
)
def test_segment_bad_input_exit_2(setup: dict[str, Path], args: list[str], words: str) -> None:
    out = setup["tmp"] / "out.zarr"
    assert CliRunner().invoke(cli, _predict_args(setup, out, "--no-labels")).exit_code == 0
    r = CliRunner().invoke(cli, ["segment", "--input", str(out), *args])
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output
    assert not (out / "labels" / "instances").exists()


def test_segment_bad_input_subprocess(setup: dict[str, Path]) -> None:
    tmp = setup["tmp"]
    assert_bad_input(run_cli("segment", "--input", str(tmp / "none.zarr")), "does not exist")
    flat = tmp / "flat.zarr"
    g = zarr.open_group(str(flat), mode="w")
    g.create_group("embeddings").create_array("0", shape=(3, 4, 5, 6, 7), dtype="float32")
    assert_bad_input(run_cli("segment", "--input", str(flat)), "2 or 3 spatial axes")


def test_predict_bad_label_flags_fail_before_running(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "out.zarr"
    r = CliRunner().invoke(cli, _predict_args(setup, out, "--threshold", "0"))
    assert r.exit_code == 2 and "--threshold must be a positive" in r.output
    assert not out.exists()


@pytest.fixture()
def training_data(tmp_path: Path) -> tuple[Path, Path]:
    from stitchsafe.training import synthetic_cells

    image, labels = synthetic_cells((80, 80), seed=3)
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lbl.tif", labels)
    return tmp_path / "img.tif", tmp_path / "lbl.tif"


def test_train_refuses_window_not_larger_than_period(
    tmp_path: Path, training_data: tuple[Path, Path]
) -> None:
    image, labels = training_data
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--image",
            str(image),
            "--labels",
            str(labels),
            "--output",
            str(tmp_path / "m.pt"),
            "--pooling-factor",
            "2,2",
            "--pooling-factor",
            "2,2",
            "--window",
            "4,8",
            "--iterations",
            "2",
            "--no-progress",
        ],
    )
    assert r.exit_code == 2, r.output
    assert "period" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "m.pt").exists()


def test_train_then_predict_without_flags(tmp_path: Path, training_data: tuple[Path, Path]) -> None:
    image, labels = training_data
    model = tmp_path / "m.pt"
    proc = run_cli(
        "train",
        "--image",
        str(image),
        "--labels",
        str(labels),
        "--output",
        str(model),
        "--iterations",
        "3",
        "--features",
        "4",
        "--device",
        "cpu",
        "--json",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["output"] == str(model) and d["iterations"] == 3
    proc = run_cli(
        "predict",
        "--model",
        str(model),
        "--input",
        str(image),
        "--json",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["plan"]["geometry_source"] == "metadata" and "labels" in out


def test_predict_without_model_uses_the_bundled_one(tmp_path: Path) -> None:
    from stitchsafe.training import synthetic_cells

    image, _ = synthetic_cells((40, 44), seed=3)
    tifffile.imwrite(tmp_path / "two.tif", image)
    proc = run_cli("predict", "--input", str(tmp_path / "two.tif"), "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "bundled cells2d model" in proc.stderr
    assert json.loads(proc.stdout)["plan"]["model"]["path"].endswith("cells2d.pt")
    tifffile.imwrite(
        tmp_path / "four.tif", np.zeros((2, 3, 20, 20), np.uint16), photometric="minisblack"
    )
    proc = run_cli("predict", "--input", str(tmp_path / "four.tif"), "--no-progress")
    assert_bad_input(proc, "no bundled model fits", "--model")
