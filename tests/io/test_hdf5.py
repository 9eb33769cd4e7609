"""HDF5 inputs: files written with h5py (chunked, gzip), read lazily, run through the console
script as ``file.h5/dataset`` and with ``--input-key``, equal to the same data as zarr."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import zarr
from cli_helpers import assert_bad_input, run_cli
from nets import make_net
from ome_zarr_models.v05 import Image

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import done_mask_path, input_identity, open_volume, read_padded
from stitchsafe.models import save_checkpoint, unet_metadata

CPU = ("--device", "cpu", "--no-progress", "--json", "--no-labels")
KEY = "volumes/raw"

# name: (net, stored shape, chunks, attributes, expected scale and units, extra options)
LAYOUTS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any], Any, Any]] = {
    "2d-cremi": (
        "2d-d2-f3", (40, 50), (16, 16), {"resolution": [8, 4]},
        ([8.0, 4.0], ["nanometer"] * 2), ("--tile-shape", "18,9"),
    ),
    "3d-ilastik": (
        "3d-d1-f2", (6, 20, 24), (4, 8, 8), {"element_size_um": [2.0, 0.5, 0.5]},
        ([2.0, 0.5, 0.5], ["micrometer"] * 3), (),
    ),
    "2d-channels": (
        "2d-c3-d1", (3, 20, 22), (1, 8, 8), {"element_size_um": [1.0, 0.25, 0.25]},
        ([0.25, 0.25], ["micrometer"] * 2), (),
    ),
}  # fmt: skip


def _data(shape: tuple[int, ...]) -> np.ndarray:
    return (np.random.default_rng(len(shape)).random(shape) * 1000).astype(np.uint16)


def _write_h5(path: Path, data: np.ndarray, chunks: tuple[int, ...], **attrs: Any) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("volumes/other", data=np.zeros((2, 2), "uint8"))
        ds = f.create_dataset(KEY, data=data, chunks=chunks, compression="gzip")
        ds.attrs.update(attrs)
    return path


@pytest.fixture(scope="module", params=list(LAYOUTS))
def layout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One layout as HDF5 and as zarr, a model for it, and the zarr run's embeddings."""
    net_name, shape, chunks, attrs, expected, extra = LAYOUTS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    net, cfg = make_net(net_name)
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    data = _data(shape)
    h5 = _write_h5(tmp / "vol.h5", data, chunks, **attrs)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=chunks)
    args = ("--model", str(tmp / "model.pt"), *CPU, *extra)
    proc = run_cli("predict", "--input", str(tmp / "vol.zarr"), "--output", str(tmp / "z"), *args)
    assert proc.returncode == 0, proc.stderr
    reference = zarr.open_array(tmp / "z" / "0", mode="r")[...]
    dims = cfg.dims
    return dict(tmp=tmp, h5=h5, data=data, dims=dims, args=args, ref=reference, expected=expected)


def _scale(image: Path) -> tuple[list[float], list[str | None]]:
    """Spatial scale and units of an OME-Zarr image, read with ome-zarr-models."""
    (ms,) = Image.from_zarr(zarr.open_group(str(image), mode="r")).ome_attributes.multiscales
    scale = list(ms.datasets[0].coordinateTransformations[0].scale)
    units = [a.unit for a in ms.axes]
    spatial = [i for i, a in enumerate(ms.axes) if a.type == "space"]
    return [scale[i] for i in spatial], [units[i] for i in spatial]


def test_reads_equal_the_data_with_padding_at_the_borders(layout: dict[str, Any]) -> None:
    data, dims = layout["data"], layout["dims"]
    whole = data if data.ndim > dims else data[np.newaxis]
    for vol in (
        open_volume(f"{layout['h5']}/{KEY}", spatial_dims=dims),
        open_volume(layout["h5"], key=KEY, spatial_dims=dims),
    ):
        with vol:
            assert (vol.kind, vol.shape, vol.channels) == ("hdf5", whole.shape[1:], len(whole))
            assert list(vol.scale) == layout["expected"][0]
            inner = Box(tuple(s // 4 for s in vol.shape), tuple(s - 1 for s in vol.shape))
            index = tuple(slice(b, e) for b, e in zip(inner.begin, inner.end))
            np.testing.assert_array_equal(vol.read(inner), whole[(slice(None), *index)])
            outer = Box(tuple([-3] * dims), tuple(s + 5 for s in vol.shape))
            widths = [(0, 0)] + [(3, 5)] * dims
            expected = np.pad(whole, widths, mode="reflect").astype(np.float32)
            np.testing.assert_array_equal(read_padded(vol, outer, mode="reflect"), expected)


def test_predict_equals_the_zarr_run_and_carries_the_scale(layout: dict[str, Any]) -> None:
    out = layout["tmp"] / "h5-path.zarr"
    inp = f"{layout['h5']}/{KEY}"
    proc = run_cli("predict", "--input", inp, "--output", str(out), *layout["args"])
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(zarr.open_array(out / "0")[...], layout["ref"])
    assert _scale(out) == layout["expected"]


def test_input_key_and_resume_after_a_tile_is_marked_undone(tmp_path: Path) -> None:
    net, cfg = make_net("2d-d2-f3")
    save_checkpoint(net, tmp_path / "model.pt", metadata=unet_metadata(cfg))
    h5 = _write_h5(tmp_path / "vol.h5", _data((40, 50)), (16, 16), resolution=[8, 4])
    args = ("--model", str(tmp_path / "model.pt"), *CPU, "--tile-shape", "18,9")
    out = tmp_path / "out.zarr"
    by_key = ("--input", str(h5), "--input-key", KEY, "--output", str(out), *args)
    proc = run_cli("predict", *by_key)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tiles"] > 1
    full = zarr.open_array(out / "0")[...]
    zarr.open_array(done_mask_path(out, ""), mode="r+")[1, 2] = 0
    image = zarr.open_group(out, mode="r+")
    image.attrs["stitchsafe"] = {**image.attrs["stitchsafe"], "complete": False}
    # Resumed through the other addressing: the same input, the same identity.
    proc = run_cli("predict", "--input", f"{h5}/{KEY}", "--output", str(out), *args, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tiles"] == 1
    np.testing.assert_array_equal(zarr.open_array(out / "0")[...], full)
    proc = run_cli("info", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    # Another dataset of the same shape in the same file is another input.
    with h5py.File(h5, "a") as f:
        f.create_dataset("volumes/copy", data=f[KEY][...] + 1, chunks=(16, 16))
    other = ("--input", f"{h5}/volumes/copy", "--output", str(out))
    proc = run_cli("predict", *other, *args, "--resume")
    assert_bad_input(proc, "cannot resume", "volumes/copy")


def test_identity_names_the_file_and_dataset(tmp_path: Path) -> None:
    h5 = _write_h5(tmp_path / "vol.h5", _data((40, 50)), (16, 16))
    a = input_identity(open_volume(f"{h5}/{KEY}", spatial_dims=2))
    b = input_identity(open_volume(h5, key=KEY, spatial_dims=2))
    assert a == b and (a.key, a.kind, a.chunks) == (KEY, "hdf5", (16, 16))
    assert a.path == str(h5.resolve()) and len(a.sample_boxes) == 12  # 3 x 4 chunks
    with h5py.File(h5, "a") as f:
        f[KEY][20, 20] += 1  # inside the sampled chunk (1, 1)
    assert input_identity(open_volume(h5, key=KEY, spatial_dims=2)) != a


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bad-h5")
    good = _write_h5(tmp / "vol.h5", _data((32, 32)), (8, 8))
    truncated = tmp / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _write_h5(tmp / "badattr.h5", _data((32, 32)), (8, 8), element_size_um="big")
    corrupt = _write_h5(tmp / "corrupt.h5", _data((32, 32)), (8, 8))
    with h5py.File(corrupt, "r") as f:
        chunk = f[KEY].id.get_chunk_info(5)  # the gzip stream of one chunk, overwritten
    with open(corrupt, "r+b") as f:
        f.seek(chunk.byte_offset)
        f.write(b"\xff" * chunk.size)
    net, cfg = make_net("2d-d1-f2")
    save_checkpoint(net, tmp / "model.pt", metadata=unet_metadata(cfg))
    return {"tmp": tmp, "good": good, "truncated": truncated, "corrupt": corrupt,
            "badattr": tmp / "badattr.h5"}  # fmt: skip


def _bad_run(bad: dict[str, Path], inp: str, *extra: str, model: bool = True) -> Any:
    options = ("--model", str(bad["tmp"] / "model.pt")) if model else ()
    out = ("--output", str(bad["tmp"] / "o.zarr"))
    return run_cli("predict", "--input", inp, *extra, *out, *options, *CPU)


@pytest.mark.parametrize("model", [True, False], ids=["model", "bundled"])
def test_a_missing_dataset_names_what_the_file_has(bad: dict[str, Path], model: bool) -> None:
    proc = _bad_run(bad, f"{bad['good']}/volumes/nope", model=model)
    assert_bad_input(
        proc, "no dataset 'volumes/nope'", "volumes/raw (32x32 uint16)", "volumes/other"
    )
    assert "no bundled model fits" not in proc.stderr


def test_a_group_is_not_a_dataset(bad: dict[str, Path]) -> None:
    proc = _bad_run(bad, str(bad["good"]), "--input-key", "volumes")
    assert_bad_input(proc, "'volumes'", "is a group, not a dataset", "raw (32x32 uint16)")
    proc = _bad_run(bad, str(bad["good"]))
    assert_bad_input(proc, "hdf5 file", "--input-key", "volumes/raw")


def test_a_truncated_file_is_named(bad: dict[str, Path]) -> None:
    proc = _bad_run(bad, f"{bad['truncated']}/{KEY}")
    assert_bad_input(proc, str(bad["truncated"]), "truncated or corrupt")
    proc = _bad_run(bad, f"{bad['corrupt']}/{KEY}")
    assert_bad_input(proc, "cannot read", f"dataset '{KEY}'", str(bad["corrupt"]), "corrupt")


def test_a_malformed_voxel_size_names_the_attribute(bad: dict[str, Path]) -> None:
    proc = _bad_run(bad, str(bad["badattr"]), "--input-key", KEY)
    assert_bad_input(proc, "element_size_um", "'big'", "--voxel-size")
    assert proc.stderr.count("\n\n") == 0


def test_without_h5py_the_error_says_how_to_install_it(
    bad: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    with pytest.raises(StitchsafeError, match=r"pip install stitchsafe\[hdf5\]"):
        open_volume(bad["good"], key=KEY, spatial_dims=2)


def test_an_hdf5_file_is_told_by_its_signature_not_its_name(bad: dict[str, Path]) -> None:
    renamed = bad["tmp"] / "volume.data"
    shutil.copy(bad["good"], renamed)
    with open_volume(f"{renamed}/{KEY}", spatial_dims=2) as vol:
        assert vol.kind == "hdf5" and vol.shape == (32, 32)
