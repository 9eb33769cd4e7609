"""Warnings when a labelling's result looks wrong: the rules on constructed statistics, the
statistics the labelling passes count, and the warnings of predict and segment (stderr and
``--json``) on degenerate results, and none on a normal one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import numpy as np
import pytest
import tifffile
import torch
import zarr
from cli_helpers import run_cli
from click.testing import CliRunner
from nets import make_net

import stitchsafe
from stitchsafe.cli import cli
from stitchsafe.io import ImageLayout, create_output
from stitchsafe.labels import (
    MOSTLY_LABELLED,
    ONE_OBJECT,
    LabelParams,
    ResultStats,
    label_array,
    label_blocks,
    result_warnings,
)
from stitchsafe.models import save_checkpoint, save_torchscript, unet_metadata
from stitchsafe.reports import read_info
from stitchsafe.training import synthetic_cells

ROLES = ("embedding", "embedding", "foreground")
OPTION = re.compile(r"--[a-z][a-z0-9-]+")


# -- the rules, on constructed statistics -------------------------------------------------


def _stats(labelled: int, largest: int, objects: int = 5, **kw: object) -> ResultStats:
    values: dict = {"linked": labelled, **kw}
    return ResultStats(1000, objects=objects, labelled=labelled, largest=largest, **values)


@pytest.mark.parametrize(
    "stats, starts",
    [
        (_stats(300, 40), []),
        (_stats(900, 40), []),  # exactly at the limit: not more than 90 %
        (_stats(901, 40), ["90% of the voxels are labelled"]),
        (_stats(1000, 40, foreground=False), []),  # embedding-only: every voxel is foreground
        (_stats(600, 500), []),
        (_stats(600, 501), ["one object holds 50%"]),
        (_stats(950, 950, objects=1), ["95% of the voxels", "one object holds 95%"]),
        (_stats(0, 0, objects=0), ["no objects: no voxel passed the foreground cut"]),
        (_stats(0, 0, objects=0, seeded=True), ["no objects: no voxel qualified as a seed"]),
        (_stats(0, 0, objects=0, linked=12), ["no objects: the 12 foreground voxel(s)"]),
        (_stats(300, 40, nonfinite=7), ["7 embedding value(s) are NaN or infinite"]),
    ],
    ids=[
        "normal",
        "at-foreground-limit",
        "mostly-foreground",
        "no-foreground-channel",
        "at-object-limit",
        "one-big-object",
        "one-blob",
        "empty-foreground",
        "no-seeds",
        "all-too-small",
        "nonfinite",
    ],
)
def test_rules(stats: ResultStats, starts: list[str]) -> None:
    found = result_warnings(stats)
    assert len(found) == len(starts), found
    for warning, start in zip(found, starts):
        assert warning.startswith(start), warning
    assert MOSTLY_LABELLED == 0.9 and ONE_OBJECT == 0.5


def test_an_empty_volume_gives_no_warning() -> None:
    assert result_warnings(ResultStats(0, objects=0, labelled=0, largest=0, linked=0)) == ()


def test_advice_names_the_model_and_the_commands_options() -> None:
    blob = _stats(990, 990, objects=1)
    text = " ".join(result_warnings(blob, command="predict", model="models/cells.pt"))
    assert "--init models/cells.pt" in text and "--threshold" in text
    assert "--normalize" in text and "--channel" in text
    assert "--init CHECKPOINT" in " ".join(result_warnings(blob))
    assert "the predict command read" in " ".join(result_warnings(blob, command="segment"))


def _options(name: str) -> set[str]:
    command = cli.commands[name]
    params = command.get_params(click.Context(command, info_name=name))
    return {o for p in params for o in p.opts if o.startswith("--")}


@pytest.mark.parametrize("command", ["predict", "segment"])
def test_every_option_named_exists_on_the_command_or_the_one_named(command: str) -> None:
    """Advice names the command's own options, or says whose they are ("stitchsafe train
    --init", "the predict command's --channel")."""
    cases = [
        _stats(990, 990, objects=1, nonfinite=3, seeded=True),
        _stats(0, 0, objects=0),
        _stats(0, 0, objects=0, seeded=True),
        _stats(0, 0, objects=0, linked=4),
    ]
    for stats in cases:
        for text in result_warnings(stats, command=command):
            for option in OPTION.findall(text):
                if option in _options(command):
                    continue
                words = set(re.findall(r"[a-z]+", text.replace(option, " "))) & set(cli.commands)
                assert any(option in _options(w) for w in words), (command, option, text)


# -- what the labelling passes count -------------------------------------------------------


def _embeddings(seed: int = 0) -> np.ndarray:
    """``(3, 20, 24)``: two embedding channels piecewise constant on a few blobs, and a
    foreground logit that is high on them."""
    rng = np.random.default_rng(seed)
    blobs = np.zeros((20, 24), np.int64)
    blobs[2:9, 3:10], blobs[11:18, 4:20], blobs[3:7, 14:22] = 1, 2, 3
    blobs[6, 9:14] = 1  # a thin bridge: blob 1 grows into 3 only along it
    means = rng.normal(0, 3, (4, 2))
    emb = means[blobs].transpose(2, 0, 1) + rng.normal(0, 0.02, (2, *blobs.shape))
    fg = np.where(blobs > 0, 4.0, -4.0)[None]
    return np.concatenate([emb, fg]).astype(np.float32)


def _expected(emb: np.ndarray, params: LabelParams) -> tuple[int, int, int]:
    labels = label_array(emb, params=params)
    sizes = np.bincount(labels.ravel())[1:]
    return int(labels.max()), int(sizes.sum()), int(sizes.max(initial=0))


@pytest.mark.parametrize(
    "params",
    [
        LabelParams(0.5, min_size=3, channel_roles=ROLES),
        LabelParams(0.5, channel_roles=ROLES, seed_threshold=0.2, grow=2),
    ],
    ids=["plain", "seeded-grown"],
)
def test_blockwise_labelling_counts_what_the_labels_hold(params: LabelParams) -> None:
    emb = _embeddings()
    emb[0, 12, 5] = np.nan
    emb[1, 0, 0] = np.inf
    emb[:, 19, 23] = -np.inf  # three values in one voxel, on a block's corner
    out = np.zeros(emb.shape[1:], np.uint32)
    stats = label_blocks(emb, out, params=params, block_shape=(7, 8), progress=False)
    content = stats.content
    assert content is not None
    objects, labelled, largest = _expected(emb, params)
    assert (content.objects, content.labelled, content.largest) == (objects, labelled, largest)
    assert content.objects == stats.objects and content.voxels == emb[0].size
    assert content.nonfinite == 5  # counted once each, though seeded blocks read a halo
    assert content.foreground and content.seeded == params.seeded
    # The voxels of the components, before the size filter (seeds, when seeded).
    assert content.labelled <= content.linked or params.grow


def test_blockwise_labelling_of_nothing() -> None:
    emb = _embeddings()
    emb[2] = -4.0  # no foreground anywhere
    out = np.zeros(emb.shape[1:], np.uint32)
    params = LabelParams(0.5, channel_roles=ROLES)
    content = label_blocks(emb, out, params=params, block_shape=(8, 8), progress=False).content
    assert content == ResultStats(480, objects=0, labelled=0, largest=0, linked=0)
    assert result_warnings(content)[0].startswith("no objects: no voxel passed")


# -- predict: a degenerate result warns, a normal one does not ----------------------------


@pytest.fixture(scope="module")
def everywhere(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model whose foreground channel says "foreground" everywhere, and an input."""
    tmp = tmp_path_factory.mktemp("warnings")
    net, cfg = make_net("2d-d1-f2", out_channels=3)
    with torch.no_grad():
        last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias[2] = 50.0  # the foreground logit
    meta = unet_metadata(cfg, channel_roles=list(ROLES))
    save_checkpoint(net, tmp / "model.pt", metadata=meta)
    image = np.random.default_rng(0).random((30, 34)).astype(np.float32)
    tifffile.imwrite(tmp / "image.tif", image)
    return {"tmp": tmp, "model": tmp / "model.pt", "input": tmp / "image.tif"}


def test_predict_warns_of_one_object_everywhere_with_or_without_embeddings(
    everywhere: dict[str, Path],
) -> None:
    results = [
        stitchsafe.predict(
            everywhere["model"],
            everywhere["input"],
            output=everywhere["tmp"] / f"out-{embeddings}.zarr",
            threshold=1e6,  # every neighbour joins: one object
            embeddings=embeddings,
            device="cpu",
            progress=False,
        )
        for embeddings in (True, False)
    ]
    full, labels_only = results
    assert full.objects == 1 and full.label_stats is not None
    assert full.label_stats == labels_only.label_stats  # both paths count the same
    assert full.label_stats.labelled == full.label_stats.largest == 30 * 34
    found = full.to_dict()["warnings"]
    assert [w.split(":")[0] for w in found] == [
        "100% of the voxels are labelled",
        "one object holds 100% of the voxels",
    ]
    assert f"--init {everywhere['model']}" in found[1]
    assert labels_only.to_dict()["warnings"] == found


def test_info_repeats_the_warnings_of_the_run_that_made_the_labels(
    everywhere: dict[str, Path],
) -> None:
    """``info`` later says what predict said (stored with the labels), with and without
    embeddings, on stderr and in ``--json``, naming the label image."""
    for embeddings in (True, False):
        out = everywhere["tmp"] / f"info-{embeddings}.zarr"
        r = stitchsafe.predict(
            everywhere["model"], everywhere["input"], output=out, threshold=1e6,
            embeddings=embeddings, device="cpu", progress=False,
        )  # fmt: skip
        result = CliRunner().invoke(cli, ["info", "--input", str(out), "--json"])
        assert result.exit_code == 0, result.output
        found = json.loads(result.stdout)["warnings"]
        assert len(found) == 2 and len(r.warnings) == 2
        for stored, said in zip(found, r.warnings):
            name, _, text = stored.partition(": ")
            assert name == "labels instances"
            assert text.split(":")[0] == said.split(":")[0]  # the same finding
        assert [f"warning: {w}" for w in found] == [
            line for line in result.stderr.splitlines() if line.startswith("warning: ")
        ]
        assert json.loads(result.stdout)["labels"][0]["warnings"] == found
    # A labels-only run resumed once complete computes nothing and warns again all the same.
    again = stitchsafe.predict(
        everywhere["model"], everywhere["input"], output=out, threshold=1e6,
        embeddings=False, resume=True, device="cpu", progress=False,
    )  # fmt: skip
    assert again.tiles == 0 and again.warnings == r.warnings


def test_predict_without_labels_has_no_warnings(everywhere: dict[str, Path]) -> None:
    r = stitchsafe.predict(
        everywhere["model"],
        everywhere["input"],
        output=everywhere["tmp"] / "no-labels.zarr",
        labels=False,
        device="cpu",
        progress=False,
    )
    assert r.label_stats is None and r.to_dict()["warnings"] == []


def test_a_normal_result_gives_no_warnings(tmp_path: Path) -> None:
    """The bundled 2-D model on synthetic cells like the demo's (a smaller 2-D sample)."""
    image, truth = synthetic_cells((96, 96), seed=3)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    r = stitchsafe.predict(
        None, tmp_path / "cells.tif", output=tmp_path / "cells.zarr", device="cpu", progress=False
    )
    assert r.objects is not None and r.objects >= truth.max() // 2
    assert r.label_stats is not None and r.label_stats.nonfinite == 0
    assert r.to_dict()["warnings"] == [], r.warnings
    info = read_info(r.output)
    assert info.labels[0].content == r.label_stats  # stored, and read back whole
    assert info.warnings == ()


class Overflows(torch.nn.Module):
    """A 3x3 valid convolution plus ``exp(x)``: infinite where the input exceeds ~89."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + torch.exp(x[:, :, 1:-1, 1:-1])


def test_predict_cli_warns_of_infinite_embeddings(tmp_path: Path) -> None:
    """Through the console script: a warning line on stderr for each item of ``--json``'s
    ``"warnings"``, and exit code 0."""
    torch.manual_seed(0)
    save_torchscript(Overflows(), tmp_path / "overflows.ts.pt")
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    image[10:14, 10:14] = 200.0
    tifffile.imwrite(tmp_path / "image.tif", image)
    proc = run_cli(
        "predict", "--model", str(tmp_path / "overflows.ts.pt"), "--input",
        str(tmp_path / "image.tif"), "--output", str(tmp_path / "out.zarr"),
        "--normalize", "none", "--device", "cpu", "--no-progress", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["warnings"]
    assert found[0].startswith("32 embedding value(s) are NaN or infinite")  # 16 voxels x 2
    assert "--init CHECKPOINT" in " ".join(found)  # a TorchScript file cannot be --init
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert lines == [f"warning: {w}" for w in found]
    assert "RuntimeWarning" not in proc.stderr and "Traceback" not in proc.stderr


def test_predict_without_labels_warns_of_infinite_embeddings(tmp_path: Path) -> None:
    """``--no-labels``: the tiles' kept outputs are counted as they are written; finite
    outputs of the same model give no warning, and the count does not change with the
    tiling (a tile's halo is not counted)."""
    torch.manual_seed(0)
    save_torchscript(Overflows(), tmp_path / "overflows.ts.pt")
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    tifffile.imwrite(tmp_path / "finite.tif", image)
    image[10:14, 10:14] = 200.0
    tifffile.imwrite(tmp_path / "image.tif", image)
    common = {"labels": False, "normalize": "none", "device": "cpu", "progress": False}
    model = tmp_path / "overflows.ts.pt"
    counts = []
    for tile in (None, (12, 12)):
        r = stitchsafe.predict(
            model, tmp_path / "image.tif", output=tmp_path / f"o{tile}.zarr", tile_shape=tile,
            **common,
        )  # fmt: skip
        assert r.warnings and r.warnings[0].startswith("32 embedding value(s) are NaN or infinite")
        assert r.to_dict()["warnings"] == list(r.warnings)
        counts.append((r.tiles, r.nonfinite))
    assert counts[0][1] == counts[1][1] == 32 and counts[1][0] > counts[0][0]
    r = stitchsafe.predict(model, tmp_path / "finite.tif", output=tmp_path / "f.zarr", **common)
    assert r.nonfinite == 0 and r.warnings == ()
    assert read_info(r.output).warnings == ()
    # info says it again later; labels made from those embeddings say it once, themselves
    (warning,) = read_info(tmp_path / "oNone.zarr").warnings
    assert warning.startswith("32 embedding value(s) are NaN or infinite")
    stitchsafe.segment(tmp_path / "oNone.zarr", threshold=0.5, progress=False)
    found = read_info(tmp_path / "oNone.zarr").warnings
    assert [w.split(":")[:2] for w in found] == [
        ["labels instances", " 32 embedding value(s) are NaN or infinite"]
    ]


# -- segment, on constructed stored embeddings ---------------------------------------------


def _stored(group: Path, emb: np.ndarray) -> Path:
    """``emb`` written as the embeddings image predict would have written."""
    layout = ImageLayout(
        shape=emb.shape[1:], chunks=(8, 8), axes=("y", "x"), channels=emb.shape[0],
        attributes={"complete": True, "channel_roles": list(ROLES)},
    )  # fmt: skip
    spec = create_output(group, layout)
    zarr.open_array(group / spec.array, mode="r+")[...] = emb
    return group


def test_segment_cli_warns_of_nan_embeddings(tmp_path: Path) -> None:
    emb = _embeddings()
    emb[:2, 12:14, 5:7] = np.nan
    group = _stored(tmp_path / "nan.zarr", emb)
    args = ["segment", "--input", str(group), "--threshold", "0.5", "--no-progress", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["warnings"]
    assert len(found) == 1 and found[0].startswith("8 embedding value(s) are NaN")
    assert "the predict command read" in found[0]
    assert f"warning: {found[0]}" in result.stderr.splitlines()


@pytest.mark.parametrize(
    "foreground, threshold, starts",
    [(None, 0.5, []), (-4.0, 0.5, ["no objects"]), (4.0, 1e6, ["100%", "one object"])],
    ids=["normal", "no-foreground", "all-foreground-one-object"],
)
def test_segment_warns_of_degenerate_labels(
    tmp_path: Path, foreground: float | None, threshold: float, starts: list[str]
) -> None:
    emb = _embeddings()
    if foreground is not None:
        emb[2] = foreground
    r = stitchsafe.segment(_stored(tmp_path / "e.zarr", emb), threshold=threshold, progress=False)
    found = r.to_dict()["warnings"]
    assert [w.split(" ")[0] for w in found] == [s.split(" ")[0] for s in starts], found
    for warning, start in zip(found, starts):
        assert warning.startswith(start)
