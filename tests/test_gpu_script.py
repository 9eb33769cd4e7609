"""``benchmarks/gpu.sh`` runs where a GPU is lent for minutes only, so a step broken by a
change elsewhere would cost a whole lease: here every step runs on the CPU, with the small
network on tiny volumes (``GPU_SH_SMOKE=1``), and each must leave its table and its JSON
without a note that it failed or ran out of time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = [
    "profile-bf16",
    "profile-bf16-tiles",
    "reference-bf16",
    "reference-fp32",
    "reference-labels",
    "cpu-e2e",
]


def test_every_step_of_the_gpu_script_runs(tmp_path: Path) -> None:
    out, archive = tmp_path / "out", tmp_path / "gpu.tgz"
    env = {**os.environ, "GPU_SH_SMOKE": "1", "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", "benchmarks/gpu.sh", str(out), str(archive)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    for name in STEPS:
        table = (out / f"{name}.txt").read_text()
        assert "exit " not in table and "Traceback" not in table, table
        assert json.loads((out / f"{name}.json").read_text())
    tests = (out / "tests.txt").read_text()
    assert "skipped" in tests and "exit " not in tests, tests  # the CUDA tests, skipped here
    with tarfile.open(archive) as tar:  # packed after the last step too
        assert {f"./{name}.json" for name in STEPS} <= set(tar.getnames())
