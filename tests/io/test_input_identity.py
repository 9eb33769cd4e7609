"""Which input a run read: its identity in the run fingerprint, and what ``--resume`` checks.

Through the console script: a resume onto another volume (same shape, same path), onto the
same data at another path, or into an output whose fingerprint has no input identity is
refused with exit 2; the same input resumes bit-identically; a tile marked done whose
chunk is missing is computed again; a plan too fine to track in memory is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli
from images import random_image, write_zarr
from nets import make_net
from packages import NET, torchscript_package

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import make_plan, unet_geometry
from stitchsafe.io import (
    MAX_RESUME_TILES,
    SAMPLE_BOX_BYTES,
    SAMPLE_BOXES,
    check_fingerprint,
    done_mask_path,
    input_identity,
    open_volume,
    run_fingerprint,
    with_sources,
)
from stitchsafe.models import save_checkpoint, save_torchscript, unet_metadata

ROLES = ["embedding", "embedding", "foreground"]


def _data(seed: int = 0) -> np.ndarray:
    zz, yy, xx = np.mgrid[:8, :32, :32]
    wave = np.sin(zz / 2.0 + seed) * np.cos(yy / 3.0) * np.sin(xx / 4.0)
    return (1000 * (wave > 0.1) + 7 * xx).astype(np.uint16)


def _write(path: Path, data: np.ndarray) -> None:
    zarr.create_array(path, data=data, chunks=(8, 16, 16), overwrite=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("identity")
    net, cfg = make_net("3d-d1-f2", out_channels=3)
    meta = unet_metadata(cfg, channel_roles=ROLES, labels={"threshold": 0.05, "min_size": 2})
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    _write(tmp / "vol.zarr", _data())
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


def _args(s: dict[str, Path], out: Path, *extra: str, input: Path | None = None) -> list[str]:
    return [
        "predict", "--model", str(s["model"]), "--input", str(input or s["input"]),
        "--output", str(out), "--tile-shape", "4,8,8", "--device", "cpu", "--no-progress",
        "--no-labels", "--json", *extra,
    ]  # fmt: skip


def _embeddings(out: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(out / "0", mode="r"))


@pytest.fixture(scope="module")
def reference(setup: dict[str, Path]) -> np.ndarray:
    proc = run_cli(*_args(setup, setup["tmp"] / "ref.zarr"))
    assert proc.returncode == 0, proc.stderr
    return _embeddings(setup["tmp"] / "ref.zarr")


def _finished_output(setup: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the reference run's output (a finished run on ``setup["input"]``)."""
    out = tmp_path / "out.zarr"
    shutil.copytree(setup["tmp"] / "ref.zarr", out)
    return out


def test_resume_refuses_another_volume_of_the_same_shape_at_the_same_path(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    vol = tmp_path / "vol.zarr"
    _write(vol, _data())
    out = tmp_path / "out.zarr"
    assert run_cli(*_args(setup, out, input=vol)).returncode == 0
    # The same values moved along x: same shape, dtype, chunks and intensity percentiles,
    # so only the sample of the data tells the two volumes apart.
    _write(vol, np.roll(_data(), 8, axis=2))
    proc = run_cli(*_args(setup, out, "--resume", input=vol))
    assert_bad_input(
        proc, "cannot resume", "the input differs", "its data", "sha-256", "original input"
    )
    assert "--overwrite" in proc.stderr and "normalisation" not in proc.stderr
    _write(vol, _data())  # the original data again: the same input resumes
    proc = run_cli(*_args(setup, out, "--resume", input=vol))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tiles"] == 0


def test_resume_refuses_the_same_data_at_another_path(
    setup: dict[str, Path], reference: np.ndarray, tmp_path: Path
) -> None:
    out = _finished_output(setup, tmp_path)
    moved = tmp_path / "moved.zarr"
    shutil.copytree(setup["input"], moved)
    proc = run_cli(*_args(setup, out, "--resume", input=moved))
    assert_bad_input(proc, "its path", str(setup["input"]), "original input", "--overwrite")
    assert "its data" not in proc.stderr


def test_resume_recomputes_tiles_marked_done_whose_chunk_is_missing(
    setup: dict[str, Path], reference: np.ndarray, tmp_path: Path
) -> None:
    out = _finished_output(setup, tmp_path)
    image = out  # the container predict made is the image
    mask = zarr.open_array(done_mask_path(out, ""), mode="r+")
    assert mask.shape == (2, 4, 4) and np.all(mask[...] == 1)
    lost = [(0, 0, 0), (1, 3, 2), (0, 2, 3)]  # marked done, chunk deleted
    interrupted = [(1, 0, 1), (0, 1, 1)]  # not marked done, chunk deleted
    for z, y, x in lost + interrupted:
        (image / "0" / "c" / "0" / str(z) / str(y) / str(x)).unlink()
    for t in interrupted:
        mask[t] = 0
    group = zarr.open_group(image, mode="r+")
    group.attrs["stitchsafe"] = {**group.attrs["stitchsafe"], "complete": False}
    proc = run_cli(*_args(setup, out, "--resume"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tiles"] == len(lost) + len(interrupted)
    np.testing.assert_array_equal(_embeddings(out), reference)  # bit-identical
    assert np.all(zarr.open_array(done_mask_path(out, ""), mode="r")[...] == 1)


def test_resume_refuses_an_output_whose_fingerprint_has_no_input(
    setup: dict[str, Path], reference: np.ndarray, tmp_path: Path
) -> None:
    out = _finished_output(setup, tmp_path)
    group = zarr.open_group(out, mode="r+")
    attrs = group.attrs["stitchsafe"]
    old = {k: v for k, v in attrs["run"].items() if k not in ("input", "model_files")}
    group.attrs["stitchsafe"] = {**attrs, "run": old}
    proc = run_cli(*_args(setup, out, "--resume"))
    assert_bad_input(proc, "cannot resume", "did not record which input", "--overwrite")


def test_resume_of_a_plan_too_fine_to_track_exits_2_before_reading_the_mask(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    huge = tmp_path / "huge.zarr"  # 10**12 voxels declared, none stored
    zarr.create_array(huge, shape=(10_000,) * 3, dtype="uint8", chunks=(64, 256, 256))
    out = tmp_path / "out.zarr"
    args = [a if a != "4,8,8" else "16,16,16" for a in _args(setup, out, input=huge)]
    args += ["--normalize", "none"]
    run = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not Path(done_mask_path(out, ""), "zarr.json").exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
    finally:
        run.kill()
        run.communicate()
    proc = run_cli(*args, "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    error = proc.stderr[proc.stderr.index("Error: ") :]  # after the note on the stale lock
    assert "\n" not in error.strip(), error
    for word in ("cannot resume", "244,140,625 tiles", f"{MAX_RESUME_TILES:,}", "--tile-shape"):
        assert word in error, error


def test_identity_of_zarr_and_tiff_inputs(tmp_path: Path) -> None:
    data = _data()
    _write(tmp_path / "a.zarr", data)
    tifffile.imwrite(tmp_path / "a.tif", data, tile=(16, 16))
    a = input_identity(open_volume(tmp_path / "a.zarr", spatial_dims=3))
    t = input_identity(open_volume(tmp_path / "a.tif", spatial_dims=3))
    assert (a.kind, t.kind) == ("zarr", "tiff")
    assert a.chunks == (8, 16, 16) and t.chunks == (1, 16, 16)
    assert a.path == os.path.realpath(tmp_path / "a.zarr") and t.key == "0"
    # Boxes start on chunk corners and stay inside one chunk each, first and last included.
    assert len(a.sample_boxes) == 4 and a.sample_boxes[-1] == ((0, 16, 16), (8, 32, 32))
    assert len(t.sample_boxes) == SAMPLE_BOXES  # of 32 chunks (one page, one TIFF tile)
    assert t.sample_boxes[0] == ((0, 0, 0), (1, 16, 16))
    assert t.sample_boxes[-1] == ((7, 16, 16), (8, 32, 32))
    tifffile.imwrite(tmp_path / "a.tif", data, tile=(16, 16))  # the same data, written again
    assert input_identity(open_volume(tmp_path / "a.tif", spatial_dims=3)) == t
    changed = data.copy()
    changed[7, 16, 16] += 1  # one voxel of the last sample box
    tifffile.imwrite(tmp_path / "a.tif", changed, tile=(16, 16))
    again = input_identity(open_volume(tmp_path / "a.tif", spatial_dims=3))
    assert again.sample_boxes == t.sample_boxes and again.sample_sha256 != t.sample_sha256


def test_identity_reads_a_bounded_sample_of_a_huge_volume(tmp_path: Path) -> None:
    zarr.create_array(
        tmp_path / "huge.zarr", shape=(2, 10_000, 10_000, 10_000), dtype="float32",
        chunks=(2, 64, 512, 512),
    )  # fmt: skip
    ident = input_identity(open_volume(tmp_path / "huge.zarr", spatial_dims=3))
    assert ident.chunks == (2, 64, 512, 512) and len(ident.sample_boxes) == SAMPLE_BOXES
    for begin, end in ident.sample_boxes:
        assert all(b % c == 0 for b, c in zip(begin, (64, 512, 512)))  # chunk corners
        assert all(e - b <= c for b, e, c in zip(begin, end, (64, 512, 512)))  # one chunk
        assert 2 * 4 * int(np.prod(np.subtract(end, begin))) <= SAMPLE_BOX_BYTES
    assert ident.sample_boxes[0][0] == (0, 0, 0)
    assert ident.sample_boxes[-1][0] == (9984, 9728, 9728)  # the last chunk's corner


def test_fingerprint_names_each_changed_model_file() -> None:
    plan = make_plan((20, 20), unet_geometry([(2, 2)]), tile_shape=(4, 4))
    settings = {"pad_mode": "reflect", "precision": "fp32", "embeddings_dtype": "float32"}
    base = run_fingerprint(plan, model_sha256="a", normalization={"method": "none"}, **settings)
    ident = {"path": "/in.zarr", "sample": {"boxes": [], "sha256": "0" * 64}}
    files = [("rdf.yaml", "a"), ("weights.pt", "b")]
    stored = with_sources(base, input_identity=ident, model_files=files)
    check_fingerprint(json.loads(json.dumps(stored)), stored, "out")
    moved = with_sources(base, input_identity=ident, model_files=files[::-1])
    check_fingerprint(stored, moved, "out")  # the same files, listed in another order
    new = with_sources(base, input_identity=ident, model_files=[files[0], ("weights.pt", "c")])
    with pytest.raises(StitchsafeError, match=r"the model file\(s\) \(changed: weights.pt\)"):
        check_fingerprint(stored, new, "out")
    with pytest.raises(StitchsafeError, match="did not record which input"):
        check_fingerprint(base, new, "out")


def test_resume_refuses_changed_package_weights_outside_the_package(tmp_path: Path) -> None:
    # A bioimage.io package whose weights lie outside its folder: the folder's own hash
    # does not change when they do, the model files' hashes do.
    pytest.importorskip("bioimageio.spec")

    package = torchscript_package(tmp_path / "pkg", "../shared/weights.pt")
    volume = write_zarr(tmp_path / "vol.zarr", random_image((40, 50)))
    args = [
        "predict", "--model", str(package), "--input", volume, "--output",
        str(tmp_path / "out.zarr"), "--tile-shape", "8,10", "--device", "cpu",
        "--no-progress", "--no-labels",
    ]  # fmt: skip
    assert (first := run_cli(*args)).returncode == 0, first.stderr
    other, _ = make_net(NET, seed=1, out_channels=2)
    save_torchscript(other, tmp_path / "shared" / "weights.pt")
    proc = run_cli(*args, "--resume")
    assert_bad_input(proc, "cannot resume", "the model file(s) (changed: weights.pt)")
    assert "the input differs" not in proc.stderr
