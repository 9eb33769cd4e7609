"""The bundled models' card (``stitchsafe/models/weights/README.md``) says what their
checkpoints hold: features, period, halo, iterations and window, read from the metadata."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stitchsafe.models import load_model

WEIGHTS = Path(__file__).parents[2] / "stitchsafe" / "models" / "weights"


def _rows() -> dict[str, list[str]]:
    """The card's table: file name -> its cells."""
    rows = {}
    for line in (WEIGHTS / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and re.fullmatch(r"`cells[23]d\.pt`", cells[0]):
            rows[cells[0].strip("`")] = cells
    return rows


def _xs(values: list[int]) -> str:
    return " x ".join(str(v) for v in values)


@pytest.mark.parametrize("name", ["cells2d.pt", "cells3d.pt"])
def test_the_model_card_agrees_with_the_checkpoint(name: str) -> None:
    cells = _rows()[name]
    meta = load_model(WEIGHTS / name, device="cpu").metadata
    training = meta["training"]
    features, period, halo, trained = cells[3], cells[4], cells[5], cells[6]
    assert int(features) == meta["architecture"]["config"]["features"], cells
    assert period == _xs(meta["period"]), cells
    per_axis = [int(v) for v in halo.split("/")]  # "20" (every axis) or "12 / 20 / 20"
    expected = [lo for lo, _ in meta["halo"]]
    assert per_axis * (len(expected) if len(per_axis) == 1 else 1) == expected, cells
    assert f"{training['iterations']} iterations" in trained, (trained, training["iterations"])
    assert f"window {_xs(training['window'])}" in trained, (trained, training["window"])
