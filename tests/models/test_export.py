"""``stitchsafe export --format bioimageio``: a checkpoint as a bioimage.io package and back.

One checkpoint (the small valid U-Net, saved with its metadata as ``stitchsafe train``
saves it) is exported once through the console script; the package is validated offline
by ``bioimageio.spec``, read back by stitchsafe, run through ``predict`` beside the
checkpoint, and its declared sizes compared with the geometry stitchsafe measures.
"""

from __future__ import annotations

import json
import socket
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from cli_helpers import assert_bad_input, run_cli
from images import random_image, write_zarr
from nets import make_net

from stitchsafe.errors import GeometryMismatchError, StitchsafeError
from stitchsafe.models import (
    LoadedModel,
    export_bioimageio,
    load_model,
    probe_geometry,
    resolve_geometry,
    save_checkpoint,
    save_torchscript,
    unet_metadata,
)
from stitchsafe.models.bioimageio import config_metadata, read_description
from stitchsafe.training import synthetic_cells, train

spec = pytest.importorskip("bioimageio.spec")  # the optional extra: stitchsafe[bioimageio]

NET = "2d-d1-f2"  # period 2, halo 8, valid sizes 18 + 2k, as the trained model
ROLES = ["embedding", "embedding", "foreground"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A checkpoint ``train`` wrote (a few steps), and its package written by the console script."""
    tmp = tmp_path_factory.mktemp("export")
    img, lab = synthetic_cells((48, 56), radius=(3.0, 5.0), seed=2)
    ckpt = tmp / "model.pt"
    trained = train(
        img,
        lab,
        output=ckpt,
        pooling_factors=[(2, 2)],
        features=4,
        embedding_dims=2,
        iterations=3,
        window=(6, 10),
        batch_size=2,
        progress=False,
        device="cpu",
    )
    meta = trained.metadata
    package = tmp / "model.zip"
    proc = run_cli("export", "--format", "bioimageio", str(ckpt), str(package), "--json")
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(package) as zf:
        rdf = json.loads(zf.read("rdf.yaml"))
    return {
        "tmp": tmp,
        "ckpt": ckpt,
        "package": package,
        "rdf": rdf,
        "meta": meta,
        "result": json.loads(proc.stdout),
    }


def test_package_validates_offline(
    exported: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access while validating a package: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)  # any connection fails the test
    descr = spec.load_description(
        exported["package"], perform_io_checks=True, format_version="latest"
    )
    assert not isinstance(descr, spec.InvalidDescr), descr.get_reason()
    assert descr.validation_summary.status in ("valid-format", "passed")
    assert exported["result"]["status"] in ("valid-format", "passed")
    rdf = exported["rdf"]
    assert set(rdf["weights"]) == {"torchscript", "pytorch_state_dict"}
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert arch["callable"] == "build_unet" and arch["kwargs"]["pooling_factors"] == [[2, 2]]
    assert rdf["config"]["stitchsafe"] == exported["meta"]  # the whole metadata, unchanged
    assert rdf["covers"] == ["cover.png"] and rdf["documentation"] == "README.md"
    with zipfile.ZipFile(exported["package"]) as zf:
        assert zf.read("cover.png").startswith(b"\x89PNG\r\n\x1a\n")
        assert "Valid input sizes" in zf.read("README.md").decode()


def test_preprocessing_is_the_whole_volume_normalisation(exported: dict[str, Any]) -> None:
    (tin,) = exported["rdf"]["inputs"]
    steps = {s["id"]: s.get("kwargs", {}) for s in tin["preprocessing"]}
    kw = steps["scale_range"]
    assert (kw["min_percentile"], kw["max_percentile"]) == (1.0, 99.8)
    assert sorted(kw["axes"]) == ["channel", "x", "y"]  # all channels and space axes jointly
    model = load_model(exported["package"])
    assert model.metadata["normalization"] == {"method": "percentile", "percentiles": [1.0, 99.8]}


def test_declared_sizes_agree_with_the_measured_geometry(exported: dict[str, Any]) -> None:
    ckpt = load_model(exported["ckpt"])
    declared, source = resolve_geometry(ckpt)
    assert source == "metadata"
    # measured without the metadata: the network's behaviour alone
    bare = LoadedModel(str(exported["ckpt"]), "stitchsafe", ckpt.module, None, 2, 1)
    measured = probe_geometry(bare)
    assert (measured.period, measured.halo) == (declared.period, declared.halo)
    (tin,), (tout,) = exported["rdf"]["inputs"], exported["rdf"]["outputs"]
    space_in = [a for a in tin["axes"] if a["type"] == "space"]
    space_out = [a for a in tout["axes"] if a["type"] == "space"]
    assert [a["id"] for a in space_in] == [a["id"] for a in space_out] == ["y", "x"]
    for a, ain, aout in zip(range(2), space_in, space_out, strict=True):
        size = ain["size"]
        assert size["min"] == measured.min_input[a]
        assert size["step"] % measured.period[a] == 0
        assert aout["size"]["offset"] == -sum(measured.halo[a])
        assert "halo" not in aout  # the valid network crops its own context
    assert exported["result"]["valid_input"] == {
        "min": list(measured.min_input),
        "step": list(measured.step),
    }
    # stitchsafe reads the package back with the checkpoint's whole geometry
    back, _ = resolve_geometry(load_model(exported["package"]))
    assert back == declared
    back_meta = load_model(exported["package"]).metadata
    assert back_meta["channel_roles"] == ROLES
    # label defaults and the training record come back from config.stitchsafe
    assert back_meta["labels"] == exported["meta"]["labels"]
    assert back_meta.get("training") == exported["meta"].get("training")


def test_predict_with_the_package_equals_the_checkpoint(exported: dict[str, Any]) -> None:
    tmp = exported["tmp"]
    inp = write_zarr(tmp / "in.zarr", random_image((61, 75)))
    outputs = {}
    for key in ("ckpt", "package"):
        out = tmp / f"out-{key}.zarr"
        args = ["--input", inp, "--output", str(out), "--tile-shape", "24,28", "--no-progress"]
        # No label flags: the package carries the checkpoint's label defaults.
        proc = run_cli("predict", "--model", str(exported[key]), *args)
        assert proc.returncode == 0, proc.stderr
        outputs[key] = _arrays(out)
    assert outputs["ckpt"].keys() == outputs["package"].keys()
    assert len(outputs["ckpt"]) >= 2  # embeddings and labels
    for path, data in outputs["ckpt"].items():
        # bit-identical: the same float32 operations on the same tiles (TorchScript of the
        # same U-Net), and the same whole-volume normalisation of the same input
        np.testing.assert_array_equal(outputs["package"][path], data, err_msg=path)


def _arrays(group: Path) -> dict[str, np.ndarray]:
    """Every array in an output group, by path."""
    root = zarr.open_group(str(group), mode="r")
    with warnings.catch_warnings():  # stitchsafe's own bookkeeping files are no zarr nodes
        warnings.simplefilter("ignore")
        members = list(root.members(max_depth=None))
    return {name: np.asarray(a[...]) for name, a in members if isinstance(a, zarr.Array)}


def test_test_tensors_are_the_networks_output(exported: dict[str, Any], tmp_path: Path) -> None:
    with zipfile.ZipFile(exported["package"]) as zf:
        zf.extractall(tmp_path)
    x = np.load(tmp_path / "test_input.npy")
    y = np.load(tmp_path / "test_output.npy")
    lo, hi = np.percentile(x, [1.0, 99.8])
    prepared = ((x - lo) / (hi - lo + 1e-6)).astype(np.float32)
    model = load_model(exported["ckpt"])
    expected = model(torch.from_numpy(prepared)).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert y.shape[2:] == tuple(s - 16 for s in x.shape[2:])


def test_bioimageio_core_reproduces_the_test_tensors(
    exported: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    core = pytest.importorskip("bioimageio.core")  # heavy; not a stitchsafe dependency

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access while testing a package: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for weights in ("torchscript", "pytorch_state_dict"):
        summary = core.test_model(exported["package"], weight_format=weights)
        assert summary.status == "passed", summary.display() or weights


def test_config_completes_what_the_reader_derives(exported: dict[str, Any], tmp_path: Path) -> None:
    derived = load_model(exported["package"]).metadata
    config = exported["rdf"]["config"]
    merged = config_metadata(derived, config, "package")
    assert merged["labels"] == exported["meta"]["labels"]
    assert merged["training"] == exported["meta"]["training"]
    # the same from the description bioimageio.spec parses (what the package reader holds)
    with zipfile.ZipFile(exported["package"]) as zf:
        zf.extract("rdf.yaml", tmp_path)
    descr = read_description(tmp_path / "rdf.yaml", where="package")
    assert config_metadata(derived, descr.config, "package") == merged
    assert merged["period"] == derived["period"] == exported["meta"]["period"]
    roles = ["embedding"] * 3
    bad = {"stitchsafe": {**config["stitchsafe"], "channel_roles": roles}}
    with pytest.raises(GeometryMismatchError, match="channel_roles"):
        config_metadata(derived, bad, "package")


def test_export_refuses_models_it_cannot_package(tmp_path: Path) -> None:
    same, cfg = make_net("2d-same")
    save_checkpoint(same, tmp_path / "same.pt", metadata=unet_metadata(cfg))
    with pytest.raises(StitchsafeError, match="not stitch-safe"):
        export_bioimageio(load_model(tmp_path / "same.pt"), tmp_path / "same.zip")
    net, _ = make_net(NET)
    save_torchscript(net, tmp_path / "net.ts")
    with pytest.raises(StitchsafeError, match="stitchsafe checkpoints of the built-in U-Net"):
        export_bioimageio(load_model(tmp_path / "net.ts"), tmp_path / "net.zip")
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".stitchsafe-export-*"))


def test_cli_refuses_bad_model_and_existing_output(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pt"
    out = tmp_path / "new.zip"
    assert_bad_input(
        run_cli("export", "--format", "bioimageio", str(missing), str(out)), "missing.pt"
    )
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_text("not a model")
    assert_bad_input(run_cli("export", str(not_a_model), str(out)), "not a model")
    assert not out.exists()
    package = exported["package"]
    before = package.read_bytes()
    proc = run_cli("export", "--format", "bioimageio", str(exported["ckpt"]), str(package))
    assert_bad_input(proc, "already exists", "--overwrite")
    assert package.read_bytes() == before  # nothing already written is lost
    proc = run_cli("export", "--format", "onnx", str(exported["ckpt"]), str(out))
    assert proc.returncode == 2 and "onnx" in proc.stderr and not out.exists()


def test_overwrite_replaces_the_package_with_the_same_bytes(exported: dict[str, Any]) -> None:
    copy = exported["tmp"] / "again.zip"
    copy.write_bytes(b"an older package")
    result = export_bioimageio(
        load_model(exported["ckpt"]), copy, overwrite=True, name="stitchsafe model"
    )
    assert result.path == str(copy.absolute()) and result.period == (2, 2)
    with zipfile.ZipFile(copy) as a, zipfile.ZipFile(exported["package"]) as b:
        # a deterministic package: the same checkpoint gives the same files
        for member in ("test_input.npy", "test_output.npy", "weights_state_dict.pt", "cover.png"):
            assert a.read(member) == b.read(member), member
