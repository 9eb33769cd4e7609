"""One writer per output: concurrent runs, held and stale locks, inputs --overwrite must keep.

Through the installed console script: a first ``predict`` is paused (SIGSTOP) while it
writes tiles, a second ``predict --overwrite`` on the same output must exit 2 naming it and
touch nothing, and the first, continued, must write what a clean run writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli
from nets import make_net, write_model

import stitchsafe
from stitchsafe.errors import StitchsafeError
from stitchsafe.io import LockOwner, OutputLock, OutputLockedError
from stitchsafe.models import unet_metadata

ROLES = ["embedding", "embedding", "foreground"]
HOST = socket.gethostname()
LABELS = "labels/instances/0"  # the container predict made is the image


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("lock")
    net, cfg = make_net("3d-d1-f2", out_channels=3)
    meta = unet_metadata(cfg, channel_roles=ROLES, labels={"threshold": 0.05, "min_size": 2})
    write_model(net, cfg, tmp / "model.pt", "stitchsafe", metadata=meta)
    zz, yy, xx = np.mgrid[:16, :32, :32]
    data = (1000 * (np.sin(zz / 2.0) * np.cos(yy / 3.0) * np.sin(xx / 4.0) > 0.1)).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 16, 16))
    # The clean run every other output is compared with (the same code, in this process).
    clean = stitchsafe.predict(
        tmp / "model.pt",
        tmp / "vol.zarr",
        output=tmp / "clean.zarr",
        tile_shape=(4, 8, 8),
        device="cpu",
        progress=False,
    )
    assert clean.objects and clean.objects > 1
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


def _args(s: dict[str, Path], out: Path, *extra: str, model: Path | None = None) -> list[str]:
    return [
        "predict", "--model", str(model or s["model"]), "--input", str(s["input"]),
        "--output", str(out), "--tile-shape", "4,8,8", "--device", "cpu", "--no-progress",
        "--json", *extra,
    ]  # fmt: skip


def _arrays(out: Path) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(zarr.open_array(out / "0", mode="r"))
    return emb, np.asarray(zarr.open_array(out / LABELS, mode="r"))


def _assert_like_clean(setup: dict[str, Path], out: Path) -> None:
    emb, lab = _arrays(out)
    clean_emb, clean_lab = _arrays(setup["tmp"] / "clean.zarr")
    np.testing.assert_array_equal(emb, clean_emb)
    np.testing.assert_array_equal(lab, clean_lab)
    for image in ("", "labels/instances"):
        attrs = zarr.open_group(out / image, mode="r").attrs.asdict()["stitchsafe"]
        assert attrs["complete"] is True, image


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: what a refused run must leave alone."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Wait until ``path`` exists while ``proc`` runs (it fails the test if ``proc`` ends)."""
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


def test_a_second_run_exits_2_naming_the_first_which_finishes_correct(
    setup: dict[str, Path],
) -> None:
    out = setup["tmp"] / "busy.zarr"
    first = subprocess.Popen(
        [EXE, *_args(setup, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # Pause the first run while it writes its tiles: it holds the output's lock.
        _wait_for(out / "0" / "c", first)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None, "the first run must still be running"
        before = _files(out)
        second = run_cli(*_args(setup, out, "--overwrite"))
        assert_bad_input(
            second, "another stitchsafe run", f"pid {first.pid} on host {HOST}", str(out),
            "wait for it", "--output", "predict",
        )  # fmt: skip
        assert _files(out) == before  # the second run deleted and wrote nothing
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    _assert_like_clean(setup, out)
    clean = zarr.open_group(setup["tmp"] / "clean.zarr/labels/instances", mode="r")
    assert json.loads(stdout)["objects"] == clean.attrs["stitchsafe"]["objects"]
    assert OutputLock(str(out)).holder() is None  # released, and its record removed


HOLDER = (
    "import sys\n"
    "from stitchsafe.io import OutputLock\n"
    "held = OutputLock(sys.argv[1]).hold(command='the holder')\n"
    "held.__enter__()\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_a_live_holder_is_named_and_a_killed_one_is_taken_over(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "held.zarr"
    shutil.copytree(setup["tmp"] / "clean.zarr", out)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        before = _files(out)
        proc = run_cli(*_args(setup, out, "--overwrite"))
        assert_bad_input(proc, f"pid {holder.pid} on host {HOST}", "the holder", "--output")
        proc = run_cli("segment", "--input", str(out), "--overwrite", "--no-progress")
        assert_bad_input(proc, f"pid {holder.pid}", "run segment again")
        assert _files(out) == before
    finally:
        holder.kill()  # SIGKILL: no clean-up, its record stays behind
        holder.wait()
    stale = OutputLock(str(out)).holder()
    assert stale is not None and stale.pid == holder.pid and stale.running() is False
    proc = run_cli(*_args(setup, out, "--overwrite"))
    assert proc.returncode == 0, proc.stderr
    assert "note: took over the lock" in proc.stderr and f"pid {holder.pid}" in proc.stderr
    assert "Traceback" not in proc.stderr
    _assert_like_clean(setup, out)
    assert OutputLock(str(out)).holder() is None


def test_overwrite_refuses_to_delete_the_input_or_the_model(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "own.zarr"
    shutil.copytree(setup["tmp"] / "clean.zarr", out)
    raw = zarr.open_array(setup["input"], mode="r")[...]
    inside = out / "raw"  # inside the output image: the container's root
    zarr.create_array(inside, data=raw, chunks=(16, 16, 16))
    model = out / "model.pt"
    shutil.copy(setup["model"], model)
    before = _files(out)
    args = _args(setup, out, "--overwrite")
    args[args.index("--input") + 1] = str(inside)
    assert_bad_input(
        run_cli(*args), "the input", str(inside), "inside", "the root image", "--overwrite",
        "Nothing was deleted", "another --output",
    )  # fmt: skip
    proc = run_cli(*_args(setup, out, "--overwrite", model=model))
    assert_bad_input(proc, "the model", str(model), "inside", "Nothing was deleted")
    assert _files(out) == before
    np.testing.assert_array_equal(zarr.open_array(inside, mode="r")[...], raw)


def test_resume_and_labels_only_refuse_an_input_inside_what_they_write(
    setup: dict[str, Path],
) -> None:
    out = setup["tmp"] / "inside.zarr"
    shutil.copytree(setup["tmp"] / "clean.zarr", out)
    raw = zarr.open_array(setup["input"], mode="r")[...]
    zarr.create_array(out / "raw", data=raw, chunks=(16, 16, 16))
    # A group of an earlier version (or the user's): a labels-only image holding the input.
    group = setup["tmp"] / "inside-group.zarr"
    zarr.open_group(group, mode="w").create_group("instances")
    zarr.create_array(group / "instances" / "raw", data=raw, chunks=(16, 16, 16))
    before = {**_files(out), **{f"group/{k}": v for k, v in _files(group).items()}}
    keywords = {"tile_shape": (4, 8, 8), "device": "cpu", "progress": False}
    with pytest.raises(StitchsafeError, match="would write into while it reads it"):
        stitchsafe.predict(setup["model"], out / "raw", output=out, resume=True, **keywords)
    with pytest.raises(StitchsafeError, match="the root image.*--overwrite would delete"):
        stitchsafe.predict(
            setup["model"], out / "raw", output=out, overwrite=True, embeddings=False, **keywords
        )
    with pytest.raises(StitchsafeError, match="'instances'.*--overwrite would delete"):
        stitchsafe.predict(
            setup["model"], group / "instances" / "raw", output=group, overwrite=True,
            embeddings=False, **keywords,
        )  # fmt: skip
    assert {**_files(out), **{f"group/{k}": v for k, v in _files(group).items()}} == before


def test_lock_record_and_stale_records(tmp_path: Path) -> None:
    lock = OutputLock(str(tmp_path / "out.zarr"))
    assert Path(lock.path).parent == tmp_path and not (tmp_path / "out.zarr").exists()
    with lock.hold(command="first") as owner:
        assert owner.pid == os.getpid() and owner.host == HOST and owner.running() is True
        assert lock.holder() == owner
        # Another holder in this process (another file description) is refused.
        again = OutputLock(str(tmp_path / "." / "out.zarr"))
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()} on host {HOST}"):
            again.hold().__enter__()
    assert lock.holder() is None and os.path.exists(lock.path)
    # A record of a process that has exited is stale: taken over, with a note.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    dead = LockOwner(host=HOST, pid=int(gone.stdout), started="then", command="old")
    assert dead.running() is False
    Path(lock.record_path).write_text(json.dumps(dataclasses.asdict(dead)))
    notes: list[str] = []
    # A run that then fails for another reason says only that (one Error paragraph).
    with pytest.raises(RuntimeError), lock.hold(notify=notes.append):
        raise RuntimeError
    assert notes == [] and lock.holder() is None
    Path(lock.record_path).write_text(json.dumps(dataclasses.asdict(dead)))
    with lock.hold(notify=notes.append):
        pass
    assert len(notes) == 1 and f"pid {dead.pid}" in notes[0] and "took over" in notes[0]
    # A record of a live process on this host keeps the lock even with the flock free
    # (a file system that ignores flock); a reused pid (another start time) does not.
    alive = LockOwner.this_process("still running")
    Path(lock.record_path).write_text(json.dumps(dataclasses.asdict(alive)))
    with pytest.raises(OutputLockedError, match="still running.*delete"):
        lock.hold().__enter__()
    if os.path.exists("/proc/self/stat"):
        assert dataclasses.replace(alive, process_start="-1").running() is False
    assert dataclasses.replace(alive, host=HOST + "-elsewhere").running() is None


def test_a_lock_file_that_cannot_be_made_is_refused_plainly(setup: dict[str, Path]) -> None:
    blocker = setup["tmp"] / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out.zarr"
    with pytest.raises(StitchsafeError, match="cannot create the lock file .* can write to"):
        stitchsafe.predict(
            setup["model"], setup["input"], output=out, tile_shape=(4, 8, 8), device="cpu",
            progress=False,
        )  # fmt: skip
    assert blocker.read_text() == "not a folder"
