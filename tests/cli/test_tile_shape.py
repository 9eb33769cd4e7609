"""An oversized --tile-shape is clamped to what the volume needs (not a 600 GB allocation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr
from cli_helpers import run_cli
from nets import make_net

from stitchsafe.models import save_checkpoint, unet_metadata


def test_an_oversized_tile_shape_is_clamped_with_a_note(tmp_path: Path) -> None:
    net, cfg = make_net("2d-d2-f3")
    model = tmp_path / "model.pt"
    save_checkpoint(net, model, metadata=unet_metadata(cfg))
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    zarr.create_array(tmp_path / "vol.zarr", data=data, chunks=(16, 16))
    args = ["--model", str(model), "--input", str(tmp_path / "vol.zarr"), "--device", "cpu"]
    proc = run_cli("plan", *args, "--tile-shape", "900000", "--json")  # period 9
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)["plan"]
    period = d["period"]
    assert d["tiles"] == 1
    # The smallest multiple of the period that covers each axis.
    assert d["tile_shape"] == [-(-v // p) * p for v, p in zip((40, 50), period)]
    assert "larger than the volume" in proc.stderr
    # A tile shape that fits is kept as given.
    proc = run_cli("plan", *args, "--tile-shape", str(period[0] * 2), "--json")
    assert json.loads(proc.stdout)["plan"]["tile_shape"] == [period[0] * 2] * 2
