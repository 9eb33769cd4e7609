"""Approximate mode for same-padded models, through the real console script.

The acceptance: with ``--allow-approximate --tolerance T`` the stitched output of a
same-padded U-Net deviates from the net run once over the whole image (its own zero
padding at the image border, as its users run it) by at most ``T`` of max |output|,
in the band along the image border too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from nets import make_net
from cli_helpers import assert_bad_input, run_cli

from stitchsafe.cli import cli
from stitchsafe.engine import whole_volume_forward
from stitchsafe.geometry import ModelGeometry
from stitchsafe.models import LoadedModel, save_checkpoint, save_torchscript, unet_metadata
from stitchsafe.engine import Normalization

TILE = "8"  # a few dozen tiles per volume: many seams


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("approximate")
    net, cfg = make_net("2d-same")
    save_checkpoint(net, tmp / "same.pt", metadata=unet_metadata(cfg))  # period from metadata
    save_torchscript(net, tmp / "same.ts.pt")  # no metadata: the period is probed
    rng = np.random.default_rng(0)
    for shape in ((45, 53), (37, 61)):
        data = (rng.random(shape) * 1000).astype(np.uint16)
        zarr.create_array(tmp / f"vol-{shape[0]}x{shape[1]}.zarr", data=data, chunks=(16, 16))
    x = np.arange(53)
    stripes = np.broadcast_to(500 + 500 * np.sign(np.sin(x / 1.3)), (45, 53)).astype(np.float32)
    zarr.create_array(tmp / "stripes.zarr", data=stripes, chunks=(16, 16))
    return {"tmp": tmp, "pt": tmp / "same.pt", "ts": tmp / "same.ts.pt"}


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread here and in the console scripts started: on a busy machine two
    OpenMP threads per tiny convolution wait on each other (~100x slower)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _deviation_from_whole_pass(inp: Path, out: Path, attrs: dict[str, Any]) -> dict[str, float]:
    """max |stitched - whole| / max |whole|, overall and in the border band, where ``whole``
    is the net run once over the whole image, as its users run it: no padding but the
    little at the far end that reaches a valid size (``whole_volume_forward`` with the
    net's own geometry: halo 0)."""
    h = attrs["approximate"]["halo"][0][0]
    assert attrs["approximate"]["halo"] == [[h, h], [h, h]]
    net, _ = make_net("2d-same")
    model = LoadedModel("oracle", "stitchsafe", net.eval(), None, dims=2, channels_in=1)
    own = ModelGeometry(period=(2, 2), halo=((0, 0), (0, 0)), min_input=(2, 2), step=(2, 2))
    data = np.asarray(zarr.open_array(inp, mode="r"))[None]
    whole = whole_volume_forward(
        data,
        model,
        own,
        pad_mode=attrs["pad_mode"],
        transform=Normalization.from_dict(attrs["normalization"]),
    )
    stitched = np.asarray(zarr.open_array(out / "0", mode="r"))
    assert stitched.shape == whole.shape
    diff = np.abs(stitched - whole) / np.abs(whole).max()
    band = np.ones(diff.shape[1:], bool)
    band[h:-h, h:-h] = False  # the voxels within one halo of the image border
    return {"all": float(diff.max()), "border band": float(diff[:, band].max())}


def _invoke(*args: str) -> Any:
    """The command in this process (click's CliRunner): quicker than the console script."""
    return CliRunner().invoke(cli, [*args, "--device", "cpu"])


def test_refused_without_the_flag(setup: dict[str, Path]) -> None:
    inp = str(setup["tmp"] / "vol-45x53.zarr")
    out = setup["tmp"] / "refused.zarr"
    proc = run_cli("predict", "--model", str(setup["pt"]), "--input", inp, "--output", str(out))
    assert_bad_input(proc, "same-padded", "--allow-approximate", "--tolerance")
    assert not out.exists()
    for args, words in (
        (["plan", "--model", str(setup["ts"])], ["same-padded", "--allow-approximate"]),
        (["plan", "--model", str(setup["pt"]), "--tolerance", "1e-3"], ["add --allow-approximate"]),
        (
            ["check", "--model", str(setup["pt"]), "--allow-approximate", "--tolerance", "1.5"],
            ["--tolerance 1.5 must lie strictly between 0 and 1"],
        ),
    ):
        r = _invoke(*args, "--input", inp)
        assert r.exit_code == 2 and r.stderr.startswith("Error: "), r.output
        assert all(w in r.stderr for w in words), r.stderr


@pytest.mark.parametrize(
    "fmt, shape",
    [("pt", (45, 53)), ("ts", (37, 61))],
    ids=["checkpoint-45x53", "torchscript-37x61"],
)
def test_predict_stays_within_the_tolerance(
    setup: dict[str, Path], fmt: str, shape: tuple[int, int]
) -> None:
    inp = setup["tmp"] / f"vol-{shape[0]}x{shape[1]}.zarr"
    halos = {}
    for tolerance in (0.5, 1e-3):
        out = setup["tmp"] / f"{fmt}-{shape[0]}-{tolerance}.zarr"
        proc = run_cli(
            "predict", "--model", str(setup[fmt]), "--input", str(inp), "--output", str(out),
            "--allow-approximate", "--tolerance", str(tolerance), "--tile-shape", TILE,
            "--device", "cpu", "--no-labels", "--no-progress", "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        d = json.loads(proc.stdout)
        a = d["approximate"]
        assert a["tolerance"] == tolerance and a["measured_deviation"] <= tolerance
        assert a["reason"].startswith("same-padded")
        assert a["period"] == [2, 2] and d["plan"]["period"] == [2, 2]
        assert d["plan"]["halo"] == a["halo"] and d["plan"]["approximate"] == a
        assert d["plan"]["exact"] is False and d["plan"]["tile_shape"] == [8, 8]
        assert a["probe"]["inputs"]["input"].startswith("the whole input")
        assert [t["halo"][0][0] for t in a["trials"]] == list(range(0, 2 * len(a["trials"]), 2))
        assert all(t["deviation"] > tolerance for t in a["trials"][:-1])
        note = next(line for line in proc.stderr.splitlines() if "APPROXIMATE" in line)
        assert f"{a['measured_deviation']:.1e}" in note and f"{tolerance:.0e}" in note
        assert f"Halo ({a['halo'][0][0]}, {a['halo'][1][0]})" in note
        attrs = zarr.open_group(out, mode="r").attrs.asdict()["stitchsafe"]
        assert attrs["approximate"] == a and attrs["run"]["approximate"] == {
            "tolerance": tolerance,
            "border": "inside",
        }
        # `stitchsafe info` says so too
        info = run_cli("info", str(out))
        assert info.returncode == 0, info.stderr
        assert "APPROXIMATE" in info.stdout and f"tolerance {tolerance:.2g}" in info.stdout
        # the acceptance: the stitched output is within the tolerance of one whole pass
        deviation = _deviation_from_whole_pass(inp, out, attrs)
        assert max(deviation.values()) <= tolerance, (deviation, a)
        halos[tolerance] = a["halo"][0][0]
    assert halos[1e-3] > halos[0.5], halos  # a tighter tolerance needs a larger halo


def test_unreachable_tolerance_is_refused(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "unreachable.zarr"
    proc = run_cli(
        "predict", "--model", str(setup["pt"]), "--input", str(setup["tmp"] / "vol-45x53.zarr"),
        "--output", str(out), "--allow-approximate", "--tolerance", "1e-9", "--device", "cpu",
    )  # fmt: skip
    assert_bad_input(
        proc,
        "no halo keeps approximate tiles within --tolerance 1e-09",
        "the smallest deviation reached was",
        "did not lower it",
        "raise --tolerance",
    )
    # float32 rounding is all that is left once the halo covers the receptive field
    match = re.search(r"reached was (\S+) of max \|output\|, with halo \((\d+), \2\)", proc.stderr)
    assert match is not None, proc.stderr
    assert 0 < float(match[1]) < 1e-5 and int(match[2]) >= 8
    assert not out.exists()


def test_resume_refuses_another_tolerance(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "resume.zarr"
    args = [
        "predict", "--model", str(setup["pt"]), "--input", str(setup["tmp"] / "vol-45x53.zarr"),
        "--output", str(out), "--tile-shape", TILE, "--device", "cpu", "--no-labels",
        "--no-progress",
    ]  # fmt: skip
    assert run_cli(*args, "--allow-approximate").returncode == 0
    assert_bad_input(
        run_cli(*args, "--allow-approximate", "--tolerance", "1e-2", "--resume"),
        "cannot resume",
        "--allow-approximate/--tolerance",
    )
    same = _invoke(*args, "--allow-approximate", "--tolerance", "1e-3", "--resume", "--json")
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["approximate"]["tolerance"] == 1e-3
    exact = _invoke(*args, "--resume")
    assert exact.exit_code == 2 and "--allow-approximate" in exact.stderr


@pytest.mark.parametrize(
    "tolerance, code", [(1e-3, 0), (0.125, 3)], ids=["within-exit-0", "over-exit-3"]
)
def test_check_reports_the_real_deviation(
    setup: dict[str, Path], tolerance: float, code: int
) -> None:
    # A crop puts the seams elsewhere than on the whole input the probes measured: with
    # 0.125 (halo 6) the stripes deviate more on it than on the probes.
    proc = run_cli(
        "check", "--model", str(setup["ts"]), "--input", str(setup["tmp"] / "stripes.zarr"),
        "--allow-approximate", "--tolerance", str(tolerance), "--crop", "29,31",
        "--tile-shape", TILE, "--device", "cpu", "--no-picture", "--json",
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    d = json.loads(proc.stdout)
    a, relative = d["approximate"], d["stitched"]["relative"]
    assert d["exact"] is False and d["tolerance"] == tolerance == a["tolerance"]
    assert a["measured_deviation"] <= tolerance
    assert d["within_tolerance"] is (code == 0) is (relative <= tolerance)
    assert "APPROXIMATE mode" in proc.stderr and "Traceback" not in proc.stderr
    if code == 3:
        assert a["halo"] == [[6, 6], [6, 6]]
        assert "Error: approximate mode: the stitched output deviates" in proc.stderr
        assert f"{relative:.2g}" in proc.stderr
    text = _invoke(*proc.args[1:-1])  # the human-readable report
    assert text.exit_code == code, text.output
    verdict = "WITHIN TOLERANCE" if code == 0 else "OVER TOLERANCE"
    assert text.stdout.startswith(f"stitchsafe check: APPROXIMATE, {verdict}")
