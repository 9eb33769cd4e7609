"""Microscope files through bioio: Zeiss CZI files written with pylibCZIrw (the writer
bioio-czi installs), read lazily, run through the console script, equal to the same data
as zarr, with their voxel size. ND2 and LIF are recognised by signature only here: no
library writes them offline."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli
from nets import make_net
from ome_zarr_models.v05 import Image

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import InputSelection, open_volume
from stitchsafe.models import save_checkpoint, unet_metadata

pytest.importorskip("bioio_czi")
pyczi = pytest.importorskip("pylibCZIrw.czi")

CPU = ("--device", "cpu", "--no-progress", "--json", "--no-labels")

# name: (net, its overrides, data (C, Z, Y, X) without C or Z where absent, voxel size in
# micrometer (Z, Y, X), extra options)
LAYOUTS: dict[str, tuple[str, dict[str, Any], tuple[int, ...], tuple[float, ...], Any]] = {
    "2d": ("2d-d2-f3", {}, (40, 50), (1.0, 0.5, 0.5), ("--tile-shape", "18,9")),
    "2d-channels": ("2d-c3-d1", {}, (3, 20, 22), (1.0, 0.25, 0.25), ()),
    "3d": ("3d-d1-f2", {}, (6, 20, 24), (2.0, 0.5, 0.5), ("--tile-shape", "4,8,8")),
    "3d-channels": ("3d-d1-f2", {"in_channels": 2}, (2, 6, 20, 24), (1.5, 0.25, 0.25), ()),
}  # fmt: skip


def _data(shape: tuple[int, ...]) -> np.ndarray:
    return (np.random.default_rng(len(shape)).random(shape) * 1000).astype(np.uint16)


def write_czi(path: Path, data: np.ndarray, size_um: tuple[float, ...], **planes: int) -> Path:
    """``data`` ``(T, C, Z, Y, X)`` as a CZI file, one plane per subblock, with its voxel
    size (Z, Y, X) in micrometer (CZI metadata holds meters)."""
    z_um, y_um, x_um = size_um
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for t, c, z in np.ndindex(data.shape[:3]):
            plane = {"T": t, "C": c, "Z": z, **planes}
            czi.write(np.ascontiguousarray(data[t, c, z])[..., np.newaxis], plane=plane)
        czi.write_metadata(scale_x=x_um * 1e-6, scale_y=y_um * 1e-6, scale_z=z_um * 1e-6)
    return path


def _tczyx(data: np.ndarray, dims: int) -> np.ndarray:
    """``data`` (stored as the zarr reference: channels first when there are several) as
    ``(T, C, Z, Y, X)``."""
    with_c = data if data.ndim > dims else data[np.newaxis]
    with_z = with_c if dims == 3 else with_c[:, np.newaxis]
    return with_z[np.newaxis]


@pytest.fixture(scope="module", params=list(LAYOUTS))
def layout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One layout as CZI and as zarr, a model for it, and the zarr run's embeddings."""
    net_name, overrides, shape, size_um, extra = LAYOUTS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    net, cfg = make_net(net_name, **overrides)
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    data = _data(shape)
    czi = write_czi(tmp / "vol.czi", _tczyx(data, cfg.dims), size_um)
    zarr.create_array(tmp / "vol.zarr", data=data)
    args = ("--model", str(tmp / "model.pt"), *CPU, *extra)
    proc = run_cli("predict", "--input", str(tmp / "vol.zarr"), "--output", str(tmp / "z"), *args)
    assert proc.returncode == 0, proc.stderr
    reference = _embeddings(proc.stdout)[...]
    expected = list(size_um[3 - cfg.dims :]), ["micrometer"] * cfg.dims
    return dict(
        tmp=tmp, czi=czi, data=data, dims=cfg.dims, args=args, ref=reference, expected=expected
    )


def _embeddings(stdout: str) -> Any:
    """The embeddings array a ``predict --json`` run reports."""
    result = json.loads(stdout)
    return zarr.open_array(Path(result["output"]) / result["embeddings"], mode="r")


def _scale(image: Path) -> tuple[list[float], list[str | None]]:
    """Spatial scale and units of an OME-Zarr image, read with ome-zarr-models."""
    (ms,) = Image.from_zarr(zarr.open_group(str(image), mode="r")).ome_attributes.multiscales
    scale = list(ms.datasets[0].coordinateTransformations[0].scale)
    units = [a.unit for a in ms.axes]
    spatial = [i for i, a in enumerate(ms.axes) if a.type == "space"]
    return [scale[i] for i in spatial], [units[i] for i in spatial]


def test_reads_equal_the_data_with_the_voxel_size(layout: dict[str, Any]) -> None:
    data, dims = layout["data"], layout["dims"]
    whole = data if data.ndim > dims else data[np.newaxis]
    with open_volume(layout["czi"], spatial_dims=dims) as vol:
        assert (vol.kind, vol.shape, vol.channels) == ("czi", whole.shape[1:], len(whole))
        assert (list(vol.scale), list(vol.units)) == layout["expected"]
        inner = Box(tuple(s // 4 for s in vol.shape), tuple(s - 1 for s in vol.shape))
        index = tuple(slice(b, e) for b, e in zip(inner.begin, inner.end))
        np.testing.assert_array_equal(vol.read(inner), whole[(slice(None), *index)])


def test_predict_equals_the_zarr_run_and_carries_the_scale(layout: dict[str, Any]) -> None:
    out = layout["tmp"] / "czi-out.zarr"
    proc = run_cli("predict", "--input", str(layout["czi"]), "--output", str(out), *layout["args"])
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(_embeddings(proc.stdout)[...], layout["ref"])
    result = json.loads(proc.stdout)
    assert (
        _scale(Path(result["output"]) / result["embeddings"].rpartition("/")[0])
        == (layout["expected"])
    )
    assert result["physical"]["scale"] == layout["expected"][0]


def test_a_time_series_needs_a_timepoint(tmp_path: Path) -> None:
    data = _data((3, 1, 1, 16, 20))  # T, C, Z, Y, X
    czi = write_czi(tmp_path / "series.czi", data, (1.0, 0.5, 0.5))
    assert_bad_input(run_cli("plan", "--input", str(czi)), "series.czi", "t=3", "--timepoint")
    with open_volume(czi, spatial_dims=2, selection=InputSelection(timepoint=2)) as vol:
        assert vol.shape == (16, 20)
        np.testing.assert_array_equal(vol.read(Box((0, 0), (16, 20)))[0], data[2, 0, 0])


def test_scene_by_index_or_name_and_a_missing_one_listed(tmp_path: Path) -> None:
    data = _data((1, 1, 1, 12, 14))
    czi = write_czi(tmp_path / "scene.czi", data, (1.0, 0.5, 0.5))
    for key in ("0", "Image:0"):
        with open_volume(czi, key=key, spatial_dims=2) as vol:
            np.testing.assert_array_equal(vol.read(Box((0, 0), (12, 14)))[0], data[0, 0, 0])
    with pytest.raises(StitchsafeError, match=r"no scene '7'; its scenes are 0 \(Image:0\)"):
        open_volume(czi, key="7", spatial_dims=2)


def test_a_truncated_czi_file_is_refused_naming_it(tmp_path: Path) -> None:
    czi = write_czi(tmp_path / "cut.czi", _data((1, 1, 4, 16, 16)), (1.0, 0.5, 0.5))
    czi.write_bytes(czi.read_bytes()[:5000])
    proc = run_cli("plan", "--input", str(czi), "--device", "cpu")
    assert_bad_input(proc, "cut.czi", "Zeiss CZI", "truncated or corrupt")
    assert len(proc.stderr.strip().splitlines()) == 1  # no log lines of bioio's before it


def test_without_the_extra_the_message_says_what_to_install(tmp_path: Path) -> None:
    czi = write_czi(tmp_path / "a.czi", _data((1, 1, 1, 8, 8)), (1.0, 0.5, 0.5))
    # A package folder that cannot be imported, first on the path: bioio-czi is missing.
    hidden = tmp_path / "hidden" / "bioio_czi"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hidden")}
    proc = subprocess.run(
        [EXE, "plan", "--input", str(czi)], capture_output=True, text=True, env=env, timeout=300
    )
    assert_bad_input(proc, "a.czi", "Zeiss CZI", "bioio-czi", "pip install 'stitchsafe[bioio]'")


@pytest.mark.parametrize(
    "head,name,plugin",
    [(b"\xda\xce\xbe\x0a" + bytes(60), "Nikon ND2", "bioio-nd2"),
     (b"\x70\x00\x00\x00\x10\x00\x00\x00\x2a" + bytes(60), "Leica LIF", "bioio-lif")],
    ids=["nd2", "lif"],
)  # fmt: skip
def test_nd2_and_lif_are_recognised_by_signature(
    tmp_path: Path, head: bytes, name: str, plugin: str
) -> None:
    path = tmp_path / "image.bin"  # the name says nothing; the signature does
    path.write_bytes(head)
    with pytest.raises(StitchsafeError) as e:
        open_volume(path, spatial_dims=2)
    message = str(e.value)
    assert f"the input {str(path)!r} is a {name} file" in message or (
        f"cannot open the {name} file" in message
    )
    assert plugin in message or "truncated or corrupt" in message
