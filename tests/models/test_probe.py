"""Geometry from metadata, flags and probing; cross-checks; refusal of unstitchable models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from nets import FORMATS, UNSAFE, loaded_model, make_net, saved_model, write_model

from stitchsafe.models import probe_geometry, structured_input
from stitchsafe.errors import GeometryMismatchError, StitchsafeError, UnstitchableModelError
from stitchsafe.geometry import ModelGeometry
from stitchsafe.models import (
    LoadedModel,
    check_stitchable,
    load_model,
    resolve_geometry,
    unet_metadata,
)
from stitchsafe.models import UNet

EXPORT_NET = "2d-d2-f3-c3"  # the one exported safe net (as in test_model.py)


def forwards(model: LoadedModel) -> int:
    """Forward passes the last geometry resolution took (from its note)."""
    match = re.search(r"(\d+) forward passes", model.probe_log[-1])
    assert match, model.probe_log
    return int(match.group(1))


def in_memory(module: torch.nn.Module, dims: int, channels: int = 1) -> LoadedModel:
    return LoadedModel("<memory>", "stitchsafe", module.eval(), None, dims, channels)


PROBED = [
    ("2d-d1-f2", "stitchsafe"),
    ("2d-d2-f3", "stitchsafe"),
    ("2d-d4-f2", "stitchsafe"),
    ("2d-d3-nearest", "stitchsafe"),
    ("2d-batchnorm", "stitchsafe"),
    ("3d-d1-f2", "stitchsafe"),
    ("3d-aniso-122-d2", "stitchsafe"),
    ("3d-d2-nearest", "stitchsafe"),
    ("2d-d4-f2", "torchscript"),
    ("3d-aniso-122-d2", "torchscript"),
    (EXPORT_NET, "export"),  # depth 2, exported: runs on invalid sizes too
]


@pytest.mark.parametrize("name, fmt", PROBED, ids=[f"{n}-{f}" for n, f in PROBED])
def test_probe_matches_closed_form(name: str, fmt: str) -> None:
    _, cfg = make_net(name)
    if fmt == "export":  # one export serves all tests (each costs seconds): drop its metadata
        model = loaded_model(name, fmt)
        model.metadata = None
    else:
        model = load_model(saved_model(name, fmt, metadata=False))
    geometry, source = resolve_geometry(model)
    assert source == "probe"
    assert geometry == cfg.geometry()


def test_exported_model_runs_invalid_sizes_misaligned() -> None:
    # the premise of probing by shifts: an exported U-Net accepts a size one larger than
    # valid and silently returns the valid size's output size
    _, cfg = make_net(EXPORT_NET)
    g = cfg.geometry()
    model = loaded_model(EXPORT_NET, "export")
    n = g.min_input[0] + g.step[0]
    assert model(torch.zeros(1, 3, n + 1, n)).shape == model(torch.zeros(1, 3, n, n)).shape


@pytest.mark.parametrize("fmt", FORMATS)
def test_geometry_from_metadata_is_cross_checked_cheaply(fmt: str) -> None:
    name = EXPORT_NET if fmt == "export" else "2d-d2-f3"
    _, cfg = make_net(name)
    model = loaded_model(name, fmt)
    geometry, source = resolve_geometry(model)
    assert source == "metadata"
    assert geometry == cfg.geometry()
    assert forwards(model) <= 8


def test_metadata_with_pooling_factors_only() -> None:
    net, cfg = make_net("3d-aniso-122-d2")
    meta = {"stitchsafe_metadata": 1, "pooling_factors": [[1, 2, 2], [2, 2, 2]]}
    model = in_memory(net, 3)
    model.metadata = meta
    assert resolve_geometry(model) == (cfg.geometry(), "metadata")


@pytest.mark.parametrize(
    "name, factors, depth",
    [
        ("2d-d2-f3", 3, 2),
        ("2d-d2-f3", [(3, 3), (3, 3)], None),
        ("2d-d3-nearest", None, 3),  # a depth alone means factor 2
        ("3d-aniso-122-d2", [(1, 2, 2), (2, 2, 2)], None),
    ],
)
def test_geometry_from_flags(name: str, factors: object, depth: int | None) -> None:
    net, cfg = make_net(name)
    model = in_memory(net, cfg.dims)
    geometry, source = resolve_geometry(model, pooling_factors=factors, depth=depth)  # type: ignore[arg-type]
    assert source == "flags"
    assert geometry == cfg.geometry()


@pytest.mark.parametrize(
    "name, factors, depth, declared, measured",
    [
        ("2d-d2-f3", 3, 1, "(3, 3)", "(9, 9)"),  # too small: shifting by 3 changes the output
        ("2d-d1-f2", 2, 2, "(4, 4)", "(2, 2)"),  # too large: shifting by 2 already matches
    ],
)
def test_wrong_flags_refused(
    name: str, factors: int, depth: int, declared: str, measured: str
) -> None:
    net, cfg = make_net(name)
    with pytest.raises(GeometryMismatchError) as err:
        resolve_geometry(in_memory(net, 2), pooling_factors=factors, depth=depth)
    msg = str(err.value)
    assert f"--pooling-factor/--depth say period {declared}" in msg
    assert f"shifting the input shows {measured}" in msg


def _with_metadata(
    tmp_path: Path, name: str, fmt: str = "stitchsafe", **changes: object
) -> LoadedModel:
    net, cfg = make_net(name)
    meta = unet_metadata(cfg, **changes)
    return load_model(write_model(net, cfg, tmp_path / f"m-{fmt}", fmt, metadata=meta))


@pytest.mark.parametrize("fmt", ["stitchsafe", "torchscript"])
def test_metadata_period_too_small(tmp_path: Path, fmt: str) -> None:
    model = _with_metadata(tmp_path, "2d-d2-f3", fmt, period=[3, 3], pooling_factors=[[3, 3]])
    with pytest.raises(
        GeometryMismatchError,
        match=re.escape("metadata says period (3, 3) but shifting the input shows (9, 9)"),
    ):
        resolve_geometry(model)


def test_metadata_period_too_large(tmp_path: Path) -> None:
    model = _with_metadata(
        tmp_path,
        "2d-d1-f2",
        period=[4, 4],
        pooling_factors=[[4, 4]],
        valid_input={"min": [18, 18], "step": [4, 4]},
    )
    with pytest.raises(
        GeometryMismatchError,
        match=re.escape("metadata says period (4, 4) but shifting the input shows (2, 2)"),
    ):
        resolve_geometry(model)


def test_metadata_wrong_halo(tmp_path: Path) -> None:
    # true: halo (8, 8), min 18 -> the model's output is 16 smaller than its input
    model = _with_metadata(
        tmp_path, "2d-d1-f2", halo=[[9, 9], [9, 9]], valid_input={"min": [20, 20], "step": [2, 2]}
    )
    with pytest.raises(GeometryMismatchError) as err:
        resolve_geometry(model)
    msg = str(err.value)
    assert "metadata says halo ((9, 9), (9, 9))" in msg and "(16, 16) smaller" in msg
    assert "metadata says output size 6 for input 24 but the model returns 8" in msg


def test_metadata_wrong_channels_out(tmp_path: Path) -> None:
    model = _with_metadata(tmp_path, "2d-d1-f2", channels_out=4)
    with pytest.raises(GeometryMismatchError, match="4 output channels but the model returns 1"):
        resolve_geometry(model)


def test_metadata_and_flags_disagree(tmp_path: Path) -> None:
    model = _with_metadata(tmp_path, "2d-d1-f2")
    with pytest.raises(GeometryMismatchError, match=r"metadata says period \(2, 2\) but"):
        resolve_geometry(model, pooling_factors=2, depth=3)
    assert resolve_geometry(model, pooling_factors=2, depth=1)[1] == "metadata"


WORDS = {
    "2d-same": ("same", "padding"),
    "2d-instancenorm": ("normalisation", "instance"),
    "3d-groupnorm": ("normalisation", "group"),
    "2d-groupnorm": ("normalisation", "group"),
}


# every unsafe net in every format, but exporting 3-D nets is slow: GroupNorm is exported 2-D
REFUSED = [(n, f) for n in UNSAFE for f in FORMATS if (n, f) != ("3d-groupnorm", "export")]
REFUSED.remove(("2d-groupnorm", "stitchsafe"))
REFUSED.remove(("2d-groupnorm", "torchscript"))


@pytest.mark.parametrize("name, fmt", REFUSED, ids=[f"{n}-{f}" for n, f in REFUSED])
def test_unstitchable_models_refused(name: str, fmt: str) -> None:
    model = load_model(saved_model(name, fmt, metadata=False))
    with pytest.raises(UnstitchableModelError) as err:
        resolve_geometry(model)
    msg = str(err.value).lower()
    for word in WORDS[name]:
        assert word in msg, msg
    assert "retrain" in msg or "valid convolutions" in msg


@pytest.mark.parametrize("name", UNSAFE)
def test_unstitchable_refused_despite_metadata(tmp_path: Path, name: str) -> None:
    net, cfg = make_net(name)
    model = load_model(
        write_model(net, cfg, tmp_path / "m.pt", "stitchsafe", metadata=unet_metadata(cfg))
    )
    with pytest.raises(UnstitchableModelError, match=WORDS[name][0]):
        resolve_geometry(model)
    with pytest.raises(UnstitchableModelError):
        check_stitchable(model, None)


def test_check_stitchable_accepts_safe_models() -> None:
    net, cfg = make_net("3d-aniso-122-d2")
    model = in_memory(net, 3)
    check_stitchable(model, cfg.geometry())
    check_stitchable(model, None)


def test_padding_inside_a_valid_net_is_named() -> None:
    # seeded, and wide enough that the ReLU cannot be dead everywhere: with 2 unseeded
    # channels about 1 draw in 200 ignored its input, so no padding could show
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1)
    )
    with pytest.raises(UnstitchableModelError, match=r"zeros.*Conv2d\(padding=\(1, 1\)\)"):
        resolve_geometry(in_memory(net, 2))


def test_pointwise_model_is_not_mistaken_for_same_padding() -> None:
    # output size == input size, but nothing depends on neighbours: stitchable, period 1
    geometry, _ = resolve_geometry(in_memory(torch.nn.Conv2d(1, 3, 1), 2))
    assert geometry.period == (1, 1) and geometry.halo == ((0, 0), (0, 0))
    assert geometry.channels_out == 3


class Strict(torch.nn.Module):
    """A U-Net that raises on invalid sizes (as U-Nets without skip cropping do)."""

    def __init__(self, net: UNet, geometry: ModelGeometry) -> None:
        super().__init__()
        self.net, self.geometry = net, geometry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.geometry.is_valid_input(tuple(x.shape[2:])):
            raise RuntimeError(f"invalid input size {tuple(x.shape[2:])}")
        return self.net(x)


@pytest.mark.parametrize("name", ["2d-d1-f2", "2d-d2-f3", "3d-aniso-122-d2"])
def test_probe_of_models_that_refuse_invalid_sizes(name: str) -> None:
    # 2d-d2-f3: no power of two is valid (scan from 1); 3d-aniso: cubes are valid only
    # every 4 voxels, while z is valid every 2 from 26 (per-axis refinement)
    net, cfg = make_net(name)
    model = in_memory(Strict(net, cfg.geometry()), cfg.dims)
    geometry, _ = resolve_geometry(model)
    assert geometry == cfg.geometry()


def test_probe_cost_stays_small() -> None:
    net, cfg = make_net("2d-d4-f2")  # min input 188: no scan from 1
    model = in_memory(net, 2)
    assert resolve_geometry(model)[0] == cfg.geometry()
    assert forwards(model) <= 70
    assert next(net.parameters()).dtype == torch.float32  # the float64 probe used a copy


def test_probe_size_cap() -> None:
    net, _ = make_net("2d-d4-f2")
    with pytest.raises(StitchsafeError, match="--pooling-factor/--depth"):
        probe_geometry(in_memory(net, 2), cap=100)


class TupleOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def test_unusable_output_refused() -> None:
    with pytest.raises(StitchsafeError, match="one tensor"):
        resolve_geometry(in_memory(TupleOut(), 2))


def test_structured_input_differs_between_windows() -> None:
    x = structured_input((40, 40), 1, seed=3)
    a, b = x[..., :20, :20], x[..., 10:30, 10:30]
    assert abs(float(a.mean() - b.mean())) > 0.1 and abs(float(a.std() - b.std())) > 0.01
    assert torch.equal(x, structured_input((40, 40), 1, seed=3))
