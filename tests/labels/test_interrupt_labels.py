"""Interrupted labelling: Ctrl-C and SIGTERM stop cleanly, and nothing is left that the
next run cannot continue or replace.

Through the installed console script: ``predict`` is interrupted once its labelling
threads write (a chunk appears in the scratch group where new labels are built), then
``--resume`` must give the clean run's labels; ``segment --overwrite`` interrupted the
same way must leave the old labels in place, readable and complete.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import EXE, run_cli
from nets import make_net

import stitchsafe
from stitchsafe.engine import whole_volume_forward
from stitchsafe.errors import StitchsafeError
from stitchsafe.io import bookkeeping_path
from stitchsafe.labels import NEW_LABELS, face_slices
from stitchsafe.models import load_model, save_checkpoint, unet_metadata

ROLES = ["embedding", "embedding", "foreground"]
LABELS = "labels/instances"  # the container predict makes is the embeddings image


def _volume(shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    wave = np.prod([np.sin(g / (2.0 + i)) for i, g in enumerate(grids)], axis=0)
    noise = np.random.default_rng(7).random(shape)
    return ((wave > 0.1) + 0.2 * noise).astype(np.float32)


def _label_defaults(oracle: np.ndarray) -> dict[str, float | int]:
    """Seeded labels grown by 2 voxels (the growth uses a scratch array too) that make
    many objects of this volume."""
    steps = []
    for axis in range(3):
        lo, hi = face_slices(axis, 3)
        diff = oracle[(slice(0, 2), *lo)] - oracle[(slice(0, 2), *hi)]
        steps.append(np.sqrt((diff**2).sum(0)).ravel())
    dist = np.concatenate(steps)
    cut = [float(1 / (1 + np.exp(-np.quantile(oracle[2], q)))) for q in (0.4, 0.5)]
    return {
        "threshold": float(np.quantile(dist, 0.6)),
        "min_size": 3,
        "foreground_threshold": cut[0],
        "seed_threshold": float(np.quantile(dist, 0.4)),
        "seed_foreground_threshold": cut[1],
        "grow": 2,
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("interrupt")
    net, cfg = make_net("3d-d1-f2", out_channels=3)
    data = _volume((12, 40, 48))
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 24, 24))
    save_checkpoint(net, tmp / "probe.pt", metadata=unet_metadata(cfg))
    oracle = whole_volume_forward(data[None], load_model(tmp / "probe.pt"), cfg.geometry())
    meta = unet_metadata(cfg, channel_roles=ROLES, labels=_label_defaults(oracle))
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


def _predict_args(s: dict[str, Path], out: Path) -> list[str]:
    return [
        "predict", "--model", str(s["model"]), "--input", str(s["input"]), "--output", str(out),
        "--tile-shape", "4,8,8", "--device", "cpu", "--no-progress", "--normalize", "none",
        "--json",
    ]  # fmt: skip


def _labels(out: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(out / LABELS / "0", mode="r"))


@pytest.fixture(scope="module")
def clean(setup: dict[str, Path]) -> Path:
    """The output of a run that nothing interrupted."""
    out = setup["tmp"] / "clean.zarr"
    proc = run_cli(*_predict_args(setup, out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["objects"] > 10
    return out


def _interrupt_labelling(args: list[str], out: Path, sig: int) -> subprocess.CompletedProcess[str]:
    """Run ``stitchsafe ARGS``, send ``sig`` once labelling threads write into ``out``."""
    proc = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scratch = Path(bookkeeping_path(out, "", NEW_LABELS))
    deadline = time.monotonic() + 120
    # A chunk folder ("c") in the scratch group: the components pass has started writing.
    while proc.poll() is None and time.monotonic() < deadline:
        if _has_chunk_folder(scratch):
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _has_chunk_folder(scratch: Path) -> bool:
    """Whether a chunk folder is below ``scratch``: the run adds and removes folders there
    while this looks, so one that vanishes mid-walk only means not yet."""
    try:
        return scratch.is_dir() and next(scratch.rglob("c"), None) is not None
    except FileNotFoundError:
        return False


def _paragraph(stderr: str) -> str:
    """The one paragraph an interrupted command prints."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Interrupted by ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    "sig, code, cause",
    [(signal.SIGINT, 130, "Ctrl-C (SIGINT)"), (signal.SIGTERM, 143, "SIGTERM")],
    ids=["sigint", "sigterm"],
)
def test_interrupted_labelling_then_resume_gives_the_clean_runs_labels(
    setup: dict[str, Path], clean: Path, sig: int, code: int, cause: str
) -> None:
    out = setup["tmp"] / f"stopped-{code}.zarr"
    args = _predict_args(setup, out)
    stopped = _interrupt_labelling(args, out, sig)
    assert stopped.returncode == code, stopped.stderr
    said = _paragraph(stopped.stderr)
    for words in (cause, "stopped cleanly", "Labelling stopped", "no labels were written",
                  "rerun the same command with --resume"):  # fmt: skip
        assert words in said, said
    assert not (out / LABELS).exists()  # no half-written labels where labels belong
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["tiles"] == 0  # every tile was finished before
    np.testing.assert_array_equal(_labels(out), _labels(clean))
    assert not Path(bookkeeping_path(out, "", NEW_LABELS)).exists()
    assert zarr.open_group(out / LABELS, mode="r").attrs["stitchsafe"]["complete"] is True


def test_interrupted_segment_overwrite_keeps_the_old_labels(
    setup: dict[str, Path], clean: Path
) -> None:
    out = setup["tmp"] / "segment.zarr"
    shutil.copytree(clean, out)
    old = _labels(out)
    args = ["segment", "--input", str(out), "--overwrite", "--min-size", "0", "--no-progress"]
    stopped = _interrupt_labelling(args, out, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert f"the labels at {LABELS} were left as they were" in _paragraph(stopped.stderr)
    # The old labels are in place, complete, listed, and read back unchanged.
    np.testing.assert_array_equal(_labels(out), old)
    assert zarr.open_group(out / LABELS, mode="r").attrs["stitchsafe"]["complete"] is True
    listed = zarr.open_group(out / "labels", mode="r").attrs["ome"]["labels"]
    assert listed == ["instances"]
    # The next --overwrite clears the leftover scratch group and replaces the labels.
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["objects"] > int(old.max())  # no size filter: more objects
    assert not Path(bookkeeping_path(out, "", NEW_LABELS)).exists()


@pytest.mark.parametrize("killed", ["between-the-renames", "before-the-listing"])
def test_what_a_killed_swap_left_is_finished_by_the_next_run(
    setup: dict[str, Path], clean: Path, killed: str
) -> None:
    """A process killed inside the swap (SIGKILL: no handler runs) leaves the old labels in
    the scratch group, or the new ones in place but not yet listed; the next run puts the
    old ones back or lists the new ones before it does anything else."""
    out = setup["tmp"] / f"swap-{killed}.zarr"
    shutil.copytree(clean, out)
    before = _labels(out)
    scratch = Path(bookkeeping_path(out, "", NEW_LABELS))
    (scratch / "labels").mkdir(parents=True)
    shutil.copytree(out / LABELS, scratch / "labels" / "instances")  # complete new labels
    if killed == "between-the-renames":
        os.rename(out / LABELS, scratch / "previous-instances")
    else:
        os.rename(scratch / "labels" / "instances", scratch / "previous-instances")
        zarr.open_group(out / "labels", mode="r+").attrs["ome"] = {
            "version": "0.5",
            "labels": [],
        }
    # Without --overwrite the labels found are refused as existing, and kept.
    with pytest.raises(StitchsafeError, match="already holds.*--overwrite"):
        stitchsafe.segment(out, progress=False)
    np.testing.assert_array_equal(_labels(out), before)
    listed = zarr.open_group(out / "labels", mode="r").attrs["ome"]["labels"]
    assert listed == ["instances"]
    assert not scratch.exists()
