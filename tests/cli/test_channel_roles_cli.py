"""``--channel-roles``: a third-party model without stitchsafe metadata, whose one output
channel is a foreground probability (or logit), gets the connected components of its
thresholded output, equal to ``scipy.ndimage.label`` on the whole-volume output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from click.testing import CliRunner
from scipy import ndimage

from stitchsafe.cli import cli
from stitchsafe.models import save_torchscript

SHAPES = {2: (45, 53), 3: (13, 27, 31)}  # not multiples of the tile (8)


def third_party_model(dims: int, probability: bool) -> torch.nn.Module:
    """A local mean, scaled: sigmoid(...) for probabilities, else logits. Halo 1, period 1."""
    conv = (torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d)(1, 1, 3)
    with torch.no_grad():
        conv.weight.fill_(12.0 / 3**dims)
        conv.bias.fill_(-8.0)
    layers = [conv, torch.nn.Sigmoid()] if probability else [conv]
    return torch.nn.Sequential(*layers).eval()


def blobs(shape: tuple[int, ...]) -> np.ndarray:
    """Objects wider than a tile (8) on a noisy background, in about [0, 1.3]."""
    rng = np.random.default_rng(len(shape))
    grid = np.mgrid[tuple(slice(0, s) for s in shape)]
    wave = np.prod([np.sin(g / (3.0 + i)) for i, g in enumerate(grid)], axis=0)
    return ((wave > 0.1) + 0.3 * rng.random(shape)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("roles")
    out: dict[str, Path] = {}
    for dims in (2, 3):
        out[f"input{dims}"] = tmp / f"vol{dims}.tif"
        tifffile.imwrite(out[f"input{dims}"], blobs(SHAPES[dims]))
        for kind, probability in (("prob", True), ("logit", False)):
            path = tmp / f"{kind}{dims}.ts.pt"
            save_torchscript(third_party_model(dims, probability), path)  # no metadata
            out[f"{kind}{dims}"] = path
    return out


def predict(files: dict[str, Path], tmp: Path, model: str, dims: int, *extra: str):
    args = [
        "predict",
        "--model",
        str(files[f"{model}{dims}"]),
        "--input",
        str(files[f"input{dims}"]),
        "--output",
        str(tmp / "out.zarr"),
        "--tile-shape",
        "8",
        "--normalize",
        "none",
        "--device",
        "cpu",
        "--no-progress",
        "--json",
        *extra,
    ]
    return CliRunner().invoke(cli, args)


def whole_volume_output(net: torch.nn.Module, volume: np.ndarray) -> np.ndarray:
    """The oracle: the model once over the whole volume padded by its halo (1, reflect)."""
    padded = np.pad(volume, 1, mode="reflect")
    with torch.no_grad():
        return net(torch.from_numpy(padded)[None, None])[0, 0].numpy()


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images split the voxels alike (0 is background in both)."""
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


@pytest.mark.parametrize(
    ("dims", "model", "roles"),
    [(2, "prob", "probability"), (3, "logit", "foreground")],
    ids=["2d-probability", "3d-logits"],
)
def test_foreground_model_labels_equal_scipy_label(files, tmp_path, dims, model, roles):
    p = 0.5
    r = predict(files, tmp_path, model, dims, "--channel-roles", roles)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    group = zarr.open_group(result["output"], mode="r")
    labels = group[result["labels"]][:]
    cut = p if roles == "probability" else math.log(p / (1 - p))
    net = third_party_model(dims, probability=model == "prob")  # what was saved
    whole = whole_volume_output(net, tifffile.imread(files[f"input{dims}"]))
    assert np.abs(whole - cut).min() > 1e-4  # no voxel so close to the cut that rounding matters
    expected, count = ndimage.label(whole > cut)  # face connectivity, scipy's default
    assert result["objects"] == count >= 3
    assert same_partition(labels, expected)
    # Objects larger than the tiles: the merging across block faces made them whole.
    assert any(
        len({tuple(v // 8) for v in np.argwhere(expected == i)}) > 1 for i in range(1, count + 1)
    )
    image_path = result["embeddings"].rpartition("/")[0]
    image = group[image_path] if image_path else group
    omero = image.attrs.asdict()["ome"]["omero"]
    assert [c["label"] for c in omero["channels"]] == [roles]
    assert "note: the model names no channel roles" not in r.stderr


def test_no_roles_keeps_todays_labels_with_a_note(files, tmp_path):
    r = predict(files, tmp_path, "prob", 2)
    assert r.exit_code == 0, r.output
    assert "names no channel roles" in r.stderr
    assert "--channel-roles probability" in r.stderr
    assert json.loads(r.stdout)["objects"] == 1  # one channel as an embedding: one region


def test_roles_without_foreground_or_embeddings_make_no_labels(files, tmp_path):
    r = predict(files, tmp_path, "prob", 2, "--channel-roles", "ignore")
    assert r.exit_code == 0, r.output
    assert "note: no labels" in r.stderr
    result = json.loads(r.stdout)
    assert result["labels"] is None and result["objects"] is None
    assert result["embeddings"] is not None


def test_wrong_channel_count_exits_2_naming_the_models_count(files, tmp_path):
    r = predict(files, tmp_path, "prob", 2, "--channel-roles", "embedding:2,foreground")
    assert r.exit_code == 2, r.output
    assert "names 3 channels" in r.output and "has 1 output channel;" in r.output
    assert not (tmp_path / "out.zarr").exists()  # refused before anything is written


def test_bad_roles_syntax_exits_2_before_the_model_loads(files, tmp_path):
    not_a_model = tmp_path / "garbage.pt"
    not_a_model.write_bytes(b"not a model")
    args = ["--model", str(not_a_model), "--input", str(files["input2"])]
    r = CliRunner().invoke(cli, ["predict", *args, "--channel-roles", "embeding"])
    # Refused for the roles, not for the model file: it was never opened.
    assert r.exit_code == 2, r.output
    assert r.output.startswith("Error: --channel-roles 'embeding': 'embeding' is not a role")
    assert "Traceback" not in r.output


def test_segment_flag_replaces_the_stored_roles(files, tmp_path):
    r = predict(files, tmp_path, "prob", 2, "--channel-roles", "probability", "--no-labels")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)["output"]
    s = CliRunner().invoke(cli, ["segment", "--input", out, "--channel-roles", "ignore"])
    assert s.exit_code == 2 and "segment needs labels" in s.output
    s = CliRunner().invoke(cli, ["segment", "--input", out, "--channel-roles", "f", "--json"])
    assert s.exit_code == 0, s.output
    assert "--channel-roles foreground replaces the channel roles" in s.stderr
    assert json.loads(s.stdout)["params"]["channel_roles"] == ["foreground"]


def test_labels_only_run_labels_the_foreground_alike(files, tmp_path):
    full = predict(files, tmp_path / "a", "prob", 2, "--channel-roles", "p")
    only = predict(files, tmp_path / "b", "prob", 2, "--channel-roles", "p", "--no-embeddings")
    assert full.exit_code == 0 and only.exit_code == 0, (full.output, only.output)
    a, b = json.loads(full.stdout), json.loads(only.stdout)
    labels_a = zarr.open_group(a["output"], mode="r")[a["labels"]][:]
    labels_b = zarr.open_group(b["output"], mode="r")[b["labels"]][:]
    assert a["objects"] == b["objects"] and np.array_equal(labels_a, labels_b)
    nothing = predict(files, tmp_path / "c", "prob", 2, "--channel-roles", "i", "--no-embeddings")
    assert nothing.exit_code == 2 and "--no-embeddings" in nothing.output
