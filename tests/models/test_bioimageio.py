"""bioimage.io model packages: built here, checked by bioimageio.spec, run through the CLI.

The packages hold the same valid U-Net as TorchScript (a zip) and as a state dict with an
architecture source file (a folder); the stitched embeddings are compared with one
whole-volume forward pass of the original network. ``rdf.yaml`` is written as JSON (a
subset of YAML).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from nets import make_net

from stitchsafe.models.bioimageio import parse_description, read_description
from stitchsafe.cli import cli
from stitchsafe.engine import whole_volume_forward
from stitchsafe.errors import StitchsafeError
from stitchsafe.io import open_volume
from stitchsafe.models import LoadedModel, detect_format, load_model, save_torchscript
from stitchsafe.engine import Normalization, compute_normalization

pytest.importorskip("bioimageio.spec")  # the optional extra: stitchsafe[bioimageio]

EXE = shutil.which("stitchsafe") or str(Path(sys.executable).with_name("stitchsafe"))
NET = "2d-d1-f2"  # period 2, halo 8, valid sizes 18 + 2k
CHANNELS = ["embedding0", "embedding1", "foreground"]
ARCH_SOURCE = '''"""The package's architecture: stitchsafe's built-in valid U-Net."""

from stitchsafe.models import UNet, UNetConfig


def build_unet(**config):
    return UNet(UNetConfig(**config))
'''

UNBATCHED_SOURCE = (
    ARCH_SOURCE
    + '''

class UnbatchedUNet(UNet):
    """Takes (C, *spatial) and returns (C_out, *spatial'): for packages without a batch axis."""

    def __init__(self, **config):
        super().__init__(UNetConfig(**config))

    def forward(self, x):
        return super().forward(x[None])[0]
'''
)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def space_axis(name: str, smallest: int) -> dict[str, Any]:
    return {"type": "space", "id": name, "size": {"min": smallest, "step": 2}}


def out_axis(name: str, offset: int, halo: int = 0) -> dict[str, Any]:
    size = {"tensor_id": "raw", "axis_id": name, "offset": offset}
    axis = {"type": "space", "id": name, "size": size}
    return {**axis, "halo": halo} if halo else axis


def write_package(
    folder: Path,
    net: torch.nn.Module,
    *,
    weights: dict[str, Any],
    preprocessing: list[dict[str, Any]],
    channels: list[str],
    offset: int = -16,
    halo: int = 0,
    smallest: int = 18,
    prepare: Callable[[np.ndarray], np.ndarray] = lambda x: x,
) -> Path:
    """A bioimage.io 0.5 package: rdf.yaml, README, .npy test tensors (weights already there).

    ``prepare`` is the package's preprocessing, to compute the test output.
    """
    x = (
        np.random.default_rng(1).random((1, 1, smallest + 2, smallest + 2)).astype(np.float32)
        * 1000
    )
    with torch.no_grad():
        y = net(torch.from_numpy(prepare(x).astype(np.float32))).numpy()
    np.save(folder / "test_input.npy", x)
    np.save(folder / "test_output.npy", y)
    (folder / "README.md").write_text("# A test U-Net\n\nValid convolutions; stitch-safe.\n")
    rdf = {
        "format_version": "0.5.4",
        "type": "model",
        "name": "stitchsafe test U-Net",
        "description": "a small valid-convolution U-Net for tests",
        "authors": [{"name": "stitchsafe tests"}],
        "cite": [{"text": "Rumberger et al. ICCV 2021", "doi": "10.1109/ICCVW54120.2021.00067"}],
        "license": "BSD-3-Clause",
        "documentation": "README.md",
        "inputs": [
            {
                "id": "raw",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["raw"]},
                    space_axis("y", smallest),
                    space_axis("x", smallest),
                ],
                "test_tensor": {"source": "test_input.npy"},
                "data": {"type": "float32"},
                "preprocessing": preprocessing,
            }
        ],
        "outputs": [
            {
                "id": "embeddings",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": channels},
                    out_axis("y", offset, halo),
                    out_axis("x", offset, halo),
                ],
                "test_tensor": {"source": "test_output.npy"},
            }
        ],
        "weights": weights,
        # the default absolute tolerance (1e-3) must stay below 1% of the test output
        "config": {"bioimageio": {"reproducibility_tolerance": [{"absolute_tolerance": 1e-6}]}},
    }
    (folder / "rdf.yaml").write_text(json.dumps(rdf, indent=1))
    return folder


def torch_version() -> str:
    return torch.__version__.split("+")[0]


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
    return target


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """TorchScript zip, state-dict folder, same-padded zip, and the volume they run on."""
    root = tmp_path_factory.mktemp("bioimageio")
    net, cfg = make_net(NET, out_channels=len(CHANNELS))
    ts = root / "ts"
    ts.mkdir()
    save_torchscript(net, ts / "weights.pt")
    scale_range = {"id": "scale_range", "kwargs": {"min_percentile": 1.0, "max_percentile": 99.8}}
    tsw = {"source": "weights.pt", "sha256": _sha256(ts / "weights.pt")}
    write_package(
        ts,
        net,
        weights={"torchscript": {**tsw, "pytorch_version": torch_version()}},
        preprocessing=[scale_range],
        channels=CHANNELS,
        prepare=lambda x: (x - np.percentile(x, 1)) / np.ptp(np.percentile(x, [1, 99.8])),
    )
    sd = root / "sd"
    sd.mkdir()
    torch.save(net.state_dict(), sd / "weights.pt")
    (sd / "unet_arch.py").write_text(ARCH_SOURCE)
    arch = {"source": "unet_arch.py", "callable": "build_unet", "kwargs": json.loads(cfg.to_json())}
    sdw = {"source": "weights.pt", "architecture": arch, "pytorch_version": torch_version()}
    zmuv = {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["channel", "y", "x"]}}
    linear = {"id": "scale_linear", "kwargs": {"gain": 2.0, "offset": -0.5}}
    write_package(
        sd,
        net,
        weights={"pytorch_state_dict": sdw},
        preprocessing=[zmuv, linear],
        channels=["a", "b", "c"],
        prepare=lambda x: (x - x.mean()) / x.std() * 2.0 - 0.5,
    )
    same_net, _ = make_net("2d-same")
    same = root / "same"
    same.mkdir()
    save_torchscript(same_net, same / "weights.pt")
    write_package(
        same,
        same_net,
        weights={"torchscript": {"source": "weights.pt", "pytorch_version": torch_version()}},
        preprocessing=[],
        channels=["c0"],
        offset=0,
        halo=4,
        smallest=16,
    )
    data = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    vol = root / "vol.zarr"
    zarr.create_array(vol, shape=data.shape, chunks=(16, 16), dtype=data.dtype)[...] = data
    return {
        "zip": zip_folder(ts, root / "ts.zip"),
        "folder": sd,
        "same": zip_folder(same, root / "same.zip"),
        "net": net,
        "geometry": cfg.geometry(),
        "data": data,
        "input": vol,
        "root": root,
    }


def test_spec_accepts_the_packages_offline(
    packages: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bioimageio.spec import InvalidDescr, load_description

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access while reading a package: {args}")

    # a tripwire: any connection attempt fails the test
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for key in ("zip", "folder", "same"):
        descr = load_description(packages[key], perform_io_checks=True, format_version="latest")
        assert not isinstance(descr, InvalidDescr), descr.get_reason()
        assert descr.validation_summary.status in ("valid-format", "passed")
    assert detect_format(packages["zip"]) == detect_format(packages["folder"]) == "bioimageio"
    model = load_model(packages["zip"])
    meta = model.metadata
    assert model.format == "bioimageio" and (model.dims, model.channels_in) == (2, 1)
    assert meta["period"] == [2, 2] and meta["halo"] == [[8, 8], [8, 8]]
    assert meta["valid_input"] == {"min": [18, 18], "step": [2, 2]}
    assert meta["normalization"] == {"method": "percentile", "percentiles": [1.0, 99.8]}
    assert meta["channel_roles"] == ["embedding", "embedding", "foreground"]
    assert meta["bioimageio"]["output_channels"] == CHANNELS
    folder = load_model(packages["folder"], trust=True)
    assert folder.metadata["normalization"] == {"method": "zscore"}
    # the folder is hashed for --resume: importing its source must not write into it
    assert not (packages["folder"] / "__pycache__").exists()


def _statistics(packages: dict[str, Any], method: str, **kwargs: Any) -> Normalization:
    """The whole-volume normalisation predict computes for ``method``."""
    volume = open_volume(packages["input"], spatial_dims=2)
    try:
        return compute_normalization(volume, method=method, **kwargs)
    finally:
        volume.close()


def _oracle(packages: dict[str, Any], transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    net = LoadedModel("original", "stitchsafe", packages["net"], None, 2, 1)
    data = packages["data"][None]
    return whole_volume_forward(data, net, packages["geometry"], transform=transform)


def _predict(packages: dict[str, Any], model: Path, out: Path, *extra: str) -> dict[str, Any]:
    proc = run_cli(
        "predict",
        "--model",
        str(model),
        "--input",
        str(packages["input"]),
        "--output",
        str(out),
        "--tile-shape",
        "8,10",
        "--device",
        "cpu",
        "--json",
        *extra,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _assert_exact(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_torchscript_zip_predict_equals_whole_volume(packages: dict[str, Any]) -> None:
    out = packages["root"] / "out-zip.zarr"
    d = _predict(packages, packages["zip"], out)
    assert d["tiles"] == 25 and d["plan"]["period"] == [2, 2]
    assert d["normalization"]["method"] == "percentile"
    assert d["normalization"]["percentiles"] == [1.0, 99.8]
    assert d["labels"] is not None and d["label_params"]["channel_roles"] == [
        "embedding",
        "embedding",
        "foreground",
    ]
    norm = _statistics(packages, "percentile", percentiles=(1, 99.8))
    got = np.asarray(zarr.open_array(out / "0", mode="r"))
    _assert_exact(got, _oracle(packages, norm))


def test_state_dict_folder_predict_equals_whole_volume(packages: dict[str, Any]) -> None:
    out = packages["root"] / "out-folder.zarr"
    d = _predict(packages, packages["folder"], out, "--no-labels", "--trust-model")
    assert d["normalization"]["method"] == "zscore" and d["tiles"] == 25
    norm = _statistics(packages, "zscore")
    got = np.asarray(zarr.open_array(out / "0", mode="r"))
    # scale_linear (gain 2, offset -0.5) runs after the whole-volume z-score
    _assert_exact(got, _oracle(packages, lambda x: norm(x) * 2.0 - 0.5))
    assert not (packages["folder"] / "__pycache__").exists()


def _refused(model: Path, volume: Path, out: Path) -> str:
    """Run predict in-process; assert exit 2, one paragraph, nothing written; the message."""
    args = ["predict", "--model", str(model), "--input", str(volume), "--output", str(out)]
    r = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert r.exit_code == 2, r.output
    message = r.output.strip()
    assert message.startswith("Error:") and "\n" not in message and "Traceback" not in message
    assert not out.exists()
    return message


def test_same_padded_package_refused(packages: dict[str, Any]) -> None:
    message = _refused(packages["same"], packages["input"], packages["root"] / "out-same.zarr")
    assert "cannot be tiled and stitched exactly" in message and "same-padded" in message


def _edit(folder: Path, change: Callable[[dict[str, Any], Path], None]) -> None:
    rdf = json.loads((folder / "rdf.yaml").read_text())
    change(rdf, folder)
    (folder / "rdf.yaml").write_text(json.dumps(rdf))


def _missing_weights(rdf: dict[str, Any], folder: Path) -> None:
    (folder / "weights.pt").unlink()


def _time_axis(rdf: dict[str, Any], folder: Path) -> None:
    rdf["inputs"][0]["axes"].insert(1, {"type": "time", "size": 1})
    size = {"tensor_id": "raw", "axis_id": "time"}
    rdf["outputs"][0]["axes"].insert(1, {"type": "time", "size": size})
    for name in ("test_input.npy", "test_output.npy"):
        np.save(folder / name, np.load(folder / name)[:, None])


def _per_row_statistics(rdf: dict[str, Any], folder: Path) -> None:
    rdf["inputs"][0]["preprocessing"] = [
        {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["x"]}}
    ]


def _unimportable(rdf: dict[str, Any], folder: Path) -> None:
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    del arch["source"]
    arch["import_from"] = "stitchsafe_no_such_module"


def _invalid(rdf: dict[str, Any], folder: Path) -> None:
    del rdf["name"]


@pytest.mark.parametrize(
    "change, words",
    [
        (_missing_weights, ["'weights.pt' is missing from the package"]),
        (_time_axis, ["'time' axis", "batch, channel and 1-3 space axes"]),
        (_per_row_statistics, ["'zero_mean_unit_variance'", "separately along ['y']"]),
        (_unimportable, ["'stitchsafe_no_such_module' cannot be imported", "install"]),
        (_invalid, ["not a valid bioimage.io model description", "name"]),
    ],
    ids=["missing-weights", "time-axis", "per-row-statistics", "unimportable", "invalid"],
)
def test_bad_package_exit_2(
    packages: dict[str, Any], tmp_path: Path, change: Callable[..., None], words: list[str]
) -> None:
    folder = tmp_path / "pkg"
    shutil.copytree(packages["folder"], folder)
    _edit(folder, change)
    package = zip_folder(folder, tmp_path / "pkg.zip")
    message = _refused(package, packages["input"], tmp_path / "out.zarr")
    for word in words:
        assert word in message


def test_axes_and_import_from(
    packages: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # x before y and no batch axis; the architecture comes from an importable module
    folder = tmp_path / "pkg"
    shutil.copytree(packages["folder"], folder)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "stitchsafe_test_arch.py").write_text(UNBATCHED_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))

    def change(rdf: dict[str, Any], folder: Path) -> None:
        for t in (*rdf["inputs"], *rdf["outputs"]):
            t["axes"] = [t["axes"][1], t["axes"][3], t["axes"][2]]
        for name in ("test_input.npy", "test_output.npy"):
            np.save(folder / name, np.load(folder / name)[0].swapaxes(1, 2))
        arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
        arch["import_from"] = "stitchsafe_test_arch"
        arch["callable"] = "UnbatchedUNet"
        del arch["source"]

    _edit(folder, change)
    model = load_model(folder, trust=True)
    assert model.metadata["bioimageio"]["input_axes"] == ["channel", "x", "y"]
    x = torch.rand(2, 1, 20, 22)
    with torch.no_grad():
        want = packages["net"](x.transpose(2, 3) * 2.0 - 0.5).transpose(2, 3)
    assert torch.allclose(model(x), want, atol=1e-5)


def _pre(*steps: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(rdf: dict[str, Any]) -> None:
        rdf["inputs"][0]["preprocessing"] = list(steps)

    return change


def _post(*steps: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(rdf: dict[str, Any]) -> None:
        rdf["outputs"][0]["postprocessing"] = list(steps)

    return change


def _two_channels(rdf: dict[str, Any]) -> None:
    rdf["inputs"][0]["axes"][1]["channel_names"] = ["a", "b"]
    rdf["inputs"][0]["preprocessing"] = [
        {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}
    ]


ZMUV = {"id": "zero_mean_unit_variance"}


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            _pre({"id": "scale_range", "kwargs": {"min_percentile": 5, "max_percentile": 95}}),
            ({"method": "percentile", "percentiles": [5.0, 95.0]}, [], []),
        ),
        (
            _pre(
                {"id": "fixed_zero_mean_unit_variance", "kwargs": {"mean": 10.0, "std": 2.0}},
                {"id": "sigmoid"},
            ),
            ({"method": "none"}, ["affine", "sigmoid"], []),
        ),
        (
            _pre(ZMUV, {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}}),
            ({"method": "zscore"}, ["clip"], []),
        ),
        (_post({"id": "sigmoid"}), ({"method": "zscore"}, ["affine"], ["sigmoid"])),
        (_pre({"id": "scale_linear", "kwargs": {"gain": 2.0}}, ZMUV), "after 'scale_linear'"),
        (_pre({"id": "softmax", "kwargs": {"axis": "x"}}), "over space it mixes voxels"),
        (_pre({"id": "clip", "kwargs": {"min_percentile": 1.0}}), "clips at percentiles"),
        (_pre({"id": "ensure_dtype", "kwargs": {"dtype": "uint8"}}), "casts the input to uint8"),
        (_post({"id": "scale_range"}), "needs statistics of the output"),
        (_two_channels, "normalises each of its 2 input channels separately"),
    ],
    ids=[
        "scale-range",
        "fixed-zmuv-sigmoid",
        "zscore-clip",
        "post-sigmoid",
        "fixed-before-statistics",
        "softmax-over-space",
        "percentile-clip",
        "cast-to-uint8",
        "post-statistics",
        "per-channel-statistics",
    ],
)
def test_processing_mapping(
    packages: dict[str, Any],
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None],
    expected: Any,
) -> None:
    rdf = json.loads((packages["folder"] / "rdf.yaml").read_text())
    change(rdf)
    (tmp_path / "rdf.yaml").write_text(json.dumps(rdf))
    descr = read_description(tmp_path / "rdf.yaml", where="test package")
    if isinstance(expected, str):
        with pytest.raises(StitchsafeError, match=re.escape(expected)):
            parse_description(descr)
        return
    spec = parse_description(descr)
    norm, pre, post = expected
    assert spec.normalization == norm
    assert [op.kind for op in spec.preprocessing] == pre
    assert [op.kind for op in spec.postprocessing] == post


def test_format_0_4_package(packages: dict[str, Any], tmp_path: Path) -> None:
    # older packages are converted to 0.5 by bioimageio.spec (0.4 offsets count twice)
    folder = tmp_path / "v04"
    shutil.copytree(packages["zip"].with_suffix(""), folder)
    scale_range = {"mode": "per_sample", "axes": "yx", "min_percentile": 1, "max_percentile": 99}
    rdf = json.loads((folder / "rdf.yaml").read_text())
    for key in ("inputs", "outputs", "weights", "config", "format_version"):
        rdf.pop(key)
    rdf.update(
        format_version="0.4.10",
        timestamp="2024-01-01T00:00:00",
        inputs=[
            {
                "name": "raw",
                "axes": "bcyx",
                "data_type": "float32",
                "shape": {"min": [1, 1, 18, 18], "step": [0, 0, 2, 2]},
                "preprocessing": [{"name": "scale_range", "kwargs": scale_range}],
            }
        ],
        outputs=[
            {
                "name": "embeddings",
                "axes": "bcyx",
                "data_type": "float32",
                "shape": {
                    "reference_tensor": "raw",
                    "scale": [1, 1, 1, 1],
                    "offset": [0, 1, -8, -8],
                },
            }
        ],
        test_inputs=["test_input.npy"],
        test_outputs=["test_output.npy"],
        weights={"torchscript": {"source": "weights.pt", "pytorch_version": torch_version()}},
    )
    (folder / "rdf.yaml").write_text(json.dumps(rdf))
    meta = load_model(folder).metadata
    assert meta["halo"] == [[8, 8], [8, 8]] and meta["valid_input"]["min"] == [18, 18]
    assert meta["normalization"] == {"method": "percentile", "percentiles": [1.0, 99.0]}
    assert meta["channels_out"] == 3
