"""OMERO channel metadata of the embeddings: names from the roles, windows from the data,
only the foreground visible; read back and validated with ome-zarr-models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from nets import make_net
from ome_zarr_models.v04.omero import Omero  # the OMERO block is the same in 0.4 and 0.5
from ome_zarr_models.v05.image import Image

import stitchsafe
from stitchsafe.geometry import Box
from stitchsafe.io import ImageLayout, create_output, write_block, write_channel_metadata
from stitchsafe.models import save_checkpoint, unet_metadata

ROLES = ["embedding", "embedding", "foreground"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("omero")
    net, cfg = make_net("3d-d1-f2", out_channels=3)
    meta = unet_metadata(cfg, channel_roles=ROLES, labels={"threshold": 0.05, "min_size": 2})
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    zz, yy, xx = np.mgrid[:8, :40, :36]
    data = (1000 * (np.sin(zz / 2.0) * np.cos(yy / 3.0) * np.sin(xx / 4.0) > 0.1)).astype(np.uint16)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(8, 16, 16))
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


def _omero(image_dir: Path) -> tuple[dict, Image]:
    group = zarr.open_group(image_dir, mode="r")
    model = Image.from_zarr(group)  # the whole image stays valid OME-Zarr 0.5
    omero = group.attrs["ome"]["omero"]
    Omero.model_validate(omero)
    return omero, model


@pytest.mark.parametrize("pyramid", [True, False], ids=["pyramid", "no-pyramid"])
def test_predict_writes_channel_metadata(setup: dict[str, Path], pyramid: bool) -> None:
    out = setup["tmp"] / f"out-{pyramid}.zarr"
    stitchsafe.predict(
        setup["model"], setup["input"], output=out, tile_shape=(4, 8, 8), device="cpu",
        progress=False, labels=False, pyramid=pyramid,
    )  # fmt: skip
    omero, model = _omero(out)  # the container predict made is the image
    channels = omero["channels"]
    assert [c["label"] for c in channels] == ["embedding 0", "embedding 1", "foreground"]
    assert [c["active"] for c in channels] == [False, False, True]
    assert len({c["color"] for c in channels}) == 3
    # The windows come from the coarsest level (small here: read whole).
    coarsest = model.attributes.ome.multiscales[0].datasets[-1].path
    assert (coarsest != "0") == pyramid
    data = np.asarray(zarr.open_array(out / coarsest, mode="r"))
    for c, values in zip(channels, data):
        w = c["window"]
        assert w["min"] == pytest.approx(values.min())
        assert w["max"] == pytest.approx(values.max())
        assert w["start"] == pytest.approx(np.percentile(values, 0.5))
        assert w["end"] == pytest.approx(np.percentile(values, 99.5))
        assert w["min"] <= w["start"] < w["end"] <= w["max"]
    assert omero["rdefs"]["defaultZ"] == 4


def test_windows_sample_spread_chunks(tmp_path: Path) -> None:
    """A large image is sampled in whole chunks spread over it, within the budget."""
    layout = ImageLayout(shape=(64, 64), chunks=(8, 8), axes=("y", "x"), channels=2)
    spec = create_output(tmp_path / "o.zarr", layout)
    # Channel 0: each 8x8 chunk holds its own index (0..63); channel 1: constant 5.
    index = np.arange(64.0).reshape(8, 8).repeat(8, axis=0).repeat(8, axis=1)
    write_block(spec, Box((0, 0), (64, 64)), np.stack([index, np.full((64, 64), 5.0)]))
    omero = write_channel_metadata(spec, sample_items=2 * 64 * 4)  # four chunks
    first, constant = (c["window"] for c in omero["channels"])
    # Four chunks spread from the first to the last: values 0, 21, 42 and 63.
    assert (first["min"], first["max"]) == (0.0, 63.0)
    sample = np.repeat([0.0, 21.0, 42.0, 63.0], 64)
    assert first["start"] == pytest.approx(np.percentile(sample, 0.5))
    assert first["end"] == pytest.approx(np.percentile(sample, 99.5))
    # A constant channel gets a window of width 1 around its value.
    assert (constant["start"], constant["end"]) == (4.5, 5.5)
    # No roles: every channel is an embedding, only the first one is visible.
    assert [(c["label"], c["active"]) for c in omero["channels"]] == [
        ("embedding 0", True),
        ("embedding 1", False),
    ]
