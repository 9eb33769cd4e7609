"""Labels-only runs (``predict --no-embeddings``): the labels of a full run, no embeddings.

Oracle: :func:`stitchsafe.labels.label_array` over one whole-volume forward pass, for
several architectures, odd volume shapes, and plain, seeded and grown labelling; plus
property tests of the voxel codes against the embedding-based functions they replace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from nets import make_net

import stitchsafe
from stitchsafe.engine import whole_volume_forward
from stitchsafe.geometry import Box
from stitchsafe.io import bookkeeping_path, done_mask_path, read_pyramid
from stitchsafe.labels import (
    ExtendedTiles,
    LabelParams,
    face_slices,
    grow_by_codes,
    grow_labels,
    label_array,
    lattice_margin,
    link_mask,
    seed_mask,
    tile_codes,
)
from stitchsafe.models import load_model, save_checkpoint, unet_metadata

ROLES = ("embedding", "embedding", "foreground")

# (test net, volume shape, tile shape): odd shapes, tiles cut by the volume's end.
CASES = [
    ("2d-d1-f2", (37, 53), (8, 10)),
    ("2d-d2-f3", (41, 47), (9, 18)),
    ("2d-d3-nearest", (35, 50), (8, 16)),
    ("3d-d1-f2", (13, 29, 31), (4, 8, 6)),
    ("3d-aniso-122-d2", (11, 30, 27), (4, 8, 12)),
]
# How the labels are made: plain links, seeds, seeds grown into the foreground.
MODES = {
    "plain": {},
    "seeded": {"seed_q": 0.5},
    "grown": {"seed_q": 0.3, "grow": 3},
}


def _volume(shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    wave = np.prod([np.sin(g / (2.0 + i)) for i, g in enumerate(grids)], axis=0)
    noise = np.random.default_rng(len(shape)).random(shape)
    return ((wave > 0.1) + 0.2 * noise).astype(np.float32)


def _neighbour_distances(emb: np.ndarray) -> np.ndarray:
    e = emb[:2]
    out = []
    for axis in range(e.ndim - 1):
        lo, hi = face_slices(axis, e.ndim - 1)
        out.append(np.sqrt(((e[(slice(None), *lo)] - e[(slice(None), *hi)]) ** 2).sum(0)).ravel())
    return np.concatenate(out)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("labels-only")
    paths = {}
    for name, shape, _ in CASES:
        net, cfg = make_net(name, out_channels=3)
        paths[name] = tmp / f"{name}.pt"
        save_checkpoint(net, paths[name], metadata=unet_metadata(cfg, channel_roles=list(ROLES)))
        data = _volume(shape)
        zarr.create_array(tmp / f"{name}.zarr", data=data, chunks=tuple(min(s, 16) for s in shape))
    paths["tmp"] = tmp
    return paths


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name, shape, tile", CASES, ids=[c[0] for c in CASES])
def test_labels_only_equals_labelling_the_whole_volume_pass(
    models: dict[str, Path], name: str, shape: tuple[int, ...], tile: tuple[int, ...], mode: str
) -> None:
    tmp = models["tmp"]
    model = load_model(models[name])
    data = np.asarray(zarr.open_array(tmp / f"{name}.zarr", mode="r"))
    geometry = make_net(name, out_channels=3)[1].geometry()
    oracle = whole_volume_forward(data[None], model, geometry, pad_mode="reflect")
    # Thresholds from the oracle's own distances, so that links and seeds both matter.
    dist = _neighbour_distances(oracle)
    settings_ = MODES[mode]
    threshold = float(np.quantile(dist, 0.6))
    seed = float(np.quantile(dist, settings_["seed_q"])) if "seed_q" in settings_ else None
    grow = settings_.get("grow", 0)
    # Foreground cuts (probabilities) that keep about 60 % and 50 % of the voxels.
    fg_cut, seed_cut = (float(1 / (1 + np.exp(-np.quantile(oracle[2], q)))) for q in (0.4, 0.5))
    params = LabelParams(
        threshold,
        min_size=3,
        foreground_threshold=fg_cut,
        channel_roles=ROLES,
        seed_threshold=seed,
        seed_foreground_threshold=seed_cut,
        grow=grow,
    )
    result = stitchsafe.predict(
        models[name],
        tmp / f"{name}.zarr",
        output=tmp / f"{name}-{mode}.out.zarr",
        tile_shape=tile,
        device="cpu",
        progress=False,
        normalize="none",
        threshold=threshold,
        min_size=3,
        foreground_threshold=fg_cut,
        seed_threshold=seed,
        seed_foreground_threshold=seed_cut if seed is not None else None,
        grow=grow,
        embeddings=False,
    )
    assert result.embeddings is None and result.labels == "0"  # the new container is the image
    labels = np.asarray(zarr.open_array(Path(result.output) / result.labels, mode="r"))
    expected = label_array(oracle, params=params)
    assert expected.max() >= 3, "the case must make several objects"
    np.testing.assert_array_equal(labels, expected)
    assert result.objects == expected.max()
    # Nothing but the labels, their pyramid levels (and, in the bookkeeping folder, the
    # done mask) is left on disk.
    image = Path(result.output)
    levels = [level.path for level in read_pyramid(result.output, "").levels]
    assert sorted(os.listdir(image)) == sorted([*levels, "zarr.json", ".stitchsafe"])
    assert os.listdir(bookkeeping_path(result.output, "")) == ["done"]
    assert not (Path(result.output) / "embeddings").exists()
    assert len(result.plan.plan) == result.tiles > 1


def test_extended_tiles_stay_on_the_lattice() -> None:
    from stitchsafe.geometry import make_plan

    geometry = make_net("3d-aniso-122-d2")[1].geometry()
    plan = make_plan((11, 30, 27), geometry, tile_shape=(4, 8, 12))
    margin = lattice_margin(plan, 2)
    assert all(m % p == 0 and m >= 2 for m, p in zip(margin, geometry.period))
    tiles = ExtendedTiles(plan, margin)
    assert len(tiles) == len(plan) and geometry.is_valid_input(tiles.read_shape)
    for base, t in zip(plan, tiles):
        assert t.read.shape == tiles.read_shape and t.write == base.write
        window = tiles.window(t)
        assert Box.from_shape(plan.volume_shape).contains(window) and window.contains(t.write)
        # The raw output's origin is the block begin minus the margin, on the lattice.
        origin = tuple(b - m for b, m in zip(t.write.begin, margin))
        assert all(o % p == 0 for o, p in zip(origin, geometry.period))
        assert t.crop.shift(origin) == window
    assert tiles[1:3] == [tiles[1], tiles[2]]


@st.composite
def _labelling_case(draw: Any) -> tuple[np.ndarray, LabelParams, np.ndarray]:
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=nd, max_size=nd)))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    # Small integer embeddings: many equal distances, so tie-breaking is exercised.
    emb = rng.integers(0, 3, size=(2, *shape)).astype(np.float32)
    fg = rng.normal(size=(1, *shape)).astype(np.float32)
    data = np.concatenate([emb, fg])
    params = LabelParams(
        draw(st.sampled_from([0.5, 1.0, 1.5, 2.5])),
        channel_roles=ROLES,
        foreground_threshold=draw(st.sampled_from([0.2, 0.5, 0.8])),
        seed_threshold=draw(st.sampled_from([0.5, 1.0, 2.0])),
        seed_foreground_threshold=0.5,
        grow=draw(st.integers(1, 4)),
    )
    labels = rng.integers(0, 4, size=shape).astype(np.uint32) * (rng.random(shape) < 0.3)
    return data, params, labels.astype(np.uint32)


@settings(max_examples=300, deadline=None)
@given(_labelling_case())
def test_codes_reproduce_links_and_growth(case: tuple[np.ndarray, LabelParams, np.ndarray]) -> None:
    data, params, labels = case
    nd = labels.ndim
    mask = seed_mask(data, params)
    whole = tuple(slice(0, s) for s in labels.shape)
    codes = tile_codes(data, mask, whole, params)
    emb = data[:2]
    for axis in range(nd):
        lo, hi = face_slices(axis, nd)
        expected = link_mask(
            emb[(slice(None), *lo)], emb[(slice(None), *hi)], mask[lo] & mask[hi],
            threshold=params.threshold,
        )  # fmt: skip
        np.testing.assert_array_equal((codes[lo] >> (1 + axis)) & 1, expected)
        last = tuple(slice(-1, None) if a == axis else slice(None) for a in range(nd))
        assert not ((codes[last] >> (1 + axis)) & 1).any()
    np.testing.assert_array_equal(
        grow_by_codes(labels, codes, params.grow), grow_labels(labels, data, params)
    )


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("labels-only-cli")
    net, cfg = make_net("3d-d1-f2", out_channels=3)
    data = _volume((16, 64, 64))
    zarr.create_array(tmp / "vol.zarr", data=data, chunks=(16, 32, 32))
    save_checkpoint(net, tmp / "probe.pt", metadata=unet_metadata(cfg))
    oracle = whole_volume_forward(data[None], load_model(tmp / "probe.pt"), cfg.geometry())
    # Defaults stored in the model that make several objects of seeds grown by 2 voxels.
    dist = _neighbour_distances(oracle)
    cut = [float(1 / (1 + np.exp(-np.quantile(oracle[2], q)))) for q in (0.4, 0.5)]
    labels = {
        "threshold": float(np.quantile(dist, 0.6)),
        "min_size": 3,
        "foreground_threshold": cut[0],
        "seed_threshold": float(np.quantile(dist, 0.4)),
        "seed_foreground_threshold": cut[1],
        "grow": 2,
    }
    meta = unet_metadata(cfg, channel_roles=list(ROLES), labels=labels)
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "vol.zarr"}


def _args(s: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "predict", "--model", str(s["model"]), "--input", str(s["input"]), "--output", str(out),
        "--tile-shape", "4,8,8", "--device", "cpu", "--no-progress", "--normalize", "none",
        "--json", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def full_run(cli_setup: dict[str, Path]) -> np.ndarray:
    proc = run_cli(*_args(cli_setup, cli_setup["tmp"] / "full.zarr"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    return np.asarray(zarr.open_array(cli_setup["tmp"] / "full.zarr" / out["labels"], mode="r"))


def test_console_script_writes_the_full_runs_labels_only_as_ome_zarr_labels(
    cli_setup: dict[str, Path], full_run: np.ndarray
) -> None:
    out = cli_setup["tmp"] / "lo.zarr"
    proc = run_cli(*_args(cli_setup, out, "--no-embeddings"))
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["embeddings"] is None and d["labels"] == "0" and d["objects"] > 3
    labels = np.asarray(zarr.open_array(out / d["labels"], mode="r"))
    np.testing.assert_array_equal(labels, full_run)
    levels = [level.path for level in read_pyramid(out, "").levels]
    assert sorted(os.listdir(out)) == sorted([".stitchsafe", *levels, "zarr.json"])
    attrs = zarr.open_group(out, mode="r").attrs.asdict()
    assert attrs["stitchsafe"]["complete"] is True and attrs["stitchsafe"]["labels_only"] is True
    assert attrs["ome"]["image-label"] == {}
    assert [a["name"] for a in attrs["ome"]["multiscales"][0]["axes"]] == ["z", "y", "x"]
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert info["complete"] is True and info["labels"][0]["objects"] == d["objects"]
    # Human-readable output says that no embeddings were written.
    args = [a for a in _args(cli_setup, out, "--no-embeddings", "--overwrite") if a != "--json"]
    plain = run_cli(*args)
    assert plain.returncode == 0 and "no embeddings" in plain.stdout, plain.stderr
    _opens_as_ome_zarr_labels(out)


def _opens_as_ome_zarr_labels(out: Path) -> None:
    """ome-zarr-models validates ``out`` as an image-label; ome-zarr-py's reader finds it as
    a label image holding the written labels."""
    from ome_zarr import reader
    from ome_zarr.io import parse_url
    from ome_zarr_models import v05

    image_label = v05.ImageLabel.from_zarr(zarr.open_group(str(out)))
    assert image_label.attributes.ome.image_label is not None
    nodes = list(reader.Reader(parse_url(str(out)))())  # the container is the label image
    assert nodes and nodes[0].load(reader.Label) is not None
    data = np.asarray(nodes[0].data[0])
    np.testing.assert_array_equal(data, np.asarray(zarr.open_array(out / "0")))


@pytest.mark.parametrize(
    "extra, words",
    [
        (("--no-labels",), ("write nothing",)),
        (("--scheduler", "local:2"), ("threads only",)),
        (("--embeddings-dtype", "float16"), ("no effect",)),
        (("--allow-approximate",), ("exact only",)),
    ],
)
def test_bad_combinations_exit_2_and_write_nothing(
    cli_setup: dict[str, Path], extra: tuple[str, ...], words: tuple[str, ...]
) -> None:
    out = cli_setup["tmp"] / f"bad-{extra[0].strip('-')}.zarr"
    assert_bad_input(run_cli(*_args(cli_setup, out, "--no-embeddings", *extra)), *words)
    assert not out.exists()


def _finished(done: Path) -> int:
    """Tiles the done mask at ``done`` records as finished (0 before it exists)."""
    if not (done / "zarr.json").exists():
        return 0
    return int(np.count_nonzero(zarr.open_array(done, mode="r")[...]))


def test_sigkill_then_resume_gives_the_same_labels(
    cli_setup: dict[str, Path], full_run: np.ndarray
) -> None:
    out = cli_setup["tmp"] / "killed.zarr"
    args = _args(cli_setup, out, "--no-embeddings")
    proc = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    done = Path(done_mask_path(out, ""))
    # Poll the mask's content: a chunk folder or a temporary file (zarr writes chunks
    # atomically, by renaming) appears before any tile is recorded as finished.
    while time.monotonic() < deadline and proc.poll() is None:
        if _finished(done):
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    total = int(np.prod([4, 8, 8]))
    finished = _finished(done)
    assert 0 < finished < total, "the run must be interrupted mid-way"
    # A changed labelling setting is refused: the finished tiles were labelled with the old one.
    assert_bad_input(run_cli(*args, "--resume", "--threshold", "0.5"), "cannot resume")
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["tiles"] == total - finished
    labels = np.asarray(zarr.open_array(out / "0", mode="r"))
    np.testing.assert_array_equal(labels, full_run)
    levels = [level.path for level in read_pyramid(out, "").levels]
    assert sorted(os.listdir(out)) == sorted([*levels, "zarr.json", ".stitchsafe"])
    assert os.listdir(bookkeeping_path(out, "")) == ["done"]


def _kill_mid_way(args: list[str], done: Path, reset: Callable[[], None]) -> int:
    """Start predict, SIGKILL it once its done mask at ``done`` records a finished tile;
    the tiles it finished. A run that finished before the kill landed (a fast, idle
    machine) is undone with ``reset`` and tried again."""
    for _ in range(3):
        proc = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if _finished(done):
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = _finished(done)
        if 0 < finished < 4 * 8 * 8:
            return finished
        reset()
    pytest.fail("the run could not be interrupted mid-way in three tries")


def _ome_home(s: dict[str, Path], home: Path) -> list[str]:
    """``home/raw``: the test volume written by ome-zarr-py; the labels-only predict args
    for it (with ``--output`` of a group ``mine.zarr`` beside it)."""
    ome_writer = pytest.importorskip("ome_zarr.writer")
    data = np.asarray(zarr.open_array(s["input"], mode="r"))
    raw = zarr.open_group(home, mode="w").create_group("raw")
    ome_writer.write_image(data, raw, axes="zyx", scale_factors=[])
    args = _args(s, home.parent / "mine.zarr", "--no-embeddings")
    args[args.index(str(s["input"]))] = str(home)
    return [*args, "--input-key", "raw"]


def test_labels_only_of_the_earlier_layout_resume_where_they_are(
    cli_setup: dict[str, Path], full_run: np.ndarray
) -> None:
    """An interrupted labels-only image ``instances`` beside the raw image (the earlier
    layout) resumes there, and ``info`` reads it."""
    tmp = cli_setup["tmp"]
    home, mine = tmp / "old-home.zarr", tmp / "mine.zarr"
    args = _ome_home(cli_setup, home)
    zarr.open_group(mine, mode="w").create_group("notes")  # a group of the user's
    finished = _kill_mid_way(
        args,
        Path(done_mask_path(mine, "instances")),
        lambda: [shutil.rmtree(mine / p, ignore_errors=True) for p in ("instances", ".stitchsafe")],
    )
    (mine / "instances").rename(home / "instances")
    (home / ".stitchsafe").mkdir()
    (mine / ".stitchsafe" / "instances").rename(home / ".stitchsafe" / "instances")
    here = [a for a in args if a not in ("--output", str(mine))]
    resumed = run_cli(*here, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    d = json.loads(resumed.stdout)
    assert d["labels"] == "instances/0" and d["tiles"] == 4 * 8 * 8 - finished
    np.testing.assert_array_equal(zarr.open_array(home / "instances/0", mode="r"), full_run)
    assert not (home / "raw" / "labels").exists()
    info = json.loads(run_cli("info", str(home), "--json").stdout)
    assert info["image"] == "instances" and info["complete"] is True


def test_labels_only_into_an_ome_zarr_input_resume_under_the_raw_image(
    cli_setup: dict[str, Path], full_run: np.ndarray
) -> None:
    """An OME-Zarr input in its own container: the labels are built in the bookkeeping
    folder and go to ``raw/labels/instances`` when complete, also after a resume."""
    home = cli_setup["tmp"] / "home.zarr"
    args = [
        a
        for a in _ome_home(cli_setup, home)
        if a not in ("--output", str(home.parent / "mine.zarr"))
    ]
    done = Path(done_mask_path(home, "raw/labels/instances"))
    _kill_mid_way(
        args,
        done,
        lambda: [
            shutil.rmtree(home / p, ignore_errors=True) for p in (".stitchsafe", "raw/labels")
        ],
    )
    assert not (home / "raw" / "labels" / "instances").exists()  # not there until complete
    mask = zarr.open_array(done, mode="r+")
    flags = mask[...]
    flags[np.nonzero(flags)[0][::2]] = 0  # half the finished tiles forgotten
    mask[...] = flags
    finished = _finished(done)
    assert_bad_input(run_cli(*args, "--resume", "--threshold", "0.5"), "cannot resume")
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    d = json.loads(resumed.stdout)
    assert d["labels"] == "raw/labels/instances/0" and d["tiles"] == 4 * 8 * 8 - finished
    np.testing.assert_array_equal(
        zarr.open_array(home / "raw/labels/instances/0", mode="r"), full_run
    )
    assert zarr.open_group(home / "raw/labels", mode="r").attrs["ome"]["labels"] == ["instances"]
    assert not (home / "instances").exists()
    assert sorted(os.listdir(home / ".stitchsafe" / "raw")) == ["labels"]  # no new-labels
    assert os.listdir(bookkeeping_path(home, "raw/labels/instances")) == ["done"]
