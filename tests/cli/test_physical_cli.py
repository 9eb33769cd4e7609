"""Physical scale end to end: anisotropic OME-Zarr, OME-TIFF and ImageJ TIFF inputs through
the console script, every output image read back with ome-zarr-models (not stitchsafe)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from cli_helpers import assert_bad_input, run_cli
from click.testing import CliRunner
from ome_zarr.writer import write_multiscale
from ome_zarr_models.v05 import Image, ImageLabel

from stitchsafe.cli import cli
from stitchsafe.training import synthetic_cells

SHAPE = (12, 40, 40)
MICRONS = ["micrometer"] * 3
FROM_FILE = ([2.0, 0.5, 0.5], MICRONS)
CPU = ("--device", "cpu", "--no-progress")


def _cells() -> np.ndarray:
    """Synthetic nuclei like the bundled model's training data (something to label)."""
    return synthetic_cells(SHAPE, seed=1)[0]


def _ome_zarr(path: Path) -> Path:
    """Written by ome-zarr-py: scale (2, 0.5, 0.5) micrometer, translation (10, -3, 4.5)."""
    transforms = [
        {"type": "scale", "scale": [2.0, 0.5, 0.5]},
        {"type": "translation", "translation": [10.0, -3.0, 4.5]},
    ]
    with warnings.catch_warnings():  # ome-zarr-py deprecates per-level transformations
        warnings.simplefilter("ignore", DeprecationWarning)
        write_multiscale(
            [_cells()],
            zarr.open_group(str(path), mode="w"),
            axes="zyx",
            axes_units=dict.fromkeys("zyx", "micrometer"),
            coordinate_transformations=[transforms],
        )
    return path


def _ome_tiff(path: Path) -> Path:
    metadata: dict[str, Any] = {"axes": "ZYX"}
    for axis, size in {"X": 0.5, "Y": 0.5, "Z": 2.0}.items():
        metadata.update({f"PhysicalSize{axis}": size, f"PhysicalSize{axis}Unit": "µm"})
    tifffile.imwrite(path, _cells(), ome=True, metadata=metadata)
    return path


def _imagej_tiff(path: Path, spacing: float = 2.0) -> Path:
    metadata = {"spacing": spacing, "unit": "um", "axes": "ZYX"}
    tifffile.imwrite(path, _cells(), imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata=metadata)
    return path


INPUTS = {
    "ome-zarr": (_ome_zarr, "img.zarr", [10.0, -3.0, 4.5]),
    "ome-tiff": (_ome_tiff, "img.ome.tif", [0.0, 0.0, 0.0]),
    "imagej-tiff": (_imagej_tiff, "img.tif", [0.0, 0.0, 0.0]),
}


def written(path: Path) -> tuple[list[float], list[str | None], list[float]]:
    """Scale, units and translation of the spatial axes of the OME-Zarr image (or label
    image) at ``path``, read with ome-zarr-models; a channel axis is checked and left out."""
    group = zarr.open_group(str(path), mode="r")
    kind = ImageLabel if "image-label" in group.attrs.asdict()["ome"] else Image
    (ms,) = kind.from_zarr(group).ome_attributes.multiscales
    transforms = ms.datasets[0].coordinateTransformations
    scale = list(transforms[0].scale)
    n = len(scale)
    translation = list(transforms[1].translation) if len(transforms) > 1 else [0.0] * n
    units = [a.unit for a in ms.axes]
    if ms.axes[0].type == "channel":
        assert (scale[0], units[0], translation[0]) == (1.0, None, 0.0)
        scale, units, translation = scale[1:], units[1:], translation[1:]
    return scale, units, translation


def _predict(inp: Path, out: Path, *extra: str) -> dict[str, Any]:
    proc = run_cli("predict", "--input", str(inp), "--output", str(out), *CPU, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module", params=list(INPUTS))
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A full run and a labels-only run of the bundled model over one kind of input."""
    make, name, translation = INPUTS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    inp = make(tmp / name)
    full = _predict(inp, tmp / "out.zarr")
    labels_only = _predict(inp, tmp / "labels.zarr", "--no-embeddings")
    return {"input": inp, "tmp": tmp, "full": full, "labels_only": labels_only, "t": translation}


def test_every_output_image_carries_the_input_scale(runs: dict[str, Any]) -> None:
    expected = (*FROM_FILE, runs["t"])
    full, only = runs["full"], runs["labels_only"]
    images = [
        Path(full["output"]),  # the containers predict made are the images
        Path(full["output"], "labels/instances"),
        Path(only["output"]),
    ]
    for image in images:
        assert written(image) == expected, image
    assert full["objects"] > 0 and only["objects"] == full["objects"]
    for result in (full, only):
        assert result["physical"] == dict(zip(("scale", "units", "translation"), expected))
        assert result["plan"]["physical"] == result["physical"]


def _invoke(*args: str) -> Any:
    """``stitchsafe ARGS...`` in this process (click's runner): no start-up per call."""
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result


def test_info_shows_the_scale(runs: dict[str, Any]) -> None:
    expected = dict(zip(("scale", "units", "translation"), (*FROM_FILE, runs["t"])))
    for out in (runs["full"]["output"], runs["labels_only"]["output"]):
        result = _invoke("info", out, "--json")
        assert result.exit_code == 0, result.output
        info = json.loads(result.stdout)
        assert info["physical"] == expected and info["labels"][0]["physical"] == expected
    text = _invoke("info", runs["full"]["output"]).stdout
    line = next(t for t in text.splitlines() if "voxel size" in t)
    assert "2 x 0.5 x 0.5 micrometer" in line
    assert ("translation 10 x -3 x 4.5" in line) == any(runs["t"])


@pytest.mark.parametrize("runs", ["ome-zarr"], indirect=True)
def test_resume_with_another_voxel_size_is_refused(runs: dict[str, Any]) -> None:
    inp, out = str(runs["input"]), runs["full"]["output"]
    again = ("predict", "--input", inp, "--output", out, *CPU, "--resume")
    result = _invoke(*again, "--voxel-size", "1")
    assert result.exit_code == 2 and result.stderr.startswith("Error: cannot resume")
    assert "voxel size" in result.stderr
    # The same settings resume (nothing is left to do); the metadata is unchanged.
    result = _invoke(*again)
    assert result.exit_code == 0, result.output
    assert written(Path(out, "labels/instances")) == (*FROM_FILE, runs["t"])


def test_voxel_size_overrides(tmp_path: Path) -> None:
    inp = _ome_zarr(tmp_path / "img.zarr")
    result = _predict(inp, tmp_path / "out.zarr", "--voxel-size", "1,0.25,0.25", "--unit", "nm")
    expected = ([1.0, 0.25, 0.25], ["nanometer"] * 3, [10.0, -3.0, 4.5])
    for image in ("", "labels/instances"):
        assert written(tmp_path / "out.zarr" / image) == expected
    assert result["physical"]["scale"] == [1.0, 0.25, 0.25]
    # segment relabels with its own override; the embeddings keep theirs.
    out = str(tmp_path / "out.zarr")
    args = ("segment", "--input", out, "--overwrite", "--no-progress")
    segmented = _invoke(*args, "--voxel-size", "3", "--unit", "micron")
    assert segmented.exit_code == 0, segmented.output
    labels = tmp_path / "out.zarr" / "labels/instances"
    assert written(labels) == ([3.0] * 3, MICRONS, [10.0, -3.0, 4.5])
    assert written(tmp_path / "out.zarr") == expected


def test_plan_shows_the_scale(tmp_path: Path) -> None:
    inp = str(_imagej_tiff(tmp_path / "img.tif"))
    result = _invoke("plan", "--input", inp, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["physical"]["scale"] == [2.0, 0.5, 0.5]
    result = _invoke("plan", "--input", inp, "--device", "cpu", "--unit", "nm")
    assert result.exit_code == 0, result.output
    assert "voxel size         2 x 0.5 x 0.5 nanometer" in result.stdout


def _negative_ome_zarr(path: Path) -> Path:
    _ome_zarr(path)
    group = zarr.open_group(str(path), mode="r+")
    ome = group.attrs.asdict()["ome"]
    ome["multiscales"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [1.0, -0.5, 1.0]}
    ]
    group.attrs["ome"] = ome
    return path


MALFORMED = {
    "ome-zarr-negative-scale": (
        _negative_ome_zarr,
        (),
        ("malformed", "multiscales[0].coordinateTransformations[0].scale", "[1.0, -0.5, 1.0]"),
    ),
    "imagej-negative-spacing": (
        lambda path: _imagej_tiff(path, spacing=-2.0),
        (),
        ("z axis", "spacing=", "-2.0", "--voxel-size"),
    ),
    "voxel-size-zero": (_imagej_tiff, ("--voxel-size", "0,1,1"), ("--voxel-size '0,1,1'",)),
    "voxel-size-count": (
        _imagej_tiff,
        ("--voxel-size", "0.5,0.5"),
        ("--voxel-size gives 2 values", "3 spatial axes (z, y, x)"),
    ),
    "unit-unknown": (_imagej_tiff, ("--unit", "furlong"), ("--unit 'furlong'", "micrometer")),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_scale_exits_2(tmp_path: Path, case: str) -> None:
    make, extra, words = MALFORMED[case]
    inp, out = make(tmp_path / "img"), tmp_path / "o.zarr"
    args = ("predict", "--input", str(inp), "--output", str(out), *CPU, *extra)
    if case == "ome-zarr-negative-scale":  # one through the console script
        assert_bad_input(run_cli(*args), *words)
    else:
        result = _invoke(*args)
        assert result.exit_code == 2 and result.stderr.startswith("Error: "), result.output
        assert all(w in result.stderr for w in words), result.stderr
    assert not out.exists()
