"""An input problem is reported as an input problem, with or without ``--model``.

Without ``--model`` stitchsafe picks a bundled model by the input's dimensionality; an
input that is no 2-D or 3-D image must then be told what it is (shape, axes, channels) and
what would fit, not to "pass --model". Only an image that is fine but has more channels
than the bundled models take is pointed at ``--channel`` and ``--model``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import assert_bad_input, run_cli

from stitchsafe.models import bundled_model


def _array(path: Path, shape: tuple[int, ...], names: Sequence[str] | None = None) -> str:
    """A zarr v3 array of ``shape`` (axes named ``names``, unnamed by default)."""
    data = np.arange(int(np.prod(shape)), dtype=np.uint16).reshape(shape)
    zarr.create_array(str(path), data=data, dimension_names=names)
    return str(path)


def _plan(path: str, *args: str) -> tuple[int, str, str]:
    proc = run_cli("plan", "--input", path, "--device", "cpu", "--json", *args)
    return proc.returncode, proc.stdout, proc.stderr


# (stored shape, axis names, words without --model, the model's dims, words with it)
CASES = {
    "one-axis": (
        (100,),
        None,
        ("one.zarr", "one-dimensional", "(100,)", "100 values", "not a 2-d or 3-d image"),
        2,
        ("one.zarr", "(100,)", "expected 2 spatial axes"),
    ),
    "five-unnamed-axes": (
        (2, 3, 4, 16, 16),
        None,
        ("many.zarr", "(2, 3, 4, 16, 16)", "not a 2-d or 3-d image", "unnamed", "name its axes"),
        3,
        ("many.zarr", "(2, 3, 4, 16, 16)", "expected 3 spatial axes"),
    ),
    "four-spatial-axes": (
        (2, 3, 16, 16),
        ("a", "z", "y", "x"),
        ("named.zarr", "a=2, z=3, y=16, x=16", "count as spatial", "name its axes"),
        3,
        ("named.zarr", "a=2, z=3, y=16, x=16", "expected 3 spatial axes"),
    ),
}
FILES = {
    "one-axis": "one.zarr",
    "five-unnamed-axes": "many.zarr",
    "four-spatial-axes": "named.zarr",
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_input_problem_is_named_with_and_without_model(tmp_path: Path, case: str) -> None:
    shape, names, words, dims, model_words = CASES[case]
    path = _array(tmp_path / FILES[case], shape, names)
    proc = run_cli("plan", "--input", path, "--device", "cpu")
    assert_bad_input(proc, *words)
    # The input is the problem: no bundled model is blamed, no --model suggested.
    assert "no bundled model fits" not in proc.stderr and "pass --model" not in proc.stderr
    proc = run_cli("plan", "--input", path, "--model", str(bundled_model(dims)), "--device", "cpu")
    assert_bad_input(proc, *model_words)
    assert "bundled model" not in proc.stderr


def test_unnamed_channels_name_the_reading_and_what_fits(tmp_path: Path) -> None:
    """(2, 3, 16, 16) unnamed reads as 2 channels of 3x16x16: fine, but not one channel."""
    path = _array(tmp_path / "four.zarr", (2, 3, 16, 16))
    proc = run_cli("plan", "--input", path, "--device", "cpu")
    assert_bad_input(
        proc,
        "no bundled model fits",
        "four.zarr",
        "(2, 3, 16, 16)",
        "has 2 channels of 3x16x16 voxels (z, y, x)",
        "--channel 0",
        "--model with a model for 2 channels",
        "unnamed",
    )
    # With the bundled 3-D model given, the same input problem: 2 channels, 1 expected.
    proc = run_cli("plan", "--input", path, "--model", str(bundled_model(3)), "--device", "cpu")
    assert_bad_input(proc, "four.zarr", "2 channels", "takes 1", "--axes tzyx", "--channel")
    # What the message suggests works: one channel, and the bundled 3-D model takes it.
    code, out, err = _plan(path, "--channel", "1")
    assert code == 0, err
    assert json.loads(out)["plan"]["model"]["path"].endswith("cells3d.pt")


def test_named_channels_that_no_bundled_model_takes(tmp_path: Path) -> None:
    path = _array(tmp_path / "rgb.zarr", (3, 16, 16), ("c", "y", "x"))
    proc = run_cli("plan", "--input", path, "--device", "cpu")
    assert_bad_input(
        proc, "no bundled model fits", "c=3, y=16, x=16", "3 channels of 16x16 voxels (y, x)"
    )
    assert "unnamed" not in proc.stderr  # named axes are no guess
    proc = run_cli("plan", "--input", path, "--model", str(bundled_model(2)), "--device", "cpu")
    assert_bad_input(proc, "rgb.zarr", "3 channel(s)", "expects 1")
    assert "bundled model" not in proc.stderr
