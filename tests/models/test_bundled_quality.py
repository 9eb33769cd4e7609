"""The bundled models segment held-out synthetic cells (the figures in the README).

Held out: seed 1 of :func:`stitchsafe.training.synthetic_cells` (the models were trained on
seed 0), the labels ``predict`` writes with each model's stored defaults and no flags.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

import stitchsafe
from stitchsafe.models import bundled_model
from stitchsafe.labels import average_precision
from stitchsafe.training import synthetic_cells


# (volume shape of the README's held-out figure, the AP@0.5 required): the README's
# figures are 0.955 (2-D) and 0.922 (3-D); 0.9 is the project's promise for both.
@pytest.mark.parametrize("shape, required", [((512, 512), 0.9), ((48, 128, 128), 0.9)])
def test_bundled_model_reaches_the_promised_ap(
    tmp_path: Path, shape: tuple[int, ...], required: float
) -> None:
    image, truth = synthetic_cells(shape, seed=1)
    zarr.create_array(tmp_path / "held-out.zarr", data=image, chunks=(64,) * len(shape))
    result = stitchsafe.predict(
        None, tmp_path / "held-out.zarr", output=tmp_path / "out.zarr", progress=False
    )
    assert result.plan.model_path == str(bundled_model(len(shape)))
    assert result.labels is not None
    labels = np.asarray(zarr.open_array(tmp_path / "out.zarr" / result.labels, mode="r"))
    ap = average_precision(truth, labels)
    assert ap >= required, f"AP@0.5 {ap:.3f} on {int(truth.max())} held-out objects"
