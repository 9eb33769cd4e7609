"""The examples that CI runs: they work as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import zarr

ROOT = Path(__file__).resolve().parents[1]


def test_pipeline_example(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "pipeline.py"),
            "--size",
            "96",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("geometry from metadata, exact"), proc.stdout
    assert sum(line.startswith("image ") for line in lines) == 3
    # the model was loaded once for the three images
    assert proc.stderr.count("stitchsafe.model: loaded ") == 1, proc.stderr
    kept = zarr.open_array(str(tmp_path / "image0-embeddings.zarr"), mode="r")
    assert kept.shape == (7, 96, 96) and np.isfinite(kept[...]).all()
