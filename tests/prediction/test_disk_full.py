"""A disk that fills up while ``predict`` creates its output image, on a real file system.

A small ``tmpfs`` is mounted in a user and mount namespace (``unshare``; no root needed
where unprivileged user namespaces are allowed, skipped elsewhere) and filled up to ``k``
free pages, for ``k`` = 0, 1, 2... until the output image gets made: each run stops at a
later moment of the creation (the image's folder made but not its metadata; its metadata
but not its level-0 array; the array but not the done mask). Each such state is kept, and:

- the console script's message is one paragraph that sends the user to ``--resume``;
- ``--resume`` (the advised command, run once space is free) completes the output, and
  ``--overwrite`` replaces it: both give the output of a run that nothing stopped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli
from namespaces import UNSHARE, needs_namespaces
from nets import make_net

import stitchsafe
from stitchsafe.models import save_checkpoint, unet_metadata

# Runs inside the namespace: mounts the tmpfs, fills it, runs predict (in this process: one
# import of torch for all the runs) and keeps each state of the output that a full disk
# left. Then the console script's message at the first state inside the image.
DRIVER = r"""
import errno, json, os, shutil, subprocess, sys
from pathlib import Path

import stitchsafe

tmp, model, inp, exe = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
mnt = tmp / "mnt"
mnt.mkdir()
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
out = mnt / "out.zarr"
options = dict(tile_shape=18, device="cpu", progress=False)


def fill(pages):
    for p in mnt.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    st = os.statvfs(mnt)
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * ((st.f_bavail - pages) * st.f_bsize))


def state():
    image = out  # the container predict makes is the image
    if not image.is_dir():
        return "nothing"
    for name, meta in (("folder", "zarr.json"), ("metadata", "0/zarr.json"),
                       ("array", ".stitchsafe/done/zarr.json")):
        if not (image / meta).is_file():
            return name
    return "made"


states = {}
for pages in range(64):
    # Three tries per size: the pages a run needs vary a little (lock record, timing of
    # the file system's accounting), so one try per size can step over a state.
    made = 0
    for _ in range(3):
        fill(pages)
        try:
            stitchsafe.predict(model, inp, output=out, **options)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        now = state()
        made += now == "made"
        if now not in ("made", "nothing") and now not in states:
            states[now] = pages
            shutil.copytree(out, tmp / f"{now}.zarr", symlinks=True)
    if made == 3:
        break
fill(states["folder"])
args = ["predict", "--model", model, "--input", inp, "--output", str(out), "--tile-shape",
        "18", "--device", "cpu", "--no-progress"]
proc = subprocess.run([exe, *args], capture_output=True, text=True)
(tmp / "result.json").write_text(json.dumps(
    {"states": states, "returncode": proc.returncode, "stderr": proc.stderr}))
"""


pytestmark = needs_namespaces


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("disk-full")
    net, cfg = make_net("2d-d2-f3")
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 16))
    clean = stitchsafe.predict(
        tmp / "model.pt", tmp / "vol.zarr", output=tmp / "clean.zarr", tile_shape=18,
        device="cpu", progress=False,
    )  # fmt: skip
    assert clean.objects
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


def _read(out: Path) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(zarr.open_array(out / "0", mode="r"))
    labels = np.asarray(zarr.open_array(out / "labels/instances/0", mode="r"))
    return emb, labels


def test_disk_full_while_the_output_is_created_then_resume_or_overwrite(
    setup: dict[str, Path],
) -> None:
    tmp = setup["tmp"]
    (tmp / "driver.py").write_text(DRIVER)
    subprocess.run(
        [
            *UNSHARE, sys.executable,
            str(tmp / "driver.py"), str(tmp), str(setup["model"]), str(setup["input"]), EXE,
        ],
        check=True, timeout=600,
    )  # fmt: skip
    found = json.loads((tmp / "result.json").read_text())
    # The full disk stopped the creation at each of its moments.
    assert set(found["states"]) == {"folder", "metadata", "array"}, found["states"]
    # The first message: one paragraph, no traceback, and it sends the user to --resume.
    said = subprocess.CompletedProcess([], found["returncode"], "", found["stderr"])
    assert_bad_input(said, "No space left on device", "rerun the same command with --resume")
    assert len(said.stderr.strip().splitlines()) == 1, said.stderr
    clean_emb, clean_labels = _read(tmp / "clean.zarr")
    for state in found["states"]:
        for flag in ("--resume", "--overwrite"):
            out = tmp / f"{state}{flag}.zarr"
            shutil.copytree(tmp / f"{state}.zarr", out, symlinks=True)
            proc = run_cli(
                "predict", "--model", str(setup["model"]), "--input", str(setup["input"]),
                "--output", str(out), "--tile-shape", "18", "--device", "cpu",
                "--no-progress", flag,
            )  # fmt: skip
            assert proc.returncode == 0, (state, flag, proc.stderr)
            emb, labels = _read(out)
            np.testing.assert_allclose(emb, clean_emb, rtol=1e-5, atol=1e-6)
            assert np.array_equal(labels, clean_labels), (state, flag)
