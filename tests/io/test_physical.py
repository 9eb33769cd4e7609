"""Physical metadata read from every input format: files written by ome-zarr-py,
ome-zarr-models and tifffile, opened with :func:`stitchsafe.io.open_volume`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from images import random_image, write_zarr
from ome_zarr.writer import write_image, write_multiscale
from ome_zarr_models.v05 import Image
from ome_zarr_models.v05.axes import Axis
from pydantic_zarr.v3 import ArraySpec

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import (
    ImageLayout,
    PhysicalScale,
    PhysicalSettings,
    canonical_unit,
    create_output,
    open_volume,
)
from stitchsafe.models import bundled_model, model_for_input

DATA = random_image((12, 20, 24))
MICRONS = ("micrometer",) * 3


def ome_zarr_with_translation(path: Path, data: np.ndarray = DATA) -> str:
    """An OME-Zarr 0.5 image written by ome-zarr-py: scale (2, 0.5, 0.5) micrometer and a
    translation (10, -3, 4.5) on its one level."""
    root = zarr.open_group(str(path), mode="w")
    transforms = [
        {"type": "scale", "scale": [2.0, 0.5, 0.5]},
        {"type": "translation", "translation": [10.0, -3.0, 4.5]},
    ]
    with warnings.catch_warnings():  # ome-zarr-py deprecates per-level transformations
        warnings.simplefilter("ignore", DeprecationWarning)
        write_multiscale(
            [data],
            root,
            axes="zyx",
            axes_units=dict.fromkeys("zyx", "micrometer"),
            coordinate_transformations=[transforms],
        )
    return str(path)


def _edit_ome(path: str, edit: Any) -> None:
    """Change an OME-Zarr image's ``multiscales[0]`` in place (``edit(multiscale)``)."""
    group = zarr.open_group(path, mode="r+")
    ome = group.attrs.asdict()["ome"]
    edit(ome["multiscales"][0])
    group.attrs["ome"] = ome


# --------------------------------------------------------------------------- OME-Zarr


def test_ome_zarr_level_transforms(tmp_path: Path) -> None:
    v = open_volume(ome_zarr_with_translation(tmp_path / "img.zarr"), spatial_dims=3)
    assert v.physical == PhysicalScale((2, 0.5, 0.5), MICRONS, (10, -3, 4.5))
    assert (v.scale, v.units) == ((2.0, 0.5, 0.5), MICRONS)


def test_ome_zarr_pyramid_reads_level_0(tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "img.zarr"), mode="w")
    write_image(
        DATA,
        root,
        scale_factors=[{"z": 1, "y": 2, "x": 2}],
        axes="zyx",
        scale={"z": 2.0, "y": 0.5, "x": 0.5},
        axes_units=dict.fromkeys("zyx", "nanometer"),
    )
    v = open_volume(tmp_path / "img.zarr", spatial_dims=3)
    assert v.physical == PhysicalScale((2, 0.5, 0.5), ("nanometer",) * 3)


def test_ome_zarr_global_transforms_compose(tmp_path: Path) -> None:
    """The multiscale-wide transformations apply after the level's own."""
    spec = ArraySpec.from_array(DATA, dimension_names=("z", "y", "x"))
    image = Image.new(
        array_specs=[spec],
        paths=["0"],
        axes=[Axis(name=n, type="space", unit="micrometer") for n in "zyx"],
        scales=[[1.0, 1.0, 1.0]],
        translations=[[1.0, 2.0, 3.0]],
        name="raw",
        global_scale=[2.0, 0.5, 0.5],
        global_translation=[10.0, 0.0, 0.0],
    )
    image.to_zarr(zarr.storage.LocalStore(str(tmp_path / "img.zarr")), path="")
    zarr.open_array(str(tmp_path / "img.zarr" / "0"), mode="r+")[...] = DATA
    v = open_volume(tmp_path / "img.zarr", spatial_dims=3)
    assert v.physical == PhysicalScale((2, 0.5, 0.5), MICRONS, (12, 1, 1.5))
    np.testing.assert_array_equal(v.read(Box.from_shape(v.shape))[0], DATA)


def test_channel_and_time_axes_are_left_out(tmp_path: Path) -> None:
    data = random_image((1, 2, 12, 20, 24))
    root = zarr.open_group(str(tmp_path / "img.zarr"), mode="w")
    write_image(
        data,
        root,
        scale_factors=[],
        axes="tczyx",
        scale={"t": 1.0, "c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5},
        axes_units={"t": "second", **dict.fromkeys("zyx", "micrometer")},
    )
    v = open_volume(tmp_path / "img.zarr", spatial_dims=3)
    assert v.channels == 2 and v.physical == PhysicalScale((2, 0.5, 0.5), MICRONS)


MALFORMED = {
    "global-scale-negative": (
        lambda ms: ms.update(coordinateTransformations=[{"type": "scale", "scale": [1, -1, 1]}]),
        "multiscales[0].coordinateTransformations[0].scale is [1, -1, 1]",
    ),
    "translation-wrong-length": (
        lambda ms: ms["datasets"][0]["coordinateTransformations"][1].update(translation=[1, 2]),
        "datasets[0].coordinateTransformations[1].translation has 2 values for 3 axes",
    ),
    "unknown-unit": (
        lambda ms: ms["axes"][1].update(unit="furlong"),
        "multiscales[0].axes[1].unit",
    ),
}


@pytest.mark.parametrize("variant", list(MALFORMED))
def test_malformed_physical_metadata_names_the_field(tmp_path: Path, variant: str) -> None:
    path = ome_zarr_with_translation(tmp_path / "img.zarr")
    edit, field = MALFORMED[variant]
    _edit_ome(path, edit)
    with pytest.raises(StitchsafeError, match="img.zarr") as error:
        open_volume(path, spatial_dims=3)
    assert field in str(error.value)


def test_unit_override_accepts_an_unknown_unit(tmp_path: Path) -> None:
    path = ome_zarr_with_translation(tmp_path / "img.zarr")
    _edit_ome(path, lambda ms: ms["axes"][1].update(unit="furlong"))
    v = open_volume(path, spatial_dims=3, physical=PhysicalSettings(unit="nm"))
    assert v.physical == PhysicalScale((2, 0.5, 0.5), ("nanometer",) * 3, (10, -3, 4.5))


# --------------------------------------------------------------------------- TIFF


def test_ome_tiff_physical_sizes(tmp_path: Path) -> None:
    sizes = {"X": 0.5, "Y": 0.5, "Z": 2.0}
    metadata: dict[str, Any] = {"axes": "ZYX"}
    for axis, size in sizes.items():
        metadata.update({f"PhysicalSize{axis}": size, f"PhysicalSize{axis}Unit": "µm"})
    tifffile.imwrite(tmp_path / "a.ome.tif", DATA, ome=True, metadata=metadata)
    v = open_volume(tmp_path / "a.ome.tif", spatial_dims=3)
    assert v.physical == PhysicalScale((2, 0.5, 0.5), MICRONS)


def test_ome_tiff_negative_size_is_refused(tmp_path: Path) -> None:
    metadata = {"axes": "ZYX", "PhysicalSizeX": -0.5, "PhysicalSizeXUnit": "nm"}
    tifffile.imwrite(tmp_path / "a.ome.tif", DATA, ome=True, metadata=metadata)
    with pytest.raises(StitchsafeError, match=r"x axis .*PhysicalSizeX\) is -0.5"):
        open_volume(tmp_path / "a.ome.tif", spatial_dims=3)
    fixed = PhysicalSettings(voxel_size="2,0.5,0.5")
    v = open_volume(tmp_path / "a.ome.tif", spatial_dims=3, physical=fixed)
    assert v.physical == PhysicalScale((2, 0.5, 0.5), (None, None, "nanometer"))


@pytest.mark.parametrize("unit", ["um", "micron", "\\u00B5m"], ids=["um", "micron", "escaped-mu"])
def test_imagej_calibration(tmp_path: Path, unit: str) -> None:
    metadata = {"spacing": 2.0, "unit": unit, "axes": "ZYX", "xorigin": 8.0}
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, DATA, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata=metadata)
    v = open_volume(path, spatial_dims=3)
    # ImageJ's origin is in pixels: the pixel at x = 0 is the ninth, so voxel 0 lies at -4.
    assert v.physical == PhysicalScale((2, 0.5, 0.5), MICRONS, (0, 0, -4))


def test_uncalibrated_imagej_has_the_default(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "ij.tif", DATA, imagej=True, metadata={"axes": "ZYX"})
    assert open_volume(tmp_path / "ij.tif", spatial_dims=3).physical == PhysicalScale.default(3)


def test_imagej_bad_spacing_is_refused(tmp_path: Path) -> None:
    metadata = {"spacing": -2.0, "unit": "um", "axes": "ZYX"}
    tifffile.imwrite(tmp_path / "ij.tif", DATA, imagej=True, metadata=metadata)
    field = r"\(spacing= in its ImageJ description\) is -2.0"
    with pytest.raises(StitchsafeError, match=rf"z axis .*{field}.*--voxel-size"):
        open_volume(tmp_path / "ij.tif", spatial_dims=3)


@pytest.mark.parametrize(
    "unit,expected",
    [("CENTIMETER", PhysicalScale((0.25, 0.5), ("centimeter",) * 2)), ("NONE", None)],
    ids=["centimeter", "no-unit"],
)
def test_resolution_tags(tmp_path: Path, unit: str, expected: Any) -> None:
    """Pixels per unit (x, y) = (2, 4): a voxel is 0.25 (y) by 0.5 (x) of the unit."""
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, DATA[0], resolution=(2.0, 4.0), resolutionunit=unit)
    want = expected if expected is not None else PhysicalScale.default(2)
    assert open_volume(path, spatial_dims=2).physical == want


# --------------------------------------------------------------------------- bare arrays, overrides


def test_bare_array_has_the_default(tmp_path: Path) -> None:
    v = open_volume(write_zarr(tmp_path / "a.zarr", DATA), spatial_dims=3)
    assert v.physical == PhysicalScale((1, 1, 1), (None,) * 3, (0, 0, 0))


@pytest.mark.parametrize(
    "voxel_size,unit,expected",
    [
        ("3", None, PhysicalScale((3, 3, 3), MICRONS, (10, -3, 4.5))),
        ((1, 0.25, 0.25), "nm", PhysicalScale((1, 0.25, 0.25), ("nanometer",) * 3, (10, -3, 4.5))),
        (None, "pixel", PhysicalScale((2, 0.5, 0.5), None, (10, -3, 4.5))),
    ],
    ids=["one-for-all", "per-axis-and-unit", "no-unit"],
)
def test_overrides(tmp_path: Path, voxel_size: Any, unit: Any, expected: PhysicalScale) -> None:
    path = ome_zarr_with_translation(tmp_path / "img.zarr")
    physical = PhysicalSettings(voxel_size=voxel_size, unit=unit)
    assert open_volume(path, spatial_dims=3, physical=physical).physical == expected


@pytest.mark.parametrize(
    "voxel_size,unit,message",
    [
        ("1,2", None, "--voxel-size gives 2 values but .* has 3 spatial axes"),
        ("0,1,1", None, "--voxel-size '0,1,1' is not one positive number"),
        ("nan", None, "--voxel-size 'nan' is not"),
        (None, "furlong", "--unit 'furlong' is not a unit of length"),
    ],
    ids=["count", "zero", "nan", "unit"],
)
def test_bad_overrides(tmp_path: Path, voxel_size: Any, unit: Any, message: str) -> None:
    path = write_zarr(tmp_path / "a.zarr", DATA)
    with pytest.raises(StitchsafeError, match=message):
        open_volume(path, spatial_dims=3, physical=PhysicalSettings(voxel_size, unit))


@pytest.mark.parametrize(
    "text,unit",
    [("µm", "micrometer"), ("μm", "micrometer"), ("Microns", "micrometer"), ("nm", "nanometer"),
     ("Mm", "megameter"), ("mm", "millimeter"), ("Å", "angstrom"), ("inches", "inch"),
     ("pixel", None), ("", None)],
)  # fmt: skip
def test_canonical_unit(text: str, unit: str | None) -> None:
    assert canonical_unit(text) == unit


# --------------------------------------------------------------------------- written


def test_written_image_round_trips_through_ome_zarr_models(tmp_path: Path) -> None:
    physical = PhysicalScale((2, 0.5, 0.5), MICRONS, (10, -3, 4.5))
    layout = ImageLayout(
        shape=(12, 20, 24),
        chunks=(12, 20, 24),
        axes=("z", "y", "x"),
        channels=2,
        scale=physical.scale,
        units=physical.units,
        translation=physical.translation,
    )
    create_output(tmp_path / "out.zarr", layout, image="emb")
    image = Image.from_zarr(zarr.open_group(str(tmp_path / "out.zarr" / "emb"), mode="r"))
    (ms,) = image.ome_attributes.multiscales
    scale, translation = ms.datasets[0].coordinateTransformations
    assert scale.scale == [1.0, 2.0, 0.5, 0.5]
    assert translation.translation == [0.0, 10.0, -3.0, 4.5]
    assert [a.unit for a in ms.axes] == [None, *MICRONS]
    # And stitchsafe reads back what it wrote.
    meta = json.loads((tmp_path / "out.zarr" / "emb" / "zarr.json").read_text())
    assert meta["attributes"]["ome"]["multiscales"][0]["axes"][0] == {
        "name": "c",
        "type": "channel",
    }


def test_bundled_model_lookup_applies_the_overrides(tmp_path: Path) -> None:
    # without --model the input is opened to pick the bundled model: --unit rescues there too
    path = ome_zarr_with_translation(tmp_path / "img.zarr")
    _edit_ome(path, lambda ms: ms["axes"][1].update(unit="furlong"))
    with pytest.raises(StitchsafeError, match="axes\\[1\\].unit"):
        model_for_input(path)
    assert model_for_input(path, physical=PhysicalSettings(unit="nm")) == bundled_model(3)
