"""Resume after a crash: SIGKILL the real console script mid-run, resume, compare.

The resumed output must equal an uninterrupted run's (embeddings and labels), and the
resumed run must compute only the tiles the done-mask had not recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from nets import make_net
from cli_helpers import EXE, assert_bad_input, run_cli

from stitchsafe.models import save_checkpoint, unet_metadata
from stitchsafe.io import DoneMask, check_fingerprint, done_mask_path, run_fingerprint

ROLES = ["embedding", "embedding", "foreground"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("resume")
    net, cfg = make_net("3d-d1-f2", out_channels=3)
    meta = unet_metadata(cfg, channel_roles=ROLES, labels={"threshold": 0.05, "min_size": 2})
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    net2, _ = make_net("3d-d1-f2", seed=1, out_channels=3)
    save_checkpoint(net2, tmp / "other.pt", metadata=meta)
    zz, yy, xx = np.mgrid[:16, :64, :64]
    data = (1000 * (np.sin(zz / 2.0) * np.cos(yy / 3.0) * np.sin(xx / 4.0) > 0.1)).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 32, 32))
    return {
        "tmp": tmp,
        "model": tmp / "model.pt",
        "other": tmp / "other.pt",
        "input": tmp / "vol.zarr",
    }


def _args(s: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "predict", "--model", str(s["model"]), "--input", str(s["input"]), "--output", str(out),
        "--tile-shape", "4,8,8", "--device", "cpu", "--no-progress", "--json", *extra,
    ]  # fmt: skip


def _read(out: Path) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(zarr.open_array(out / "0", mode="r"))  # the container is the image
    lab = np.asarray(zarr.open_array(out / "labels/instances/0", mode="r"))
    return emb, lab


@pytest.fixture(scope="module")
def reference(setup: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, int]:
    proc = run_cli(*_args(setup, setup["tmp"] / "ref.zarr"))
    assert proc.returncode == 0, proc.stderr
    emb, lab = _read(setup["tmp"] / "ref.zarr")
    return emb, lab, json.loads(proc.stdout)["tiles"]


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0])
def test_sigkill_then_resume_equals_an_uninterrupted_run(
    setup: dict[str, Path], reference: tuple[np.ndarray, np.ndarray, int], delay: float
) -> None:
    out = setup["tmp"] / f"killed-{delay}.zarr"
    proc = subprocess.Popen(
        [EXE, *_args(setup, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # Wait until tiles are being written, then a little more, then kill without warning.
    deadline = time.monotonic() + 60
    while not Path(done_mask_path(out, ""), "zarr.json").exists() and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    emb_ref, lab_ref, total = reference
    mask = zarr.open_array(done_mask_path(out, ""), mode="r")
    finished = int(np.count_nonzero(mask[...]))
    resumed = run_cli(*_args(setup, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    ran = json.loads(resumed.stdout)["tiles"]
    assert ran == total - finished  # only the unfinished tiles were computed
    emb, lab = _read(out)
    np.testing.assert_array_equal(emb, emb_ref)
    np.testing.assert_array_equal(lab, lab_ref)
    assert np.count_nonzero(zarr.open_array(done_mask_path(out, ""), mode="r")[...]) == total
    attrs = zarr.open_group(out, mode="r").attrs.asdict()["stitchsafe"]
    assert attrs["complete"] is True


def test_resume_refuses_a_changed_model_or_plan(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "changed.zarr"
    assert run_cli(*_args(setup, out, "--no-labels")).returncode == 0
    args = _args(setup, out, "--resume")
    other = [str(setup["other"]) if a == str(setup["model"]) else a for a in args]
    assert_bad_input(run_cli(*other), "cannot resume", "the model file", "--overwrite")
    bigger = [("8,16,16" if a == "4,8,8" else a) for a in args]
    assert_bad_input(run_cli(*bigger), "cannot resume", "tile plan")
    assert_bad_input(run_cli(*args, "--overwrite"), "--resume", "--overwrite")
    done = run_cli(*args)  # nothing left to compute: only the labels are derived
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tiles"] == 0


def test_done_mask_flushes_only_touched_chunks(tmp_path: Path) -> None:
    zarr.open_group(tmp_path / "g.zarr", mode="w").create_group("img")
    mask = DoneMask.create(str(tmp_path / "g.zarr"), "img", (70, 3, 130))
    from stitchsafe.geometry import Box, Tile

    def tile(i: tuple[int, ...]) -> Tile:
        b = Box((0, 0, 0), (1, 1, 1))
        return Tile(i, b, b, b)

    marks = [(0, 0, 0), (69, 2, 129), (64, 1, 64), (5, 0, 127)]
    mask.flush_seconds = 3600.0
    mask.mark([tile(m) for m in marks])
    assert not mask.done().any()  # not yet flushed
    mask.flush()
    done = mask.done()
    assert int(done.sum()) == 4 and all(done[m] for m in marks)
    again = DoneMask.open(str(tmp_path / "g.zarr"), "img", (70, 3, 130))
    assert int(again.done().sum()) == 4


def test_fingerprint_names_what_changed() -> None:
    from stitchsafe.geometry import make_plan, unet_geometry

    plan = make_plan((20, 20), unet_geometry([(2, 2)]), tile_shape=(4, 4))
    settings = {"pad_mode": "reflect", "precision": "fp32", "embeddings_dtype": "float32"}
    a = run_fingerprint(plan, model_sha256="x", normalization={"method": "none"}, **settings)
    check_fingerprint(json.loads(json.dumps(a)), a, "out")
    from stitchsafe.errors import StitchsafeError

    with pytest.raises(StitchsafeError, match="--pad-mode, --precision"):
        check_fingerprint({**a, "pad_mode": "edge", "precision": "bf16"}, a, "out")
    with pytest.raises(StitchsafeError, match="not written by a resumable"):
        check_fingerprint(None, a, "out")
