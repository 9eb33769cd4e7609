"""``--axes`` for inputs that do not name their axes, and the layouts refused without it.

A channel-last (Y, X, C) TIFF is refused naming ``yxc``; with ``--axes yxc`` it gives
exactly what the same data stored (C, Y, X) gives. A 3-D image under a 2-D model is refused
as likely Z-as-channel. ``--axes`` applies to TIFF, HDF5, bare zarr and in-memory arrays;
an OME-Zarr image names its own axes and a contradicting ``--axes`` is refused.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner
from nets import make_net

import stitchsafe
from stitchsafe.cli import cli
from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import ImageLayout, InputSelection, create_output, open_volume
from stitchsafe.models import save_checkpoint, unet_metadata

RNG = np.random.default_rng(0)
YXC = (RNG.random((40, 36, 2)) * 1000).astype(np.uint16)  # channel-last, 2 channels


def _model(tmp: Path, name: str, **overrides: object) -> Path:
    net, cfg = make_net(name, **overrides)
    path = tmp / f"{name}-{overrides.get('in_channels', 1)}.pt"
    save_checkpoint(net, path, metadata=unet_metadata(cfg))
    return path


def _invoke(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert "Traceback" not in r.output
    return r.exit_code, r.output


def test_channel_last_tiff_is_refused_then_runs_with_axes_as_channel_first(
    tmp_path: Path,
) -> None:
    model = _model(tmp_path, "2d-d1-f2", in_channels=2)
    tifffile.imwrite(tmp_path / "yxc.tif", YXC)
    tifffile.imwrite(tmp_path / "cyx.tif", np.ascontiguousarray(YXC.transpose(2, 0, 1)))
    code, out = _invoke("plan", "--model", str(model), "--input", str(tmp_path / "yxc.tif"))
    assert code == 2 and "--axes yxc" in out and "(40, 36, 2)" in out, out
    runs = {}
    for name, axes in (("yxc", "yxc"), ("cyx", None)):
        runs[name] = stitchsafe.predict(
            model,
            tmp_path / f"{name}.tif",
            output=tmp_path / f"{name}.zarr",
            axes=axes,
            tile_shape=8,  # several tiles: each is transposed as it is read
            device="cpu",
            labels=False,
            pyramid=False,
            progress=False,
        )
    assert runs["yxc"].tiles > 1
    a, b = (
        np.asarray(zarr.open_array(f"{r.output}/{r.embeddings}", mode="r")) for r in runs.values()
    )
    assert a.shape[1:] == (40, 36)
    assert np.array_equal(a, b)  # exactly: the same data, read in another order


def test_a_3d_image_under_a_2d_model_is_refused_as_z_as_channel(tmp_path: Path) -> None:
    model = _model(tmp_path, "2d-d1-f2")
    tifffile.imwrite(tmp_path / "zyx.tif", (RNG.random((31, 32, 32)) * 100).astype(np.uint8))
    code, out = _invoke("plan", "--model", str(model), "--input", str(tmp_path / "zyx.tif"))
    assert code == 2, out
    assert "31 planes" in out and "axes zyx" in out and "--axes zyx" in out, out


@pytest.mark.parametrize(
    ("axes", "words"),
    [
        ("yxq", ["'q' is no axis letter"]),
        ("yyx", ["'y' appears more than once"]),
        ("ct", ["no spatial axis"]),
        ("zyxc", ["names 4 axes", "shape (40, 36, 2)"]),
        ("cyx", ["40 channel(s)", "expects 2"]),  # fine in form; the model's check refuses
    ],
    ids=["unknown-letter", "duplicate", "no-space", "wrong-length", "wrong-axes"],
)
def test_bad_axes_exit_2(tmp_path: Path, axes: str, words: list[str]) -> None:
    model = _model(tmp_path, "2d-d1-f2", in_channels=2)
    tifffile.imwrite(tmp_path / "yxc.tif", YXC)
    code, out = _invoke(
        "plan", "--model", str(model), "--input", str(tmp_path / "yxc.tif"), "--axes", axes
    )
    assert code == 2, out
    for w in words:
        assert w in out, out


def _stores(tmp: Path) -> dict[str, object]:
    """The channel-last data as a bare zarr array, an HDF5 dataset and an array in memory."""
    zarr.create_array(tmp / "yxc.zarr", data=YXC, chunks=(16, 16, 2))
    with h5py.File(tmp / "yxc.h5", "w") as f:
        f["raw"] = YXC
    return {"zarr": str(tmp / "yxc.zarr"), "hdf5": f"{tmp / 'yxc.h5'}/raw", "array": YXC}


@pytest.mark.parametrize("kind", ["zarr", "hdf5", "array"])
def test_axes_applies_to_zarr_hdf5_and_arrays(tmp_path: Path, kind: str) -> None:
    source = _stores(tmp_path)[kind]
    with pytest.raises(StitchsafeError, match="--axes yxc"):
        open_volume(source, spatial_dims=2)
    volume = open_volume(source, spatial_dims=2, selection=InputSelection(axes="yxc"))
    assert (volume.channels, volume.shape, volume.axes) == (2, (40, 36), ("y", "x"))
    box = Box((3, 5), (20, 31))
    assert np.array_equal(volume.read(box), YXC[3:20, 5:31].transpose(2, 0, 1))
    volume.close()


def test_ome_zarr_names_its_axes_and_a_contradicting_axes_is_refused(tmp_path: Path) -> None:
    layout = ImageLayout(shape=(40, 36), chunks=(16, 16), axes=("y", "x"), channels=2)
    spec = create_output(tmp_path / "img.zarr", layout, image="raw")
    with pytest.raises(StitchsafeError, match="names its axes itself"):
        open_volume(spec.group, key="raw", spatial_dims=2, selection=InputSelection(axes="yxc"))
    same = open_volume(spec.group, key="raw", spatial_dims=2, selection=InputSelection(axes="cyx"))
    assert (same.channels, same.shape) == (2, (40, 36))
    same.close()
