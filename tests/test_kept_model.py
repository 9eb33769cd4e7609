"""A model kept from ``stitchsafe.load_model``: loaded and probed once for many calls."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import zarr
from images import random_image, write_zarr
from nets import saved_model

import stitchsafe
from stitchsafe.errors import StitchsafeError, UnstitchableModelError


@pytest.fixture
def loads() -> list[str]:
    """The models loaded from files while the test runs (``stitchsafe.model``'s log)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("loaded "):
                lines.append(record.getMessage())

    logger = logging.getLogger("stitchsafe.model")
    handler, old = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_a_kept_model_is_loaded_and_probed_once(tmp_path: Path, loads: list[str]) -> None:
    path = saved_model("2d-d1-f2", "stitchsafe", metadata=False)  # geometry by probing
    model = stitchsafe.load_model(path)
    probes = list(model.loaded.probe_log)
    assert model.source == "probe" and probes and loads == [f"loaded {path} (stitchsafe)"]
    image = write_zarr(tmp_path / "in.zarr", random_image((40, 44)))
    tile = tuple(2 * p for p in model.geometry.period)
    planned = stitchsafe.plan(model, image, tile_shape=tile)
    kept = stitchsafe.predict(
        model, image, output=tmp_path / "kept.zarr", tile_shape=tile, progress=False
    )
    checked = stitchsafe.check(model, image, tile_shape=tile, picture=None)
    assert len(loads) == 1, loads  # three calls, no more loads
    assert model.loaded.probe_log == probes  # and no more probing
    assert planned.geometry_source == "probe" and checked.exact
    # the same run from the file: loaded and probed again, and the same result
    fresh = stitchsafe.predict(
        path, image, output=tmp_path / "fresh.zarr", tile_shape=tile, progress=False
    )
    assert len(loads) == 2
    a = zarr.open_array(f"{kept.output}/{kept.embeddings}", mode="r")[...]
    b = zarr.open_array(f"{fresh.output}/{fresh.embeddings}", mode="r")[...]
    np.testing.assert_array_equal(a, b)


def test_kept_geometry_flags_must_agree(tmp_path: Path) -> None:
    path = saved_model("2d-d1-f2", "stitchsafe", metadata=False)
    model = stitchsafe.load_model(path, pooling_factors=2, depth=1)
    assert model.source == "flags"
    image = write_zarr(tmp_path / "in.zarr", random_image((40, 44)))
    assert stitchsafe.plan(model, image, pooling_factors=2, depth=1).geometry_source == "flags"
    with pytest.raises(StitchsafeError, match="was loaded with --pooling-factor/--depth"):
        stitchsafe.plan(model, image, pooling_factors=2, depth=2)


def test_an_approximate_model_needs_allow_approximate(tmp_path: Path) -> None:
    path = saved_model("2d-same", "stitchsafe")
    with pytest.raises(UnstitchableModelError):
        stitchsafe.load_model(path)
    model = stitchsafe.load_model(path, allow_approximate=True)
    assert not model.exact and "approximate" in model.describe()
    image = write_zarr(tmp_path / "in.zarr", random_image((24, 24)))
    with pytest.raises(UnstitchableModelError):
        stitchsafe.plan(model, image)
    assert stitchsafe.plan(model, image, allow_approximate=True).approximate is not None
