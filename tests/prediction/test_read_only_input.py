"""A read-only input container never makes ``predict`` fail, on a real read-only mount.

By default the results go into the input's own zarr v3 container. Here that container is
made read-only by a read-only bind mount in a user and mount namespace (``unshare``: real
``EROFS``, even for root, where ``chmod`` would not stop writes; skipped where unprivileged
namespaces are not allowed):

- with the folder beside it writable, the results go to a new ``<stem>.stitchsafe.zarr``
  there, and stderr and ``--json`` say where; the container is left as it was;
- with that folder read-only too, exit 2 with one paragraph that points to ``--output``
  (not to ``--resume``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import EXE, assert_bad_input
from namespaces import UNSHARE, needs_namespaces
from nets import make_net

from stitchsafe.models import save_checkpoint, unet_metadata

# Runs inside the namespace: makes ``ro`` a read-only bind mount of itself, runs predict
# on the input in it (``--json``, default output) and writes what happened to result.json.
DRIVER = r"""
import json, subprocess, sys
from pathlib import Path

tmp, ro, exe = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
args = sys.argv[4:]
subprocess.run(["mount", "--bind", ro, ro], check=True)
subprocess.run(["mount", "-o", "remount,bind,ro", ro], check=True)
proc = subprocess.run([exe, *args], capture_output=True, text=True)
(tmp / "result.json").write_text(json.dumps(
    {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}))
"""


pytestmark = needs_namespaces


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Path]:
    net, cfg = make_net("2d-d2-f3")
    save_checkpoint(net, tmp_path / "model.pt", metadata=unet_metadata(cfg))
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    folder = tmp_path / "data"
    group = zarr.open_group(folder / "vol.zarr", mode="w", zarr_format=3)
    group.create_array("raw", data=data, chunks=(16, 16))
    (tmp_path / "driver.py").write_text(DRIVER)
    return {"tmp": tmp_path, "model": tmp_path / "model.pt", "folder": folder}


def _run(setup: dict[str, Path], read_only: Path) -> subprocess.CompletedProcess[str]:
    """``stitchsafe predict --json`` on ``data/vol.zarr`` (key ``raw``), ``read_only`` mounted
    read-only for the run."""
    tmp = setup["tmp"]
    args = ["predict", "--model", str(setup["model"]), "--input", str(setup["folder"] / "vol.zarr"),
            "--input-key", "raw", "--tile-shape", "18", "--device", "cpu", "--no-progress",
            "--json"]  # fmt: skip
    subprocess.run(
        [*UNSHARE, sys.executable,
         str(tmp / "driver.py"), str(tmp), str(read_only), EXE, *args],
        check=True, timeout=600,
    )  # fmt: skip
    found = json.loads((tmp / "result.json").read_text())
    return subprocess.CompletedProcess(args, found["returncode"], found["stdout"], found["stderr"])


def test_read_only_container_falls_back_beside_it(setup: dict[str, Path]) -> None:
    container = setup["folder"] / "vol.zarr"
    before = _listing(container)
    proc = _run(setup, container)
    assert proc.returncode == 0, proc.stderr
    beside = setup["folder"] / "vol.stitchsafe.zarr"
    assert json.loads(proc.stdout)["output"] == str(beside)
    assert "read-only" in proc.stderr and str(beside) in proc.stderr, proc.stderr
    assert "--output" in proc.stderr
    embeddings = zarr.open_array(beside / "0", mode="r")  # the new container is the image
    assert embeddings.shape == (1, 40, 50)
    assert zarr.open_array(beside / "labels/instances/0", mode="r").shape == (40, 50)
    assert _listing(container) == before  # nothing written into the input's container


def test_read_only_folder_too_explains_output(setup: dict[str, Path]) -> None:
    folder = setup["folder"]
    before = _listing(folder)
    proc = _run(setup, folder)
    assert_bad_input(proc, "read-only", "--output")
    assert "--resume" not in proc.stderr
    assert _listing(folder) == before
