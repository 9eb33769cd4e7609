"""``stitchsafe check``: its numbers against an oracle computed here, its picture, its exits.

The oracle is :func:`stitchsafe.engine.whole_volume_forward` compared with what ``predict``
wrote (stitchsafe's tiling) and with a naive tiling stitched by hand below, tile by tile,
from ``numpy.pad`` of the whole normalised volume.
"""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from nets import make_net
from cli_helpers import run_cli

from stitchsafe.reports import EXACT_RTOL, EXIT_NOT_EXACT
from stitchsafe.cli import cli
from stitchsafe.engine import whole_volume_forward
from stitchsafe.geometry import ModelGeometry
from stitchsafe.models import load_model, save_checkpoint, save_torchscript, unet_metadata
from stitchsafe.engine import Normalization

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("check")
    net, cfg = make_net("2d-d1-f2")
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    net3, cfg3 = make_net("3d-d1-f2")
    save_checkpoint(net3, tmp / "model3d.pt", metadata=unet_metadata(cfg3))
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 16))
    zz, yy, xx = np.mgrid[:14, :30, :34]
    vol3 = (500 + 400 * np.sin(zz / 2.0) * np.cos(yy / 3.0) * np.sin(xx / 4.0)).astype(np.float32)
    zarr.create_array(tmp / "vol3d.zarr", data=vol3, chunks=(8, 16, 16))
    return {
        "tmp": tmp,
        "model": tmp / "model.pt",
        "model3d": tmp / "model3d.pt",
        "input": tmp / "vol.zarr",
        "input3d": tmp / "vol3d.zarr",
    }


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _naive_stitch(
    x: np.ndarray, model: Any, geometry: ModelGeometry, tile: tuple[int, ...]
) -> np.ndarray:
    """Tiles with write boxes of ``tile`` from the origin, each cut from the padded volume."""
    spatial = x.shape[1:]
    read = geometry.input_for_output(tile)
    lo = geometry.halo_lo
    after = [max(0, -(-v // t) * t - t - h + r - v) for v, t, h, r in zip(spatial, tile, lo, read)]
    xp = np.pad(x, [(0, 0)] + [(h, a) for h, a in zip(lo, after)], mode="reflect")
    out = np.zeros((geometry.channels_out, *spatial), np.float32)
    for origin in itertools.product(*(range(0, v, t) for v, t in zip(spatial, tile))):
        window = xp[(slice(None), *(slice(o, o + r) for o, r in zip(origin, read)))]
        y = model(torch.from_numpy(np.ascontiguousarray(window[None]))).numpy()[0]
        keep = tuple(slice(o, min(o + t, v)) for o, t, v in zip(origin, tile, spatial))
        out[(slice(None), *keep)] = y[(slice(None), *(slice(0, k.stop - k.start) for k in keep))]
    return out


def test_check_numbers_match_the_oracle_and_the_png_is_written(setup: dict[str, Path]) -> None:
    tmp, picture = setup["tmp"], setup["tmp"] / "check.png"
    args = ["--model", str(setup["model"]), "--input", str(setup["input"]), "--device", "cpu"]
    proc = run_cli("check", *args, "--json", "--picture", str(picture))
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["exact"] is True and d["tolerance"] == EXACT_RTOL
    assert d["crop"] == {"begin": [0, 0], "shape": [40, 50]}  # small: the whole volume
    assert d["period"] == [2, 2] and d["picture"] == str(picture)
    tile = d["stitched"]["tile_shape"]
    assert tile == [20, 24] and d["stitched"]["tiles"] == 2 * 3  # seams on both axes
    assert d["naive"]["tile_shape"] == [19, 23] and d["naive"]["tiles"] == 3 * 3

    # The PNG: real, two panels side by side (wider than high), not blank.
    width, height = _png_size(picture)
    assert 600 <= width <= 1100 and 300 <= height <= 520 and width > 1.5 * height
    import matplotlib.pyplot as plt

    pixels = plt.imread(picture)
    assert pixels.shape[:2] == (height, width) and float(pixels[..., :3].std()) > 0.05

    # Oracle: predict's stitched output with the same tiles, the whole-volume pass and a
    # naive tiling stitched here, all with the normalisation predict applies.
    out = tmp / "pred.zarr"
    pred = CliRunner().invoke(
        cli,
        ["predict", *args, "--output", str(out), "--tile-shape", ",".join(map(str, tile)),
         "--no-labels", "--no-progress", "--json"],
    )  # fmt: skip
    assert pred.exit_code == 0, pred.output
    norm_dict = json.loads(pred.stdout)["normalization"]
    assert d["normalization"] == norm_dict
    norm = Normalization.from_dict(norm_dict)
    model = load_model(setup["model"])
    geometry = make_net("2d-d1-f2")[1].geometry()
    raw = np.asarray(zarr.open_array(setup["input"], mode="r"))[None]
    whole = whole_volume_forward(raw, model, geometry, transform=norm)
    stitched = np.asarray(zarr.open_array(out / "0", mode="r"))
    naive = _naive_stitch(norm(raw), model, geometry, (19, 23))
    scale = float(np.abs(whole).max())
    assert d["output_scale"] == pytest.approx(scale, rel=1e-6)

    s = d["stitched"]
    dev = np.abs(stitched - whole)
    assert s["max_abs"] == pytest.approx(float(dev.max()), abs=1e-6 * scale)
    assert s["relative"] <= 1e-6 and float(dev.max()) <= EXACT_RTOL * scale

    n = d["naive"]
    ndev = np.abs(naive - whole)
    assert n["relative"] > 1e-2  # clearly not exact
    assert n["max_abs"] == pytest.approx(float(ndev.max()), rel=1e-5)
    assert n["mean_abs"] == pytest.approx(float(ndev.mean()), rel=1e-5)
    assert n["relative"] == pytest.approx(float(ndev.max()) / scale, rel=1e-5)
    c, y, x = np.unravel_index(int(np.argmax(ndev)), ndev.shape)
    assert (n["channel"], n["voxel"]) == (c, [y, x])


def test_check_3d_text_default_picture_and_crop(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["check", "--model", str(setup["model3d"]), "--input", str(setup["input3d"])]
    r = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "stitchsafe check: EXACT" in r.output
    for word in ("stitchsafe", "naive", "max |dev|", "(c; z, y, x)", "stitchsafe-check.png"):
        assert word in r.output
    _png_size(tmp_path / "stitchsafe-check.png")  # the documented default, in the cwd

    r = CliRunner().invoke(cli, [*args, "--crop", "8,16,20", "--no-picture", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["crop"] == {"begin": [3, 7, 7], "shape": [8, 16, 20]}  # centred
    assert d["picture"] is None and d["exact"] is True
    assert d["naive"]["relative"] > 1e-2
    assert d["stitched"]["tile_shape"] == [4, 8, 10] and d["stitched"]["tiles"] == 8
    for v, b, s in zip(d["naive"]["voxel"], d["crop"]["begin"], d["crop"]["shape"]):
        assert b <= v < b + s  # reported in the input's coordinates


class _SizeDependent(torch.nn.Module):
    """A valid U-Net that scales its output on inputs wider than ``limit``.

    No probe can see it (its windows are small), but a whole-volume pass can: the kind of
    model ``check`` exists to catch.
    """

    def __init__(self, net: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.net = net
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        if x.shape[-1] > self.limit:
            y = y * 1.5
        return y


def test_deviating_model_exits_3_with_the_report(setup: dict[str, Path]) -> None:
    net, cfg = make_net("2d-d1-f2")
    model = setup["tmp"] / "size-dependent.ts.pt"
    # Tiles read 40 columns and the whole pass 66; probing stays below 30.
    save_torchscript(_SizeDependent(net, 50), model, metadata=unet_metadata(cfg))
    proc = run_cli(
        "check", "--model", str(model), "--input", str(setup["input"]), "--device", "cpu",
        "--json", "--no-picture",
    )  # fmt: skip
    assert proc.returncode == EXIT_NOT_EXACT == 3, proc.stderr
    d = json.loads(proc.stdout)  # the report is still printed
    assert d["exact"] is False
    assert d["stitched"]["relative"] == pytest.approx(1 / 3, rel=1e-3)
    assert "Error: the stitched output deviates" in proc.stderr and "Traceback" not in proc.stderr


def test_unstitchable_model_is_refused_like_predict(setup: dict[str, Path]) -> None:
    net, _ = make_net("2d-same")
    model = setup["tmp"] / "same.ts.pt"
    save_torchscript(net, model)
    args = ["--model", str(model), "--input", str(setup["input"]), "--device", "cpu"]
    picture = setup["tmp"] / "same.png"
    check = run_cli("check", *args, "--picture", str(picture))
    predict = CliRunner().invoke(cli, ["predict", *args, "--output", str(setup["tmp"] / "s.zarr")])
    assert check.returncode == predict.exit_code == 2
    assert check.stderr.startswith("Error: ") and "same-padded" in check.stderr
    assert check.stderr == predict.stderr  # one refusal, word for word
    assert check.stdout == "" and not picture.exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--crop", "0"], ["--crop", "positive integers"]),
        (["--crop", "4,4,4"], ["--crop", "2 positive values"]),
        (["--tile-shape", "5"], ["multiple of the period"]),
        (["--picture", "."], ["--picture", "directory"]),
    ],
    ids=["crop-zero", "crop-axes", "tile-off-period", "picture-dir"],
)
def test_bad_options_exit_2(setup: dict[str, Path], extra: list[str], words: list[str]) -> None:
    args = ["check", "--model", str(setup["model"]), "--input", str(setup["input"]), *extra]
    r = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert r.exit_code == 2, r.output
    assert "Error: " in r.output and "Traceback" not in r.output
    for w in words:
        assert w in r.output


def test_missing_input_exits_2(setup: dict[str, Path]) -> None:
    r = CliRunner().invoke(cli, ["check", "--input", str(setup["tmp"] / "missing.zarr")])
    assert r.exit_code == 2 and r.stderr.startswith("Error: ")
    assert "missing.zarr" in r.stderr and "does not exist" in r.stderr
