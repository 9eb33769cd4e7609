"""Model files are data unless trusted: hostile files run nothing, damaged files are refused.

The hostile ``.pt2`` files are real: each plants a payload (it opens a marker file for
writing) where ``torch.export.load`` runs it, and every test that shows stitchsafe
refusing one also shows, with ``--trust-model``, that the payload does run.
"""

from __future__ import annotations

import io
import json
import operator
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_helpers import assert_bad_input, run_cli
from images import write_zarr
from nets import saved_model

from stitchsafe.errors import StitchsafeError
from stitchsafe.models import load_model, save_torchscript

NET = "2d-d1-f2"  # the smallest test net; its .pt2 is written once per test process


class Opener:
    """Unpickles to ``open(marker, "w")``: the payload, a file that appears when it runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


class Carrier:
    """Unpickles to ``value``, after the payload ran: the hostile file still loads."""

    def __init__(self, marker: Path, value: Any) -> None:
        self.marker, self.value = marker, value

    def __reduce__(self) -> tuple[Any, ...]:
        return (operator.getitem, ((Opener(self.marker), self.value), 1))


def _pickled(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes]) -> Path:
    """Copy the zip ``src`` to ``dst``, each member through ``edit(record, data)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, edit(item.filename.split("/", 1)[1], zin.read(item)))
    return dst


def _planted_sample_inputs(src: Path, dst: Path, marker: Path) -> Path:
    def edit(record: str, data: bytes) -> bytes:
        if record.startswith("data/sample_inputs/"):
            inputs = torch.load(io.BytesIO(data), weights_only=True)
            return _pickled(Carrier(marker, inputs))
        return data

    return _rewrite(src, dst, edit)


def _planted_use_pickle_weight(src: Path, dst: Path, marker: Path) -> Path:
    with zipfile.ZipFile(src) as zf:
        name = next(n for n in zf.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(zf.read(name))
    fqn, entry = next(iter(config["config"].items()))
    entry["use_pickle"] = True
    sizes = [s["as_int"] for s in entry["tensor_meta"]["sizes"]]

    def edit(record: str, data: bytes) -> bytes:
        if record.endswith("model_weights_config.json"):
            return json.dumps(config).encode()
        if record == f"data/weights/{entry['path_name']}":
            weight = torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(sizes)
            return _pickled(Carrier(marker, torch.nn.Parameter(weight)))
        return data

    return _rewrite(src, dst, edit)


def _planted_program(src: Path, dst: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    def edit(record: str, data: bytes) -> bytes:
        if record.startswith("models/") and record.endswith(".json"):
            program = json.loads(data)
            change(program)
            return json.dumps(program).encode()
        return data

    return _rewrite(src, dst, edit)


def _planted_guard(src: Path, dst: Path, marker: Path) -> Path:
    # guards_code entries are exec'd when the program becomes a module
    def change(program: dict[str, Any]) -> None:
        program["guards_code"].append(f"open({str(marker)!r}, 'w') is not None")

    return _planted_program(src, dst, change)


def _planted_expression(src: Path, dst: Path, marker: Path) -> Path:
    # every expr_str goes through sympy.sympify, which evaluates it as Python
    def change(program: dict[str, Any]) -> None:
        text = json.dumps(program)
        found = json.dumps("Symbol('s")[1:-1]
        at = text.index(found)
        planted = json.dumps(f"open({str(marker)!r}, 'w') and ")[1:-1]
        program.clear()
        program.update(json.loads(text[:at] + planted + text[at:]))

    return _planted_program(src, dst, change)


HOSTILE = {
    "sample-inputs": (_planted_sample_inputs, ".pt2", "pickled objects"),
    "sample-inputs-renamed-pt": (_planted_sample_inputs, ".pt", "pickled objects"),
    "use-pickle-weight": (_planted_use_pickle_weight, ".pt2", "pickled objects"),
    "guards-code": (_planted_guard, ".pt2", "guards_code"),
    "sympy-expression": (_planted_expression, ".pt2", "symbolic expression"),
}


@pytest.fixture()
def small_input(tmp_path: Path) -> str:
    data = (np.random.default_rng(0).random((40, 40)) * 1000).astype(np.uint16)
    return write_zarr(tmp_path / "small.zarr", data)


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_pt2_runs_nothing_untrusted(tmp_path: Path, small_input: str, kind: str) -> None:
    plant, suffix, what = HOSTILE[kind]
    marker = tmp_path / "payload-ran"
    model = plant(saved_model(NET, "export"), tmp_path / f"hostile{suffix}", marker)

    proc = run_cli("plan", "--model", str(model), "--input", small_input)
    assert_bad_input(proc, model.name, what, "would run code", "--trust-model", "trust")
    assert "corrupt" not in proc.stderr and "\n\n" not in proc.stderr.strip()
    assert not marker.exists()

    # the file is really hostile: trusted, torch runs the payload
    proc = run_cli("plan", "--model", str(model), "--input", small_input, "--trust-model")
    assert marker.exists(), proc.stderr


def _flip_bit(src: Path, dst: Path, member_suffix: str) -> str:
    """Copy ``src`` with one bit flipped inside the data of a member; return its name."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(member_suffix))
    start = info.header_offset
    name_len = int.from_bytes(data[start + 26 : start + 28], "little")
    extra_len = int.from_bytes(data[start + 28 : start + 30], "little")
    data[start + 30 + name_len + extra_len + info.compress_size // 2] ^= 0x10
    dst.write_bytes(bytes(data))
    return info.filename


def test_bit_flipped_checkpoint_refused(tmp_path: Path, small_input: str) -> None:
    model = tmp_path / "flipped.pt"
    member = _flip_bit(saved_model(NET, "stitchsafe"), model, "data/2")
    proc = run_cli("plan", "--model", str(model), "--input", small_input)
    assert_bad_input(proc, "flipped.pt", "damaged: CRC check failed in member", member)


@pytest.mark.parametrize(("fmt", "member"), [("torchscript", "data/2"), ("export", "weight_2")])
def test_bit_flipped_archives_refused(tmp_path: Path, fmt: str, member: str) -> None:
    path = tmp_path / f"flipped-{fmt}.bin"
    name = _flip_bit(saved_model(NET, fmt), path, member)
    for trust in (False, True):
        with pytest.raises(StitchsafeError, match=f"damaged: CRC check failed in member '{name}'"):
            load_model(path, trust=trust)


def test_duplicate_member_refused(tmp_path: Path) -> None:
    # two members of one name: Python's zipfile and torch's reader may read different ones
    src = saved_model(NET, "stitchsafe")
    path = tmp_path / "twice.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, zin.read(item))
        with pytest.warns(UserWarning, match="Duplicate name"):
            zout.writestr(zin.infolist()[0], zin.read(zin.infolist()[0]))
    with pytest.raises(StitchsafeError, match="damaged: member .* appears 2 times"):
        load_model(path)


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("torch.os.system", "not an ATen operator"),
        ("torch.ops.import_module", "not an ATen operator"),
        ("torch.ops.aten.from_file.default", "reads or writes files"),
    ],
)
def test_program_calling_non_aten_refused(tmp_path: Path, target: str, words: str) -> None:
    def change(program: dict[str, Any]) -> None:
        program["graph_module"]["graph"]["nodes"][0]["target"] = target

    path = _planted_program(saved_model(NET, "export"), tmp_path / "calls.pt2", change)
    with pytest.raises(StitchsafeError, match=f"calls.pt2.*{words}.*--trust-model"):
        load_model(path)


def test_quote_in_parameter_name_refused(tmp_path: Path) -> None:
    # parameter names are pasted into generated code as getattr(self, "<name>")
    def change(program: dict[str, Any]) -> None:
        spec = program["graph_module"]["signature"]["input_specs"][0]["parameter"]
        spec["parameter_name"] = 'w"), print("x'

    path = _planted_program(saved_model(NET, "export"), tmp_path / "named.pt2", change)
    with pytest.raises(StitchsafeError, match="quotes or backslashes"):
        load_model(path)


class SavesToDisk(torch.nn.Module):
    """A network whose TorchScript writes a file on every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3)
        self.where = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.where)
        return self.conv(x)


def test_torchscript_writing_files_refused_untrusted(tmp_path: Path) -> None:
    net = SavesToDisk()
    net.where = str(tmp_path / "written-by-model")
    path = tmp_path / "saver.ts.pt"
    save_torchscript(net, path)
    with pytest.raises(StitchsafeError, match=r"saver.ts.pt.*reads or writes files.*save"):
        load_model(path)
    model = load_model(path, trust=True)
    model(torch.zeros(1, 1, 5, 5))
    assert (tmp_path / "written-by-model").exists()


class WithConstants(torch.nn.Module):
    """Parameters, a buffer and a tensor constant: what torch.export.save stores raw."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.register_buffer("scale", torch.tensor([2.0]))
        self.offset = torch.tensor([0.5])  # a lifted tensor constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale + self.offset


def test_ordinary_export_loads_untrusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # written by torch.export.save itself (not stitchsafe's save_export), renamed .pt
    net = WithConstants().eval()
    x = torch.randn(2, 1, 8, 8)
    dims = {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    program = torch.export.export(net, (x,), dynamic_shapes=(dims,))
    torch.export.save(program, tmp_path / "plain.pt")
    monkeypatch.chdir(tmp_path)
    model = load_model("plain.pt")
    assert model.format == "export"
    assert model.files == (os.path.join(str(tmp_path), "plain.pt"),)
    assert torch.allclose(model(x), net(x), atol=1e-6)


@pytest.mark.parametrize("fmt", ["stitchsafe", "torchscript"])
def test_files_default_to_the_model_path(tmp_path: Path, fmt: str) -> None:
    path = saved_model(NET, fmt)
    assert load_model(path).files == (os.path.abspath(path),)
