"""Running the installed console script as users do, and checking its bad-input contract."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

EXE = shutil.which("stitchsafe") or str(Path(sys.executable).with_name("stitchsafe"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``stitchsafe ARGS...`` as a subprocess (text output, five-minute limit)."""
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)


# A progress line of a stage that ran before the input was found bad (a batch log's lines).
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [^\n]*\n")


TOOK_OVER = "note: took over the lock on "


def assert_bad_input(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 2, one ``Error:`` paragraph naming ``words``, no traceback.

    Only the time-stamped progress lines of stages that ran before may come first (the
    halo search of approximate mode, say), and the note that a stale lock left by a killed
    run was taken over (the output is checked, lock included, before the settings are
    compared with the interrupted run's); nothing else.
    """
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    rest = proc.stderr
    if rest.startswith(TOOK_OVER):
        rest = rest.split("\n", 1)[1]
    while (line := LOG_LINE.match(rest)) is not None:
        rest = rest[line.end() :]
    assert rest.startswith("Error: "), proc.stderr
    for w in words:
        assert w.lower() in rest.lower(), proc.stderr
