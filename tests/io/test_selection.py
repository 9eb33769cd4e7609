"""--channel, --timepoint and --level on files written by ome-zarr-py, tifffile and h5py: the
selected data equals the numpy slice of what was written, with the level's own scale."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.writer import write_image

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import InputSelection, input_differences, input_identity, open_volume

RNG = np.random.default_rng(7)
TCZYX = RNG.integers(0, 60000, size=(3, 2, 4, 16, 12)).astype("uint16")


def _all(volume) -> np.ndarray:  # type: ignore[no-untyped-def]
    return volume.read(Box.from_shape(volume.shape))


def _ome_zarr(path: Path, data: np.ndarray = TCZYX, axes: str = "tczyx") -> Path:
    """Two levels written by ome-zarr-py: scale z 2, y/x 0.5 micrometer at level 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(
            data,
            zarr.open_group(str(path), mode="w"),
            axes=axes,
            scale_factors=(2,),
            scale={a: {"z": 2.0, "y": 0.5, "x": 0.5}.get(a, 1.0) for a in axes},
            axes_units=dict.fromkeys("zyx", "micrometer"),
        )
    return path


def _sel(**kw: object) -> InputSelection:
    return InputSelection(**kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ OME-Zarr


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        (dict(timepoint=2), TCZYX[2]),
        (dict(timepoint=1, channels=1), TCZYX[1, 1:2]),
        (dict(timepoint=0, channels="1,0"), TCZYX[0, ::-1]),
    ],
)
def test_ome_zarr_channel_and_timepoint(tmp_path: Path, chosen: dict, expected: np.ndarray) -> None:
    v = open_volume(_ome_zarr(tmp_path / "a.zarr"), spatial_dims=3, selection=_sel(**chosen))
    assert v.channels == expected.shape[0] and v.shape == expected.shape[1:]
    np.testing.assert_array_equal(_all(v), expected)
    np.testing.assert_array_equal(v.read(Box((1, 3, 2), (3, 9, 7))), expected[:, 1:3, 3:9, 2:7])
    assert v.physical.scale == (2.0, 0.5, 0.5)


def test_ome_zarr_level_has_its_own_scale(tmp_path: Path) -> None:
    path = _ome_zarr(tmp_path / "a.zarr")
    v = open_volume(path, spatial_dims=3, selection=_sel(level=1, timepoint=1, channels=0))
    written = zarr.open_array(str(path / "s1"), mode="r")[:]
    assert v.shape == (4, 8, 6) and v.array_path == "s1"
    np.testing.assert_array_equal(_all(v), written[1, 0:1])
    # ome-zarr-py's level 1: y and x halved, centred (half a level-0 voxel further on).
    assert v.physical.scale == (2.0, 1.0, 1.0)
    assert v.physical.translation == (0.0, 0.25, 0.25)
    assert v.physical.units == ("micrometer",) * 3


def test_ome_zarr_refusals_name_the_axes(tmp_path: Path) -> None:
    path = _ome_zarr(tmp_path / "a.zarr")
    with pytest.raises(StitchsafeError, match=r"t=3, c=2, z=4, y=16, x=12.*--timepoint \(0 to 2"):
        open_volume(path, spatial_dims=3)
    with pytest.raises(StitchsafeError, match=r"3 timepoint.*--timepoint 3 is past them"):
        open_volume(path, spatial_dims=3, selection=_sel(timepoint=3))
    with pytest.raises(StitchsafeError, match=r"has 2 channels .*asks for channel 2"):
        open_volume(path, spatial_dims=3, selection=_sel(timepoint=0, channels="0,2"))
    with pytest.raises(StitchsafeError, match=r"2 resolution level\(s\): 0 \(array 's0', shape "):
        open_volume(path, spatial_dims=3, selection=_sel(timepoint=0, level=2))
    zyx = _ome_zarr(tmp_path / "b.zarr", TCZYX[0, 0], "zyx")
    with pytest.raises(StitchsafeError, match=r"no time axis \(axes z=4, y=16, x=12\)"):
        open_volume(zyx, spatial_dims=3, selection=_sel(timepoint=0))
    with pytest.raises(StitchsafeError, match=r"no channel axis .*its one channel is 0"):
        open_volume(zyx, spatial_dims=3, selection=_sel(channels=1))
    # Channel 0 of a one-channel input is the input itself.
    v = open_volume(zyx, spatial_dims=3, selection=_sel(channels=0))
    np.testing.assert_array_equal(_all(v), TCZYX[0, 0][None])


def test_level_refused_on_a_bare_array(tmp_path: Path) -> None:
    zarr.create_array(str(tmp_path / "a.zarr"), data=TCZYX[0, 0])
    with pytest.raises(StitchsafeError, match="--level 1 .*a zarr array with one level only"):
        open_volume(tmp_path / "a.zarr", spatial_dims=3, selection=_sel(level=1))
    with pytest.raises(StitchsafeError, match="unnamed axes"):
        open_volume(tmp_path / "a.zarr", spatial_dims=3, selection=_sel(timepoint=0))


# ---------------------------------------------------------------------------------- TIFF


def test_ome_tiff_time_and_channels(tmp_path: Path) -> None:
    path = tmp_path / "t.ome.tif"
    tifffile.imwrite(path, TCZYX, ome=True, metadata={"axes": "TCZYX", "PhysicalSizeZ": 2.0})
    with pytest.raises(StitchsafeError, match=r"time axis of size 3 .*--timepoint"):
        open_volume(path, spatial_dims=3)
    v = open_volume(path, spatial_dims=3, selection=_sel(timepoint=2, channels=1))
    np.testing.assert_array_equal(_all(v), TCZYX[2, 1:2])
    assert v.physical.scale[0] == 2.0


def test_imagej_frames_are_time_not_channels(tmp_path: Path) -> None:
    # Before --timepoint, ImageJ frames without channels read as 3 channels.
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, TCZYX[:, 0], imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(StitchsafeError, match=r"time axis of size 3"):
        open_volume(path, spatial_dims=3)
    v = open_volume(path, spatial_dims=3, selection=_sel(timepoint=1))
    assert v.channels == 1
    np.testing.assert_array_equal(_all(v), TCZYX[1, 0][None])


def _pyramid_tiff(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A pyramidal OME-TIFF (sub-IFDs), 2 channels, 0.25 x 0.5 micrometer at level 0."""
    data = RNG.integers(0, 255, size=(2, 64, 48)).astype("uint8")
    low = np.ascontiguousarray(data[:, ::2, ::2])
    metadata = {"axes": "CYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.25}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(data, subifds=1, tile=(16, 16), metadata=metadata)
        tif.write(low, subfiletype=1, tile=(16, 16))
    return data, low


def test_pyramidal_tiff_level(tmp_path: Path) -> None:
    path = tmp_path / "p.ome.tif"
    data, low = _pyramid_tiff(path)
    v0 = open_volume(path, spatial_dims=2, selection=_sel(channels=1))
    np.testing.assert_array_equal(_all(v0), data[1:2])
    v1 = open_volume(path, spatial_dims=2, selection=_sel(level=1))
    assert v1.shape == (32, 24) and v1.channels == 2
    np.testing.assert_array_equal(_all(v1), low)
    np.testing.assert_array_equal(v1.read(Box((3, 5), (20, 17))), low[:, 3:20, 5:17])
    assert v1.physical.scale == (0.5, 1.0)
    assert v1.physical.units == ("micrometer", "micrometer")
    with pytest.raises(StitchsafeError, match=r"2 resolution level\(s\).*0 \(2 x 64 x 48\), 1"):
        open_volume(path, spatial_dims=2, selection=_sel(level=2))
    # Each level has its own identity: a resume on another level is refused by name.
    a, b = input_identity(v0).to_dict(), input_identity(v1).to_dict()
    assert any(d.startswith("the selection (--channel") for d in input_differences(a, b))


# ---------------------------------------------------------------------------------- HDF5


def test_hdf5_dimension_labels(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("raw", data=TCZYX[:, :, 0], chunks=(1, 1, 8, 6), compression="gzip")
        for i, label in enumerate("tcyx"):
            ds.dims[i].label = label
    v = open_volume(f"{path}/raw", spatial_dims=2, selection=_sel(timepoint=2, channels="1"))
    np.testing.assert_array_equal(_all(v), TCZYX[2, 1:2, 0])
    with pytest.raises(StitchsafeError, match=r"t=3, c=2, y=16, x=12.*--timepoint"):
        open_volume(f"{path}/raw", spatial_dims=2)
    with pytest.raises(StitchsafeError, match="--level 1 .*an HDF5 dataset with one level"):
        open_volume(path, key="raw", spatial_dims=2, selection=_sel(timepoint=0, level=1))


# ------------------------------------------------------------------------------ settings


def test_selection_settings_refuse_bad_values() -> None:
    assert InputSelection(channels=[2, 0]).channels == (2, 0)
    for bad in ("1,1", "a", "-1", 1.5, ""):
        with pytest.raises(StitchsafeError, match="--channel"):
            InputSelection(channels=bad)  # type: ignore[arg-type]
    with pytest.raises(StitchsafeError, match="--timepoint 'x' is not a timepoint"):
        InputSelection(timepoint="x")  # type: ignore[arg-type]
    assert InputSelection(timepoint="3").timepoint == 3  # type: ignore[arg-type]
