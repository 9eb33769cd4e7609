"""Every wait of more than a few seconds says so: probing a model, the halo search of
approximate mode, the calibration of training, the demo's steps.

In a batch log (stderr not a terminal) a stage writes a line once it has run a few
seconds, then every 30 s, and one when it ends; in library use the stages that take no
progress flag of their own stay silent unless ``showing_stages`` switches them on.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import zarr
from click.testing import CliRunner
from nets import loaded_model, make_net, saved_model

from stitchsafe.approximate import ProbeRun, choose_halo, structured_probe
from stitchsafe.cli import cli
from stitchsafe.geometry import ModelGeometry
from stitchsafe.models import LoadedModel, probe_geometry
from stitchsafe.progress import Steps, plural, showing_stages
from stitchsafe.training import CalibrationSettings, calibrate_labels


def test_probing_prints_progress_lines_in_a_batch_log(captured: list[str]) -> None:
    """Probing a model's geometry: a line once it has run ``after`` seconds (0 here, 3 in
    the command-line tool), one when it ends; nothing in library use."""
    model = loaded_model("2d-d1-f2", "torchscript", metadata=False)
    probe_geometry(model)
    assert captured == []
    with showing_stages(after=0.0):
        probe_geometry(model)
    assert captured[0].startswith("probing the model's geometry: 1 forward pass, ")
    assert re.fullmatch(
        r"probing the model's geometry: \d+ forward passes done in .*", captured[-1]
    )


def test_a_short_probe_keeps_the_command_line_quiet(tmp_path: Path) -> None:
    """A probe of a second logs nothing (click's runner: stderr is no terminal, as in a
    batch log), so that a bad input's ``Error:`` paragraph still comes first."""
    model = saved_model("2d-same", "torchscript", metadata=False)
    zarr.create_array(tmp_path / "vol.zarr", data=np.zeros((40, 40), np.float32))
    args = ["plan", "--model", str(model), "--input", str(tmp_path / "vol.zarr")]
    result = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert result.exit_code == 2 and result.stderr.startswith("Error: "), result.output
    assert "same-padded" in result.stderr and "probing" not in result.stderr


def test_the_halo_search_shows_progress_only_where_switched_on(captured: list[str]) -> None:
    same = torch.nn.Conv2d(1, 1, 3, padding=1).eval()
    model = LoadedModel("same", "stitchsafe", same, None, dims=2, channels_in=1)
    native = ModelGeometry(period=(1, 1), halo=((0, 0),) * 2, min_input=(1, 1), step=(1, 1))

    def search() -> None:
        choose_halo(
            model, native, tolerance=1e-3, probes=[structured_probe(1)], run=ProbeRun((8, 8))
        )

    search()  # library use: silent
    assert captured == []
    with showing_stages(after=0.0):
        search()
    assert captured[0].startswith("approximate: measuring the halo: ")
    assert captured[-1].startswith("approximate: measuring the halo: ")
    assert "forward passes done in" in captured[-1] and "halo=(1, 1)" in captured[-1]


def test_calibration_shows_its_progress(captured: list[str]) -> None:
    net, _ = make_net("2d-d1-f2", out_channels=3)
    labels = np.zeros((24, 24), np.int64)
    labels[4:10, 4:10], labels[12:20, 12:20] = 1, 2
    geometry = ModelGeometry(
        period=(2, 2), halo=((8, 8), (8, 8)), min_input=(20, 20), step=(2, 2), channels_in=1
    )
    padded = np.pad(labels.astype(np.float32)[None], ((0, 0), (8, 8), (8, 8)), mode="reflect")
    settings = CalibrationSettings(
        channel_roles=["embedding", "embedding", "foreground"],
        window=(8, 8),
        min_size=0,
        delta_d=1.5,
        progress=True,
    )
    result = calibrate_labels(net, padded, labels, geometry, settings)
    assert result["whole_image"] is True
    n = len(result["candidates"])
    assert captured == [captured[0]]  # one line: the end of a stage shorter than 30 s
    assert captured[0].startswith(f"calibrating the labelling: {n} of {n} labellings done in ")


def test_steps_say_each_step_as_it_starts(captured: list[str]) -> None:
    with Steps(["making the sample", "predicting"], desc="demo") as steps:
        steps.start(0)
        steps.start(1)
    assert captured[:2] == ["demo: step 1 of 2: making the sample", "demo: step 2 of 2: predicting"]
    assert captured[2].startswith("demo: 2 steps done in ")


def test_plural_forms() -> None:
    assert [plural(n, "tile") for n in (0, 1, 2)] == ["0 tiles", "1 tile", "2 tiles"]
    assert plural(1, "forward pass") == "1 forward pass"
    assert plural(3, "forward pass") == "3 forward passes"
