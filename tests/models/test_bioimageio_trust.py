"""bioimage.io packages are data unless trusted: no package code runs, no zip bomb unpacks.

Packages are built here offline (a small valid U-Net; ``rdf.yaml`` written as JSON, a
subset of YAML) and run through the installed console script. Hostile architecture code
writes a marker file when it runs; untrusted, the marker must never appear.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import assert_bad_input, run_cli
from images import random_image, write_zarr
from nets import make_net
from packages import NET, Payload, state_dict_package, torchscript_package, zip_folder

from stitchsafe.errors import StitchsafeError
from stitchsafe.models import LoadedModel, save_torchscript
from stitchsafe.models.bioimageio import MAX_MEMBER_BYTES, load_package, open_package

pytest.importorskip("bioimageio.spec")  # the optional extra: stitchsafe[bioimageio]


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_zarr(tmp_path_factory.mktemp("volume") / "vol.zarr", random_image((40, 50)))


def plan(model: Path, volume: str, *extra: str) -> Any:
    args = ["plan", "--model", str(model), "--input", volume, "--tile-shape", "8,10"]
    return run_cli(*args, "--device", "cpu", *extra)


@pytest.mark.parametrize("zipped", [False, True], ids=["folder", "zip"])
def test_architecture_source_refused_untrusted(tmp_path: Path, volume: str, zipped: bool) -> None:
    marker = tmp_path / "marker.txt"
    package = state_dict_package(tmp_path / "pkg", marker)
    if zipped:
        package = zip_folder(package, tmp_path / "pkg.zip")
    proc = plan(package, volume)
    assert_bad_input(proc, "'evil_arch.py'", "would run on this machine", "--trust-model")
    assert "TorchScript" in proc.stderr
    assert not marker.exists()


def test_architecture_source_runs_with_trust_model(tmp_path: Path, volume: str) -> None:
    # zipped: the source imports a sibling module, extracted beside it
    marker = tmp_path / "marker.txt"
    package = zip_folder(state_dict_package(tmp_path / "pkg", marker), tmp_path / "pkg.zip")
    proc = plan(package, volume, "--trust-model")
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "the package's architecture code ran"


def test_import_from_callable_refused_untrusted(tmp_path: Path, volume: str) -> None:
    # an installed module's callable with arguments the package chooses is code too
    marker = tmp_path / "marker.txt"
    folder = state_dict_package(tmp_path / "pkg", tmp_path / "unused.txt")
    rdf = json.loads((folder / "rdf.yaml").read_text())
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    del arch["source"]
    arch.update(import_from="os", callable="system", kwargs={"command": f"touch {marker}"})
    (folder / "rdf.yaml").write_text(json.dumps(rdf))
    proc = plan(folder, volume)
    assert_bad_input(proc, "'system' of the installed module 'os'", "--trust-model")
    assert not marker.exists()


def test_pickled_state_dict_refused_even_trusted(tmp_path: Path, volume: str) -> None:
    marker = tmp_path / "unpickled.txt"
    net, _ = make_net(NET, out_channels=2)
    state = {**net.state_dict(), "payload": Payload(marker)}
    folder = state_dict_package(tmp_path / "pkg", tmp_path / "imported.txt", state)
    with pytest.raises(StitchsafeError, match="holds Python objects other than tensors"):
        load_package(folder, trust=True)
    proc = plan(folder, volume, "--trust-model")
    assert_bad_input(proc, "'weights.pt' holds Python objects", "(e.g. exec)")
    assert not marker.exists()


def test_trusted_source_loads_in_process(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    package = state_dict_package(tmp_path / "pkg", marker)
    with pytest.raises(StitchsafeError, match="--trust-model"):
        load_package(package)
    assert not marker.exists()
    model = load_package(package, trust=True)
    assert marker.exists() and model.metadata["period"] == [2, 2]


class SavesToDisk(torch.nn.Module):
    """The test U-Net, whose TorchScript writes a file on every forward pass."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.unet = make_net(NET, out_channels=2)[0]
        self.where = where

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.where)
        return self.unet(x)


def test_torchscript_writing_files_refused_untrusted(tmp_path: Path, volume: str) -> None:
    written = tmp_path / "written-by-model"
    folder = torchscript_package(tmp_path / "pkg")
    save_torchscript(SavesToDisk(str(written)), folder / "weights.pt")
    package = zip_folder(folder, tmp_path / "pkg.zip")
    proc = plan(package, volume)
    assert_bad_input(proc, f"'weights.pt' of model package {str(package)!r}", "writes files")
    assert not written.exists()
    load_package(package, trust=True)  # its period is measured: forward passes
    assert written.exists()


def test_bit_flipped_torchscript_weights_refused(tmp_path: Path) -> None:
    folder = torchscript_package(tmp_path / "pkg")
    with zipfile.ZipFile(folder / "weights.pt") as zf:
        name = max(zf.infolist(), key=lambda i: i.file_size if "/data/" in i.filename else 0)
    _flip_byte(folder / "weights.pt", name.filename)
    with pytest.raises(StitchsafeError, match=r"'weights.pt' of model package .* damaged: CRC"):
        load_package(folder)


def _data_offset(path: Path, name: str) -> int:
    """Where member ``name``'s (compressed) data starts in the zip file."""
    with zipfile.ZipFile(path) as zf:
        start = zf.getinfo(name).header_offset
    header = path.read_bytes()[start : start + 30]
    return (
        start
        + 30
        + int.from_bytes(header[26:28], "little")
        + int.from_bytes(header[28:30], "little")
    )


def _flip_byte(path: Path, name: str) -> None:
    """Corrupt one byte in the middle of a stored member (its CRC no longer matches)."""
    with zipfile.ZipFile(path) as zf:
        size = zf.getinfo(name).compress_size
    data = bytearray(path.read_bytes())
    data[_data_offset(path, name) + size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of the test's own for the console script: what the run leaves there."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


def test_zip_bomb_weights_refused(tmp_path: Path, volume: str, tmpdir_env: Path) -> None:
    # 64 MiB of zeros deflate to ~64 KiB: refused from its declared sizes, never extracted
    folder = torchscript_package(tmp_path / "pkg")
    (folder / "weights.pt").write_bytes(bytes(64 << 20))
    package = zip_folder(folder, tmp_path / "bomb.zip")
    assert package.stat().st_size < 1 << 20
    proc = plan(package, volume)
    assert_bad_input(proc, "'weights.pt' would expand", "zip bomb")
    assert not any(tmpdir_env.iterdir())


def test_oversized_member_refused(tmp_path: Path, volume: str, tmpdir_env: Path) -> None:
    folder = torchscript_package(tmp_path / "pkg")
    package = tmp_path / "big.zip"
    with zipfile.ZipFile(package, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
        # the central directory declares 5 GiB for the weights (the data stays small)
        info = zf.getinfo("weights.pt")
        info.file_size = info.compress_size = 5 << 30
    assert MAX_MEMBER_BYTES < 5 << 30
    proc = plan(package, volume)
    assert_bad_input(proc, "'weights.pt' is 5.0 GiB", "per file", "pass its folder")
    assert not any(tmpdir_env.iterdir())


def test_only_needed_members_extracted(tmp_path: Path, volume: str, tmpdir_env: Path) -> None:
    # a bomb and a corrupt member the description does not name: never touched
    folder = torchscript_package(tmp_path / "pkg")
    package = zip_folder(folder, tmp_path / "pkg.zip", **{"bomb.npy": bytes(64 << 20)})
    with zipfile.ZipFile(package, "a", zipfile.ZIP_STORED) as zf:
        zf.writestr("corrupt.bin", os.urandom(4096))
    _flip_byte(package, "corrupt.bin")
    proc = plan(package, volume, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["plan"]["model"]["format"] == "bioimageio"
    assert not any(tmpdir_env.iterdir())


def test_corrupt_weights_member_refused(tmp_path: Path) -> None:
    folder = torchscript_package(tmp_path / "pkg")
    package = tmp_path / "pkg.zip"
    with zipfile.ZipFile(package, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
    _flip_byte(package, "weights.pt")
    with pytest.raises(StitchsafeError, match=r"'weights.pt' could not be extracted .*CRC"):
        load_package(package)


def test_member_outside_the_zip_refused(tmp_path: Path, volume: str) -> None:
    folder = torchscript_package(tmp_path / "pkg")
    package = zip_folder(folder, tmp_path / "slip.zip", **{"../escaped.py": b"x = 1\n"})
    proc = plan(package, volume)
    assert_bad_input(proc, "'../escaped.py'", "outside its folder")
    assert not (tmp_path / "escaped.py").exists()
    # a description naming a file beside the zip: refused, not read
    torchscript_package(tmp_path / "pkg2", "../shared.pt")
    package = zip_folder(tmp_path / "pkg2", tmp_path / "outside.zip")
    with pytest.raises(StitchsafeError, match="'../shared.pt' lies outside the zip"):
        load_package(package)


def test_weights_outside_the_folder_recorded(tmp_path: Path) -> None:
    folder = torchscript_package(tmp_path / "pkg", "../shared/weights.pt")
    outside = str((tmp_path / "shared" / "weights.pt").resolve())
    with open_package(folder, "test package") as files:
        files.file("../shared/weights.pt", "weights")
        files.file("README.md", "documentation")
        assert files.files() == (str(folder), outside)
    if "files" not in LoadedModel.__dataclass_fields__:
        pytest.skip("LoadedModel.files (models/_loaded.py) is not there yet")
    assert load_package(folder).files == (str(folder), outside)


def test_zip_extracts_into_a_removed_temporary_folder(tmp_path: Path) -> None:
    package = zip_folder(torchscript_package(tmp_path / "pkg"), tmp_path / "pkg.zip")
    with open_package(package, "test package") as files:
        root = files.root
        assert sorted(p.name for p in root.iterdir()) == ["rdf.yaml"]
        assert files.file("weights.pt", "weights").read_bytes()[:2] == b"PK"
        assert files.files() == (str(package),)
    assert not root.exists()
    shutil.rmtree(tmp_path / "pkg")


def test_member_named_twice_refused(tmp_path: Path) -> None:
    # zipfile reads the last of two members of one name; other zip readers the first
    package = zip_folder(torchscript_package(tmp_path / "pkg"), tmp_path / "twice.zip")
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(package, "a") as zf,
    ):
        zf.writestr("weights.pt", b"not the weights")
    with pytest.raises(StitchsafeError, match="named twice \\(e.g. 'weights.pt'"):
        load_package(package)


def test_resume_refuses_changed_weights_outside_the_folder(tmp_path: Path, volume: str) -> None:
    folder = torchscript_package(tmp_path / "pkg", "../shared/weights.pt")
    out = tmp_path / "out.zarr"
    args = ["--model", str(folder), "--input", volume, "--output", str(out), "--no-labels"]
    args += ["--tile-shape", "8,10", "--device", "cpu"]
    proc = run_cli("predict", *args)
    assert proc.returncode == 0, proc.stderr
    save_torchscript(make_net(NET, seed=5, out_channels=2)[0], tmp_path / "shared" / "weights.pt")
    assert_bad_input(run_cli("predict", *args, "--resume"), "changed: weights.pt")
