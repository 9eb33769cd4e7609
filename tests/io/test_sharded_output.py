"""Large tiles through the console script: sharded output, equal to an unsharded run.

A 2-D run with 288 x 288 tiles (more than the 256^2 voxels of an inner chunk) writes its
embeddings and labels as one shard per tile of bounded inner chunks. The embeddings equal,
bit for bit, the same plan run into one chunk per tile (the layout before sharding); the
labels equal the whole-array labelling, also when ``segment`` and a labels-only run derive
them from the shards; OME-Zarr readers open it; ``info`` counts its tiles. A run killed
mid-way (SIGKILL, as in the resume tests) resumes to the same output, and a shard missing
for a tile marked done, or damaged for a tile not done, is computed again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from cli_helpers import EXE, run_cli
from nets import make_net

from stitchsafe.engine import run_plan
from stitchsafe.geometry import make_plan
from stitchsafe.io import ChunkPolicy, ImageLayout, create_output, open_volume
from stitchsafe.labels import LabelParams, label_array
from stitchsafe.models import load_model, save_checkpoint, unet_metadata

ROLES = ["embedding", "embedding", "foreground"]
SHAPE, TILE = (400, 864), (288, 288)  # 2 x 3 tiles, the last row partial (112 rows)
LABELS = "labels/instances/0"  # the container predict made is the image


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("sharded")
    net, cfg = make_net("2d-d1-f2", out_channels=3)
    meta = unet_metadata(cfg, channel_roles=ROLES, labels={"threshold": 0.05, "min_size": 2})
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    data = (np.cos(yy / 7.0) * np.sin(xx / 9.0) > 0.1).astype(np.float32)
    data += np.random.default_rng(0).normal(scale=0.1, size=SHAPE).astype(np.float32)
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(128, 128))
    run = {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr", "cfg": cfg}
    proc = run_cli(*_args(run, tmp / "sharded.zarr"))
    assert proc.returncode == 0, proc.stderr
    run["result"] = json.loads(proc.stdout)
    return run


def _args(s: dict[str, Any], out: Path, *extra: str) -> list[str]:
    return [
        "predict", "--model", str(s["model"]), "--input", str(s["input"]), "--output", str(out),
        "--tile-shape", ",".join(map(str, TILE)), "--device", "cpu", "--no-progress", "--json",
        "--normalize", "none", "--batch-size", "1", *extra,
    ]  # fmt: skip


def _read(out: Path, inner: str = "0") -> np.ndarray:
    return np.asarray(zarr.open_array(out / inner, mode="r")[...])


def _unsharded_reference(s: dict[str, Any]) -> np.ndarray:
    """The same plan run into one chunk per tile, every channel (no sharding)."""
    plan = make_plan(SHAPE, s["cfg"].geometry(), tile_shape=TILE)
    whole_tiles = ChunkPolicy(target_voxels=1 << 62, max_bytes=1 << 62)
    layout = ImageLayout(
        shape=SHAPE, chunks=plan.chunks, axes="yx", channels=3, chunking=whole_tiles
    )
    spec = create_output(s["tmp"] / "unsharded.zarr", layout, overwrite=True)
    volume = open_volume(s["input"], spatial_dims=2)
    run_plan(volume, load_model(s["model"]), plan, spec, progress=False, batch_size=1)
    volume.close()
    arr = zarr.open_array(s["tmp"] / "unsharded.zarr" / "embeddings" / "0", mode="r")
    assert arr.shards is None and arr.chunks == (3, *TILE)
    return np.asarray(arr[...])


def _params() -> LabelParams:
    return LabelParams(0.05, min_size=2, channel_roles=tuple(ROLES))


def test_large_tiles_write_sharded_output_equal_to_an_unsharded_run(setup: dict[str, Any]) -> None:
    out = setup["tmp"] / "sharded.zarr"
    emb = zarr.open_array(out / "0", mode="r")
    assert (emb.shards, emb.chunks) == ((3, *TILE), (1, 144, 288))
    labels = zarr.open_array(out / LABELS, mode="r")
    assert (labels.shards, labels.chunks) == (TILE, (144, 288))
    # One stored object per tile: 6 shard files, not one per inner chunk.
    shard_files = [p for p in (out / "0" / "c").rglob("*") if p.is_file()]
    assert len(shard_files) == 6
    np.testing.assert_array_equal(emb[...], _unsharded_reference(setup))
    np.testing.assert_array_equal(labels[...], label_array(emb[...], params=_params()))
    assert setup["result"]["objects"] == int(labels[...].max()) > 5
    info = run_cli("info", str(out), "--json")
    assert info.returncode == 0, info.stderr
    d = json.loads(info.stdout)
    assert d["tiles"] == {"done": 6, "total": 6} and d["complete"] is True
    arrays = {a["path"]: a for a in d["arrays"]}
    assert arrays["0"]["shards"] == [3, *TILE]
    assert arrays["0"]["chunks"] == [1, 144, 288]


def test_sharded_output_opens_with_ome_zarr_readers(setup: dict[str, Any]) -> None:
    models = pytest.importorskip("ome_zarr_models.v05")
    reader = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    root = setup["tmp"] / "sharded.zarr"
    models.Image.from_zarr(zarr.open_group(str(root)))
    models.ImageLabel.from_zarr(zarr.open_group(str(root / "labels" / "instances")))
    nodes = list(reader.Reader(parse_url(str(root)))())
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), _read(root))
    found = [n for n in nodes if str(n.zarr).split()[0].endswith("instances")]
    np.testing.assert_array_equal(np.asarray(found[0].data[0]), _read(root, LABELS))


def test_segment_and_labels_only_read_and_write_shards(setup: dict[str, Any]) -> None:
    out = setup["tmp"] / "segment.zarr"
    shutil.copytree(setup["tmp"] / "sharded.zarr", out)
    expected = _read(out, LABELS)
    segment = run_cli("segment", "--input", str(out), "--overwrite", "--no-progress", "--json")
    assert segment.returncode == 0, segment.stderr
    np.testing.assert_array_equal(_read(out, LABELS), expected)
    assert zarr.open_array(out / LABELS, mode="r").shards == TILE
    only = setup["tmp"] / "labels-only.zarr"
    proc = run_cli(*_args(setup, only, "--no-embeddings"))
    assert proc.returncode == 0, proc.stderr
    labels = zarr.open_array(only / "0", mode="r")
    assert (labels.shards, labels.chunks) == (TILE, (144, 288))
    np.testing.assert_array_equal(labels[...], expected)


def _kill_while_writing(args: list[str], out: Path) -> None:
    """Start ``stitchsafe ARGS`` and SIGKILL it as soon as its first shard is stored (the
    resume tests' interruption, timed by the shards rather than the done mask)."""
    shards = out / "0" / "c"
    proc = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if shards.is_dir() and any(p.is_file() for p in shards.rglob("*")):
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_then_resume_of_a_sharded_run_equals_the_uninterrupted_run(
    setup: dict[str, Any],
) -> None:
    out = setup["tmp"] / "killed.zarr"
    _kill_while_writing(_args(setup, out), out)
    finished = int(np.count_nonzero(_read(out, ".stitchsafe/done")))
    resumed = run_cli(*_args(setup, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["tiles"] == 6 - finished
    ref = setup["tmp"] / "sharded.zarr"
    np.testing.assert_array_equal(_read(out), _read(ref))
    np.testing.assert_array_equal(_read(out, LABELS), _read(ref, LABELS))


def test_resume_recomputes_missing_and_damaged_shards(setup: dict[str, Any]) -> None:
    out = setup["tmp"] / "damaged.zarr"
    shutil.copytree(setup["tmp"] / "sharded.zarr", out)  # a finished sharded run
    image = out
    mask = zarr.open_array(out / ".stitchsafe/done", mode="r+")
    lost = [(0, 0), (1, 1)]  # marked done, shard deleted: the cross-check finds them
    damaged = [(1, 2)]  # not marked done, shard left damaged by a crash: rewritten whole
    for y, x in lost:
        (image / "0" / "c" / "0" / str(y) / str(x)).unlink()
    for y, x in damaged:
        (image / "0" / "c" / "0" / str(y) / str(x)).write_bytes(b"half a shard")
        mask[y, x] = 0
    group = zarr.open_group(image, mode="r+")
    group.attrs["stitchsafe"] = {**group.attrs["stitchsafe"], "complete": False}
    proc = run_cli(*_args(setup, out, "--resume", "--no-labels"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tiles"] == len(lost) + len(damaged)
    np.testing.assert_array_equal(_read(out), _read(setup["tmp"] / "sharded.zarr"))
    assert np.all(_read(out, ".stitchsafe/done") == 1)
