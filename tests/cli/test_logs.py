"""Progress in a batch log: a few plain lines, not a redrawn bar; a bar on a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import EXE

from stitchsafe.progress import LogProgress, duration_text, progress_bar


def test_log_lines_say_count_rate_and_time_left(captured: list[str]) -> None:
    with LogProgress(10, desc="tiles", unit="tile", every=0.0) as p:
        p.update(4)
        p.set_postfix(loss="0.5")
        p.update(6)
    assert captured[0].startswith("tiles: 4 of 10 tiles (40 %), ")
    assert "tile/s, about " in captured[0] and captured[0].endswith(" left")
    # The last line is written by close(), not by the update that reached the total.
    assert len(captured) == 2
    assert captured[1].startswith("tiles: 10 of 10 tiles done in ")
    assert captured[1].endswith("; loss=0.5")


def test_log_lines_are_rate_limited(captured: list[str]) -> None:
    with LogProgress(1000, desc="tiles", unit="tile", every=3600.0) as p:
        for _ in range(999):
            p.update(1)
    assert len(captured) == 1  # the end only
    assert captured[0].startswith("tiles: 999 of 1000 tiles stopped in ")


def test_disabled_progress_is_silent(captured: list[str]) -> None:
    with progress_bar(5, desc="tiles", unit="tile", enabled=False) as bar:
        bar.update(5)
    assert bar.n == 5 and captured == []


def test_durations_read_well() -> None:
    assert [duration_text(s) for s in (0.4, 59.6, 61, 3599, 3600, 86399)] == [
        "0 s",
        "1 min 00 s",
        "1 min 01 s",
        "59 min 59 s",
        "1 h 00 min",
        "23 h 59 min",
    ]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "vol.zarr"
    z = zarr.create_array(path, shape=(96, 96), dtype="float32", chunks=(96, 96))
    z[:] = np.random.default_rng(0).random((96, 96), dtype=np.float32)
    return path


def _predict(image: Path, out: Path, *extra: str, stderr: int) -> subprocess.Popen[bytes]:
    args = ["predict", "--input", str(image), "--output", str(out), "--tile-shape", "32"]
    return subprocess.Popen([EXE, *args, *extra], stdout=subprocess.DEVNULL, stderr=stderr)


def test_batch_log_has_a_few_plain_lines(image: Path, tmp_path: Path) -> None:
    log = tmp_path / "job.err"
    with open(log, "wb") as f:
        assert _predict(image, tmp_path / "out.zarr", stderr=f.fileno()).wait(300) == 0
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text, text
    lines = text.splitlines()
    assert len(lines) <= 12, text
    done = [line for line in lines if " tiles: 9 of 9 tiles done in " in line]
    assert len(done) == 1, text
    assert done[0][:4].isdigit() and done[0][10] == " ", done  # time-stamped
    assert any("labels" in line for line in lines), text  # the labelling stage reports too


def test_quiet_batch_log_has_no_progress(image: Path, tmp_path: Path) -> None:
    log = tmp_path / "job.err"
    with open(log, "wb") as f:
        proc = _predict(image, tmp_path / "out.zarr", "--quiet", stderr=f.fileno())
        assert proc.wait(300) == 0
    assert " tiles: " not in log.read_text()


def test_terminal_gets_a_redrawn_bar(image: Path, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    # A terminal of 24 rows and 100 columns (a bare pty has 0 columns: tqdm draws nothing).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = _predict(image, tmp_path / "out.zarr", stderr=follower)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(300) == 0
    finally:
        os.close(leader)
    text = seen.decode(errors="replace")
    assert "\r" in text and "tiles:" in text and "tiles: 9 of 9 tiles done" not in text, text


_STORE_LOG = """
import logging, sys
from stitchsafe.cli._logging import setup_logging
setup_logging(int(sys.argv[1]))
try:
    raise ConnectionError("no endpoint")
except ConnectionError:
    logging.getLogger("gcsfs").exception("_request out of retries on exception")
"""


@pytest.mark.parametrize(("verbosity", "shown"), [(0, False), (-1, False), (2, True)])
def test_store_library_tracebacks_are_kept_off_stderr_but_with_vv(
    verbosity: int, shown: bool
) -> None:
    # gcsfs logs each request that ran out of retries with its traceback, then raises: the
    # command's Error paragraph says it once; -vv shows the library's lines as well.
    proc = subprocess.run(
        [sys.executable, "-c", _STORE_LOG, str(verbosity)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert ("out of retries" in proc.stderr) is shown
    assert ("ConnectionError: no endpoint" in proc.stderr) is shown
