"""Model formats: detection from content, round trips, safe loading, metadata, devices."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from nets import FORMATS, loaded_model, make_net, saved_model, write_model

from stitchsafe.errors import GeometryMismatchError, StitchsafeError
from stitchsafe.models import (
    METADATA_KEY,
    TORCHSCRIPT_NOTE,
    detect_format,
    load_model,
    save_checkpoint,
    save_torchscript,
    unet_metadata,
    validate_metadata,
)

# The exported nets (slow to write, cached per test process by nets.saved_model).
EXPORT_NET = "2d-d2-f3-c3"  # depth 2, 3 input and 5 output channels, with metadata


def net_for(fmt: str) -> str:
    return EXPORT_NET if fmt == "export" else "2d-d2-f3"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("suffix", [".pt2", ".pt", ".txt", ""], ids=["pt2", "pt", "txt", "none"])
def test_format_detected_from_content(tmp_path: Path, fmt: str, suffix: str) -> None:
    src = saved_model(net_for(fmt), fmt)
    renamed = tmp_path / f"model{suffix}"
    shutil.copy(src, renamed)
    assert detect_format(renamed) == fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    name = net_for(fmt)
    net, cfg = make_net(name)
    model = loaded_model(name, fmt)
    assert model.format == fmt
    assert model.metadata == unet_metadata(cfg)
    assert (model.dims, model.channels_in) == (2, cfg.in_channels)
    shape = tuple(m + s for m, s in zip(cfg.geometry().min_input, cfg.geometry().step, strict=True))
    x = torch.randn(2, cfg.in_channels, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x)
    out = model(x)
    assert out.shape == ref.shape and out.shape[1] == cfg.out_channels
    assert float((out - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    # batch sizes other than the example's run too (the engine batches tiles)
    assert model(x[:1]).shape[0] == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_dims_and_channels_without_metadata(tmp_path: Path, fmt: str) -> None:
    if fmt == "export":
        from stitchsafe.models import dims_from_program

        model = loaded_model(EXPORT_NET, fmt)
        assert dims_from_program(model.program) == (2, 3)
        return
    net, cfg = make_net("2d-c3-d1")
    model = load_model(write_model(net, cfg, tmp_path / "m", fmt))
    assert model.metadata is None
    assert (model.dims, model.channels_in) == (2, 3)
    net3, cfg3 = make_net("3d-d1-f2", in_channels=2)
    model3 = load_model(write_model(net3, cfg3, tmp_path / "m3", fmt))
    assert (model3.dims, model3.channels_in) == (3, 2)


def test_declared_channels_must_match_weights(tmp_path: Path) -> None:
    net, cfg = make_net("2d-d1-f2")
    path = tmp_path / "m.ts"
    save_torchscript(net, path, metadata=unet_metadata(cfg, channels_in=4))
    with pytest.raises(GeometryMismatchError, match="metadata says channels_in 4 .* takes 1"):
        load_model(path)


def test_torchscript_note_once_and_no_deprecation_spam(tmp_path: Path) -> None:
    net, cfg = make_net("2d-d1-f2")
    net.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_torchscript(net, tmp_path / "m.ts")
        model = load_model(tmp_path / "m.ts")
    assert not [w for w in caught if "torch.jit" in str(w.message)], [
        str(w.message) for w in caught
    ]
    assert model.notes.count(TORCHSCRIPT_NOTE) == 1 and "deprecated" in TORCHSCRIPT_NOTE
    assert net.training, "saving must restore the caller's training mode"
    assert not model.module.training


def test_exported_module_is_in_eval_mode() -> None:
    # the export was made in eval mode: BatchNorm would otherwise use batch statistics and
    # the dropout-free net would differ between batch sizes
    model = loaded_model(EXPORT_NET, "export")
    x = torch.randn(3, 3, 79, 79, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(model(x)[1:2], model(x[1:2]), atol=1e-5)


class Marker:
    """Unpickling this would run code: ``weights_only`` loading must refuse it."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_mark, ("unpickled",))


MARKS: list[str] = []


def _mark(value: str) -> str:
    MARKS.append(value)
    return value


def test_checkpoint_with_custom_objects_is_refused(tmp_path: Path) -> None:
    net, cfg = make_net("2d-d1-f2")
    path = tmp_path / "evil.pt"
    torch.save(
        {
            "format": "stitchsafe-checkpoint",
            "version": 1,
            "config": cfg.to_json(),
            "metadata": "null",
            "state_dict": net.state_dict(),
            "payload": Marker(),
        },
        path,
    )
    assert detect_format(path) == "stitchsafe"
    with pytest.raises(StitchsafeError, match=r"refuses to load.*_mark.*never unpickles"):
        load_model(path)
    assert MARKS == []


def test_bare_state_dict_is_refused(tmp_path: Path) -> None:
    net, _ = make_net("2d-d1-f2")
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(StitchsafeError, match="not a stitchsafe checkpoint"):
        load_model(tmp_path / "sd.pt")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "kind", ["missing", "empty", "directory", "text", "fake-zip", "other-zip", "truncated"]
)
def test_bad_files_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"bad-{kind}.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("hello, I am not a model\n")
    elif kind == "fake-zip":
        path.write_bytes(b"PK\x03\x04 this is not a model")
    elif kind == "other-zip":
        _zip(path, {"readme.txt": b"hi", "data/0": b"\x00" * 8})
    elif kind == "truncated":
        data = saved_model("2d-d2-f3", "torchscript").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StitchsafeError) as err:
        load_model(path)
    assert path.name in str(err.value)
    if kind != "missing":
        assert "stitchsafe checkpoint" in str(err.value) or "corrupt" in str(err.value)


def test_corrupt_member_refused(tmp_path: Path) -> None:
    # a structurally valid zip whose pickle is garbage
    src = saved_model("2d-d2-f3", "stitchsafe")
    path = tmp_path / "broken.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, b"garbage" if item.filename.endswith("data.pkl") else data)
    with pytest.raises(StitchsafeError, match="broken.pt.*corrupt"):
        load_model(path)


def test_metadata_round_trip_extra_keys(tmp_path: Path) -> None:
    net, cfg = make_net("2d-d1-f2", out_channels=3)
    meta = unet_metadata(
        cfg,
        channel_roles=["embedding", "embedding", "foreground"],
        normalization={"method": "percentile", "percentiles": [1.0, 99.8]},
        custom={"kept": True},
    )
    for fmt in ("stitchsafe", "torchscript"):
        model = load_model(write_model(net, cfg, tmp_path / fmt, fmt, metadata=meta))
        assert model.metadata == meta
    assert meta["stitchsafe_metadata"] == 1 and meta["channels_out"] == 3
    assert meta["architecture"]["config"]["pooling_factors"] == [[2, 2]]
    json.dumps(meta)


def test_same_padded_metadata_has_no_valid_geometry() -> None:
    _, cfg = make_net("2d-same")
    meta = unet_metadata(cfg)
    assert "halo" not in meta and meta["pooling_factors"] == [[2, 2]]


BAD_METADATA = {
    "not-an-object": [1, 2],
    "no-version": {"dims": 2},
    "future-version": {"stitchsafe_metadata": 99},
    "zero-period": {"stitchsafe_metadata": 1, "period": [0, 2]},
    "period-length": {"stitchsafe_metadata": 1, "dims": 3, "period": [2, 2]},
    "halo-pairs": {
        "stitchsafe_metadata": 1,
        "period": [2],
        "halo": [[1, 2, 3]],
        "valid_input": {"min": [5], "step": [2]},
    },
    "halo-without-sizes": {"stitchsafe_metadata": 1, "period": [2], "halo": [[1, 1]]},
    "period-vs-factors": {"stitchsafe_metadata": 1, "pooling_factors": [[2, 2]], "period": [4, 4]},
    "step-not-multiple": {
        "stitchsafe_metadata": 1,
        "period": [4],
        "halo": [[1, 1]],
        "valid_input": {"min": [5], "step": [2]},
    },
    "roles-count": {"stitchsafe_metadata": 1, "channels_out": 2, "channel_roles": ["a"]},
    "normalization": {"stitchsafe_metadata": 1, "normalization": "percentile"},
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_malformed_metadata_refused(tmp_path: Path, case: str) -> None:
    meta = BAD_METADATA[case]
    net, cfg = make_net("2d-d1-f2", dims=1, pooling_factors=((2,),))
    path = tmp_path / "m.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(net)
        torch.jit.save(scripted, str(path), _extra_files={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(StitchsafeError, match="metadata") as err:
        load_model(path)
    assert "m.ts" in str(err.value)
    with pytest.raises(StitchsafeError):
        validate_metadata(meta)


def test_invalid_json_metadata_refused(tmp_path: Path) -> None:
    net, _ = make_net("2d-d1-f2")
    path = tmp_path / "m.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net), str(path), _extra_files={METADATA_KEY: "{oops"})
    with pytest.raises(StitchsafeError, match="not valid JSON"):
        load_model(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_to_cpu_and_missing_cuda(fmt: str) -> None:
    model = load_model(saved_model(net_for(fmt), fmt), device="cpu")
    assert model.to("cpu") is model and model.device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(StitchsafeError, match="CUDA"):
            model.to("cuda")
        with pytest.raises(StitchsafeError, match="CUDA"):
            load_model(saved_model(net_for(fmt), fmt), device="cuda:0")
    with pytest.raises(StitchsafeError, match="unknown device"):
        model.to("tpu-please")


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", FORMATS)
def test_cuda_round_trip(fmt: str) -> None:
    model = load_model(saved_model(net_for(fmt), fmt), device="cuda")
    x = torch.randn(1, model.channels_in, 79, 79)
    ref = load_model(saved_model(net_for(fmt), fmt))(x)
    out = model(x.cuda()).cpu()
    assert float((out - ref).abs().max()) <= 1e-3 * float(ref.abs().max())


def test_save_checkpoint_only_takes_builtin_unet(tmp_path: Path) -> None:
    with pytest.raises(StitchsafeError, match="save_export"):
        save_checkpoint(torch.nn.Conv2d(1, 1, 3), tmp_path / "x.pt")  # type: ignore[arg-type]
