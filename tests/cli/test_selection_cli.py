"""--channel, --timepoint and --level through the console script: the run equals a run on a
file holding only the selected data, the selection is in plan/info/--json and the
fingerprint, and bad selections exit 2 naming the input's real axes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from cli_helpers import assert_bad_input, run_cli
from click.testing import CliRunner
from nets import make_net
from ome_zarr.writer import write_image

from stitchsafe.cli import cli
from stitchsafe.models import save_checkpoint, unet_metadata

TCYX = np.random.default_rng(3).integers(0, 1000, size=(3, 2, 24, 20)).astype("uint16")
CPU = ("--device", "cpu", "--no-progress", "--no-labels")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("selection")
    net, cfg = make_net("2d-d1-f2")
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(
            TCYX,
            zarr.open_group(str(tmp / "series.zarr"), mode="w"),
            axes="tcyx",
            scale_factors=(2,),
            scale={"t": 1.0, "c": 1.0, "y": 0.5, "x": 0.5},
            axes_units={"y": "micrometer", "x": "micrometer"},
        )
    # The same data as it would be without the other channels and timepoints.
    zarr.create_array(str(tmp / "only.zarr"), data=TCYX[2, 1], chunks=(12, 10))
    with h5py.File(tmp / "a.h5", "w") as f:
        f.create_dataset("raw", data=TCYX[0, 0])
    return {"tmp": tmp, "model": tmp / "model.pt", "series": tmp / "series.zarr"}


def _embeddings(stdout: str) -> np.ndarray:
    """The embeddings array a ``predict --json`` run wrote (at its full resolution)."""
    d = json.loads(stdout)
    return zarr.open_array(str(Path(d["output"]) / d["embeddings"]), mode="r")[:]


def test_predict_selected_equals_the_data_alone(files: dict[str, Path]) -> None:
    tmp, model = files["tmp"], str(files["model"])
    chosen = ("--channel", "1", "--timepoint", "2")
    out = tmp / "chosen.zarr"
    args = ("predict", "--model", model, "--output", str(out), "--tile-shape", "8", *CPU)
    proc = run_cli(*args, "--input", str(files["series"]), *chosen, "--json")
    assert proc.returncode == 0, proc.stderr
    selected = _embeddings(proc.stdout)
    assert json.loads(proc.stdout)["plan"]["input"]["selection"] == {
        "channels": [1],
        "timepoint": 2,
        "level": None,
    }
    alone = tmp / "alone.zarr"
    args = ("predict", "--model", model, "--output", str(alone), "--tile-shape", "8", *CPU)
    r = CliRunner().invoke(cli, [*args, "--input", str(tmp / "only.zarr"), "--json"])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(selected, _embeddings(r.stdout))
    assert selected.shape[-2:] == (24, 20)
    # The selection is part of the run: another one is refused on resume, naming it.
    again = ("predict", "--model", model, "--output", str(out), "--tile-shape", "8", "--resume")
    proc = run_cli(
        *again, *CPU, "--input", str(files["series"]), "--channel", "1", "--timepoint", "1"
    )
    assert_bad_input(proc, "selection", "timepoint 2", "timepoint 1")
    info = CliRunner().invoke(cli, ["info", str(out)])
    assert info.exit_code == 0 and "channel 1; timepoint 2" in info.output, info.output
    info_json = json.loads(CliRunner().invoke(cli, ["info", str(out), "--json"]).stdout)
    assert info_json["input"]["selection"]["timepoint"] == 2


def test_plan_level_has_the_level_scale(files: dict[str, Path]) -> None:
    series = str(files["series"])
    chosen = ("--level", "1", "--timepoint", "0", "--channel", "0")
    proc = run_cli("plan", "--model", str(files["model"]), "--input", series, *chosen, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["plan"]["volume_shape"] == [12, 10]
    assert d["physical"]["scale"] == [1.0, 1.0]
    assert d["physical"]["translation"] == [0.25, 0.25]
    text = (
        CliRunner()
        .invoke(cli, ["plan", "--model", str(files["model"]), "--input", series, *chosen])
        .output
    )
    assert "channel 0; timepoint 0; level 1" in text, text


def test_bundled_model_takes_the_selection(files: dict[str, Path]) -> None:
    proc = run_cli("plan", "--input", str(files["series"]), "--timepoint", "1", "--channel", "0")
    assert proc.returncode == 0, proc.stderr


def test_time_series_without_timepoint_exits_2(files: dict[str, Path]) -> None:
    proc = run_cli("plan", "--model", str(files["model"]), "--input", str(files["series"]))
    assert_bad_input(proc, "t=3, c=2, y=24, x=20", "--timepoint (0 to 2)")


@pytest.mark.parametrize(
    ("command", "extra", "words"),
    [
        ("plan", ["--timepoint", "0"], ["2 channel(s)", "--channel 0"]),
        ("plan", ["--timepoint", "0", "--channel", "2"], ["has 2 channels", "c=2"]),
        ("plan", ["--timepoint", "0", "--channel", "0", "--level", "4"], ["level(s)", "'s1'"]),
        ("check", ["--timepoint", "-1"], ["--timepoint '-1' is not a timepoint"]),
        ("predict", ["--timepoint", "3", "--channel", "0"], ["3 timepoint(s)", "past them"]),
        ("plan-h5", ["--level", "1"], ["HDF5 dataset", "--level 1"]),
        ("check-h5", ["--timepoint", "0"], ["unnamed axes", "--timepoint"]),
    ],
)
def test_bad_selections_exit_2(
    files: dict[str, Path], command: str, extra: list[str], words: list[str]
) -> None:
    h5 = command.endswith("-h5")
    source = str(files["tmp"] / "a.h5") + "/raw" if h5 else str(files["series"])
    args = [command.removesuffix("-h5"), "--model", str(files["model"]), "--input", source]
    r = CliRunner().invoke(cli, [*args, *extra, "--device", "cpu"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "Error: " in r.output
    for w in words:
        assert w in r.output, r.output
