"""Running the installed console script as users do, and checking its bad-input contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXE = shutil.which("stitchsafe") or str(Path(sys.executable).with_name("stitchsafe"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``stitchsafe ARGS...`` as a subprocess (text output, five-minute limit)."""
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)


def assert_bad_input(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 2, one ``Error:`` paragraph naming ``words``, no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: ")
    for w in words:
        assert w.lower() in proc.stderr.lower(), proc.stderr
