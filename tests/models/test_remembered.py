"""Geometry verdicts remembered between runs (``STITCHSAFE_CACHE_DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_helpers import run_cli
from nets import make_net, write_model

import stitchsafe
from stitchsafe.errors import GeometryMismatchError
from stitchsafe.models import CACHE_ENV, geometry_cache_dir, unet_metadata

PROBED = "by probing"  # cross-checked, or measured when nothing is declared
REMEMBERED = "remembered in"


def _model(tmp: Path, name: str = "m.pt", seed: int = 0, metadata: bool = True) -> Path:
    net, cfg = make_net("3d-d1-f2", seed=seed)
    return write_model(
        net, cfg, tmp / name, "stitchsafe", metadata=unet_metadata(cfg) if metadata else None
    )


def _input(tmp: Path) -> Path:
    path = tmp / "in.zarr"
    data = np.random.default_rng(0).random((20, 24, 28), dtype=np.float32)
    zarr.create_array(path, shape=data.shape, dtype="float32")[...] = data
    return path


def _log(model: stitchsafe.Model) -> str:
    return " ".join(model.loaded.probe_log)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder / "geometry"


def test_a_second_load_reads_the_verdict_instead_of_probing(tmp_path: Path, cache: Path) -> None:
    path = _model(tmp_path)
    first = stitchsafe.load_model(path)
    assert PROBED in _log(first) and REMEMBERED not in _log(first)
    (entry,) = cache.glob("*.json")
    record = json.loads(entry.read_text())
    assert record["source"] == "metadata" and record["model"] == str(path)
    second = stitchsafe.load_model(path)
    assert REMEMBERED in _log(second) and PROBED not in _log(second)
    assert second.geometry == first.geometry and second.source == first.source
    # the remembered geometry plans and predicts as the probed one does
    data = _input(tmp_path)
    out = {}
    for name, model in (("first", first), ("second", second)):
        r = stitchsafe.predict(
            model, data, output=tmp_path / f"{name}.zarr", progress=False, labels=False
        )
        out[name] = np.asarray(zarr.open_array(f"{r.output}/{r.embeddings}", mode="r"))
    np.testing.assert_array_equal(out["first"], out["second"])


def test_other_bytes_or_flags_probe_again(tmp_path: Path, cache: Path) -> None:
    stitchsafe.load_model(_model(tmp_path, "a.pt", seed=0))
    other = stitchsafe.load_model(_model(tmp_path, "a.pt", seed=1))  # same path, new weights
    assert PROBED in _log(other)
    bare = _model(tmp_path, "bare.pt", metadata=False)
    stitchsafe.load_model(bare, pooling_factors=2, depth=1)
    assert PROBED not in _log(stitchsafe.load_model(bare, pooling_factors=2, depth=1))
    assert PROBED in _log(stitchsafe.load_model(bare))  # no flags: probed, another entry
    assert len(list(cache.glob("*.json"))) == 4


def test_an_unreadable_entry_is_probed_again_and_replaced(tmp_path: Path, cache: Path) -> None:
    path = _model(tmp_path)
    probed = stitchsafe.load_model(path)
    (entry,) = cache.glob("*.json")
    entry.write_text("{not json")
    again = stitchsafe.load_model(path)
    assert PROBED in _log(again) and again.geometry == probed.geometry
    assert json.loads(entry.read_text())["geometry"] == probed.geometry.to_dict()
    assert REMEMBERED in _log(stitchsafe.load_model(path))


def test_a_folder_that_cannot_be_written_only_means_probing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    path = _model(tmp_path)
    for _ in range(2):
        assert PROBED in _log(stitchsafe.load_model(path))
    assert blocker.read_text() == "not a folder"


def test_refusals_are_never_remembered(tmp_path: Path, cache: Path) -> None:
    net, cfg = make_net("3d-d1-f2")
    meta = unet_metadata(make_net("3d-aniso-122-d2")[1])  # another net's geometry
    path = write_model(net, cfg, tmp_path / "wrong.pt", "stitchsafe", metadata=meta)
    for _ in range(2):
        with pytest.raises(GeometryMismatchError):
            stitchsafe.load_model(path)
    assert not cache.exists() or not list(cache.glob("*.json"))


def test_off_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert geometry_cache_dir() is None
    for _ in range(2):
        assert PROBED in _log(stitchsafe.load_model(_model(tmp_path)))
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()


def test_the_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert geometry_cache_dir() == tmp_path / "xdg" / "stitchsafe" / "geometry"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert geometry_cache_dir() == tmp_path / "home" / ".cache" / "stitchsafe" / "geometry"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert geometry_cache_dir() == tmp_path / "mine" / "geometry"


def test_the_console_script_remembers_between_runs(tmp_path: Path, cache: Path) -> None:
    path = _model(tmp_path)
    args = ["plan", "-v", "--model", str(path), "--input", str(_input(tmp_path)), "--device", "cpu"]
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert PROBED in first.stderr and REMEMBERED not in first.stderr
    assert REMEMBERED in second.stderr and PROBED not in second.stderr
    assert first.stdout == second.stdout
