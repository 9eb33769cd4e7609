"""Training: the paper's window rule, crops at every phase, the loss, and usable checkpoints."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from cli_helpers import EXE

import stitchsafe
from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import ModelGeometry, unet_geometry
from stitchsafe.io import open_volume
from stitchsafe.training import DiscriminativeLoss, discriminative_terms
from stitchsafe.models import load_model, resolve_geometry
from stitchsafe.engine import compute_normalization
from stitchsafe.io import file_sha256
from stitchsafe.training import synthetic_cells
from stitchsafe.training import default_window, train
from stitchsafe.training import (
    augment,
    augmentations,
    check_training_window,
    contact_voxels,
    sample_origin,
)

# ----------------------------------------------------------------------------- the loss


def reference_terms(
    emb: torch.Tensor, lab: torch.Tensor, dv: float, dd: float
) -> tuple[float, float, float]:
    """The loss written as plain loops over images and instances."""
    var, dist, reg, images = 0.0, 0.0, 0.0, 0
    for e, y in zip(emb, lab):
        ids = [int(i) for i in torch.unique(y) if i > 0]
        if not ids:
            continue
        images += 1
        means = [e[:, y == i].mean(1) for i in ids]
        var += np.mean(
            [
                float(((e[:, y == i] - m[:, None]).norm(dim=0) - dv).clamp(min=0).square().mean())
                for i, m in zip(ids, means)
            ]
        )
        pairs = list(itertools.combinations(means, 2))
        if pairs:
            dist += np.mean([float((2 * dd - (a - b).norm()).clamp(min=0) ** 2) for a, b in pairs])
        reg += np.mean([float(m.norm()) for m in means])
    return var / images, dist / images, reg / images


@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)], ids=["2d", "3d"])
def test_loss_matches_the_definition(spatial: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(3, 4, *spatial, generator=gen)
    lab = torch.randint(0, 4, (3, *spatial), generator=gen)
    lab[2] = 0  # an image without instances contributes nothing
    lab[1] = (lab[1] > 0).long() * 7  # one instance only: no distance pairs
    got = [float(t) for t in discriminative_terms(emb, lab, delta_v=0.3, delta_d=1.2)]
    assert got == pytest.approx(reference_terms(emb, lab, 0.3, 1.2), rel=1e-5)


def test_loss_is_zero_for_separated_clusters_within_margins() -> None:
    gen = torch.Generator().manual_seed(1)
    lab = torch.zeros(2, 8, 8, dtype=torch.long)
    lab[:, :4, :4], lab[:, 4:, :4], lab[:, :, 4:] = 1, 2, 3
    centres = torch.tensor([[0.0, 0.0], [3.5, 0.0], [0.0, 3.5]])  # > 2 * delta_d apart
    emb = torch.zeros(2, 2, 8, 8)
    for i in range(3):
        jitter = torch.rand(2, 2, 8, 8, generator=gen) * 0.2  # within delta_v of the mean
        emb = torch.where((lab == i + 1)[:, None], centres[i][None, :, None, None] + jitter, emb)
    emb[lab[:, None].expand_as(emb) == 0] = 100.0  # background is ignored
    var, dist, _ = discriminative_terms(emb, lab, delta_v=0.5, delta_d=1.5)
    assert float(var) == 0.0 and float(dist) == 0.0
    # The total with a confident, correct foreground channel is the regulariser alone.
    fg = torch.where(lab > 0, 30.0, -30.0)[:, None]
    loss = DiscriminativeLoss(gamma=0.0)
    assert float(loss(torch.cat([emb, fg], 1), lab).total) == pytest.approx(0.0, abs=1e-9)


def test_loss_is_positive_and_differentiable_otherwise() -> None:
    lab = torch.zeros(1, 6, 6, dtype=torch.long)
    lab[0, :3], lab[0, 3:] = 1, 2
    lab[0, 5, 5] = 3  # a one-voxel instance sits on its mean: no NaN gradient
    out = torch.zeros(1, 3, 6, 6)
    out[:, 0, :3] = torch.linspace(0, 3, 18).reshape(3, 6)  # spread: variance > 0
    out.requires_grad_(True)
    terms = DiscriminativeLoss()(out, lab)
    parts = terms.to_floats()
    assert parts["variance"] > 0 and parts["distance"] > 0 and parts["foreground"] > 0
    terms.total.backward()
    assert out.grad is not None and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0


def test_loss_does_not_push_instances_of_different_images_apart() -> None:
    lab = torch.ones(2, 4, 4, dtype=torch.long)
    var, dist, _ = discriminative_terms(torch.zeros(2, 3, 4, 4), lab)
    assert float(var) == 0.0 and float(dist) == 0.0


def test_loss_without_instances_is_zero_and_attached() -> None:
    out = torch.randn(1, 3, 4, 4, requires_grad=True)
    terms = DiscriminativeLoss()(out, torch.zeros(1, 4, 4, dtype=torch.long))
    assert terms.to_floats()["variance"] == terms.to_floats()["distance"] == 0.0
    terms.total.backward()
    assert out.grad is not None


# ------------------------------------------------------------------- rule and crops

G3 = unet_geometry([(1, 2, 2), (2, 2, 2)])  # period (2, 4, 4)


@pytest.mark.parametrize(
    "window", [(2, 4, 4), (8, 4, 16), (1, 16, 16)], ids=["equal", "one-axis-equal", "smaller"]
)
def test_window_not_larger_than_period_is_refused(window: tuple[int, ...]) -> None:
    with pytest.raises(StitchsafeError) as err:
        check_training_window(window, G3)
    msg = str(err.value)
    assert "period (2, 4, 4)" in msg and "stitched tiles would disagree" in msg
    assert "at least (3, 5, 5)" in msg


def test_window_rule_is_enforced_by_train(tmp_path: Path) -> None:
    img, lab = synthetic_cells((40, 40), seed=0)
    with pytest.raises(StitchsafeError, match="not larger than the period"):
        train(img, lab, output=tmp_path / "m.pt", pooling_factors=[(2, 2)], window=(2, 6))
    assert not (tmp_path / "m.pt").exists()
    check_training_window((3, 5, 5), G3)  # one more than the period is enough


def test_crop_origins_cover_every_phase() -> None:
    rng = np.random.default_rng(0)
    shape, window = (30, 61, 64), (8, 24, 24)
    origins = np.array([sample_origin(rng, shape, window) for _ in range(400)])
    assert (origins >= 0).all() and (origins + window <= shape).all()
    for a, p in enumerate(G3.period):
        assert set(origins[:, a] % p) == set(range(p))  # all phases, not only the lattice
        assert len(set(origins[:, a])) > 2 * p


def test_augmentations_keep_input_and_labels_aligned() -> None:
    rng = np.random.default_rng(3)
    halo = 3
    for _ in range(30):
        img = rng.random((1, 5 + 2 * halo, 8 + 2 * halo, 8 + 2 * halo))
        lab = img[:, halo:-halo, halo:-halo, halo:-halo]  # the label "is" the centre voxel
        i2, l2 = augment(img, lab, rng, flips=(0, 1, 2), planes=((1, 2),))
        assert np.array_equal(i2[:, halo:-halo, halo:-halo, halo:-halo], l2)


def test_default_window_shrinks_to_small_images() -> None:
    assert default_window((16, 48, 48), G3, (60, 200, 200)) == (16, 48, 48)
    small = default_window((16, 48, 48), G3, (9, 30, 200))
    out = G3.output_shape(G3.input_for_output(small))
    assert all(o + p - 1 <= s for o, p, s in zip(out, G3.period, (9, 30, 200)))
    assert all(w > p for w, p in zip(small, G3.period)) and small[2] == 48


def test_contact_voxels_mark_both_sides_of_a_touching_face() -> None:
    lab = np.zeros((3, 6), np.int64)
    lab[:, 1:3], lab[:, 3:5] = 1, 2
    c = contact_voxels(lab)
    assert c[:, 2].all() and c[:, 3].all() and c.sum() == 6


def test_augmentations_follow_the_geometry() -> None:
    assert augmentations([(1, 2, 2), (2, 2, 2)], G3) == ((0, 1, 2), ((1, 2),))
    iso = [(2, 2, 2)]
    assert augmentations(iso, unet_geometry(iso))[1] == ((0, 1), (0, 2), (1, 2))
    odd = ModelGeometry(period=(2, 2), halo=((1, 2), (2, 2)), min_input=(8, 8), step=(2, 2))
    assert augmentations([(2, 2)], odd) == ((1,), ())  # an asymmetric halo is never flipped


# ------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, np.ndarray]:
    """A tiny 2-D model trained from zarr and TIFF paths, with a .pt2 export."""
    d = tmp_path_factory.mktemp("train")
    img, lab = synthetic_cells((48, 56), radius=(3.0, 5.0), seed=2)
    zarr.create_array(str(d / "img.zarr"), data=img, chunks=(16, 16))
    tifffile.imwrite(d / "lab.tif", lab)
    result = train(
        d / "img.zarr",
        d / "lab.tif",
        output=d / "model.pt",
        pooling_factors=[(2, 2)],
        features=4,
        embedding_dims=3,
        iterations=3,
        window=(6, 10),
        batch_size=2,
        progress=False,
        export_pt2=d / "model.pt2",
        device="cpu",
    )
    return d, result.to_dict() | {"metadata": result.metadata}, img


def test_checkpoint_metadata_is_complete(trained: tuple[Path, dict, np.ndarray]) -> None:
    d, result, img = trained
    model = load_model(d / "model.pt")
    meta = model.metadata
    assert meta is not None and meta == result["metadata"]
    geometry, source = resolve_geometry(model)
    assert source == "metadata" and geometry.period == (2, 2)
    assert meta["channels_out"] == 4
    assert meta["channel_roles"] == ["embedding"] * 3 + ["foreground"]
    assert meta["loss"]["name"] == "discriminative" and meta["loss"]["delta_d"] == 1.5
    # The labelling threshold is measured on the training data, among fractions of delta_d.
    calibration = meta["labels"]["calibration"]
    chosen = {k: meta["labels"].get(k) for k in calibration["params"]}
    assert chosen == calibration["params"]
    assert chosen in [{k: c[k] for k in chosen} for c in calibration["candidates"]]
    assert len(calibration["candidates"]) == 31
    assert calibration["ap50"] == max(c["ap50"] for c in calibration["candidates"])
    assert meta["labels"]["min_size"] >= 1
    t = meta["training"]
    assert t["iterations"] == 3 and t["seed"] == 0 and t["torch"] == torch.__version__
    assert t["window"] == list(result["window"]) and all(
        w > p for w, p in zip(t["window"], geometry.period)
    )
    assert "model.pt" in t["command"] and np.isfinite(t["final_loss"])
    # Normalisation: computed once over the whole image, as predict computes it.
    expected = compute_normalization(
        open_volume(d / "img.zarr", spatial_dims=2), method="percentile"
    )
    assert meta["normalization"] == expected.to_dict()
    assert meta["normalization"]["samples"] == img.size
    log = [json.loads(line) for line in Path(result["log"]).read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3]
    assert {"loss", "variance", "distance", "foreground", "lr"} <= set(log[0])


@pytest.mark.parametrize("name", ["model.pt", "model.pt2"], ids=["checkpoint", "export"])
def test_trained_model_runs_in_predict_without_flags(
    trained: tuple[Path, dict, np.ndarray], tmp_path: Path, name: str
) -> None:
    d, result, img = trained
    zarr.create_array(str(tmp_path / "vol.zarr"), data=img[:30, :37], chunks=(16, 16))
    r = stitchsafe.predict(
        d / name, tmp_path / "vol.zarr", tile_shape=(8, 8), device="cpu", progress=False
    )
    out = zarr.open_array(str(Path(r.output) / r.embeddings), mode="r")
    assert out.shape == (4, 30, 37) and np.isfinite(np.asarray(out)).all()
    assert r.plan.geometry_source == "metadata"


def test_existing_outputs_are_not_replaced(trained: tuple[Path, dict, np.ndarray]) -> None:
    d, _, img = trained
    before = (d / "model.pt").read_bytes()
    with pytest.raises(StitchsafeError, match="already exists"):
        train(img, np.zeros(img.shape, np.uint32), output=d / "model.pt", iterations=1)
    assert (d / "model.pt").read_bytes() == before


def test_inputs_are_checked(tmp_path: Path) -> None:
    img, lab = synthetic_cells((40, 40), seed=0)
    small = {"pooling_factors": [(2, 2)], "features": 4, "output": tmp_path / "m.pt"}
    with pytest.raises(StitchsafeError, match="differs from the image"):
        train(img, lab[:-1], **small)
    with pytest.raises(StitchsafeError, match="too short"):
        train(img, lab, window=(40, 8), **small)
    with pytest.raises(StitchsafeError, match="non-negative integers"):
        train(img, lab.astype(np.float32), **small)


def test_3d_anisotropic_training_runs(tmp_path: Path) -> None:
    img, lab = synthetic_cells((14, 40, 40), radius=(3.0, 5.0), seed=4)
    result = train(
        img, lab, output=tmp_path / "m.pt", pooling_factors=[(1, 2, 2)], features=4,
        embedding_dims=2, iterations=2, window=(3, 6, 6), progress=False, device="cpu",
    )  # fmt: skip
    meta = result.metadata
    assert meta["period"] == [1, 2, 2] and meta["training"]["augmentation"] == {
        "flip_axes": [0, 1, 2],
        "rotation_planes": [[1, 2]],
    }


def test_loss_decreases_on_a_separable_toy_problem(tmp_path: Path) -> None:
    # Squares on a grid, neighbours of different brightness, at a spacing that is not a
    # multiple of the period (same-looking objects a period multiple apart could not be
    # told apart; that is the paper's point, not a training failure).
    lab = np.zeros((40, 40), np.uint32)
    for i, (y, x) in enumerate(itertools.product(range(2, 40, 9), repeat=2), start=1):
        lab[y : y + 5, x : x + 5] = i
    img = np.where(lab > 0, 300 + 100 * ((3 * lab) % 7), 100).astype(np.uint16)
    result = train(
        img, lab, output=tmp_path / "toy.pt", pooling_factors=[(2, 2)], features=8,
        embedding_dims=2, iterations=60, window=(12, 12), lr=3e-3, progress=False, device="cpu",
    )  # fmt: skip
    losses = [json.loads(line)["loss"] for line in Path(result.log).read_text().splitlines()]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])  # measured: 0.12-0.28


@pytest.mark.parametrize("dims", [2, 3])
def test_bundled_models_record_how_to_retrain_them(dims: int) -> None:
    from stitchsafe.models import bundled_model

    meta = load_model(bundled_model(dims)).metadata
    assert meta is not None and meta["dims"] == dims
    command = meta["training"]["command"]
    # The training image is the one examples/train_bundled_models.py writes (cells*.tif);
    # the checkpoint is written under the recipe's name and copied in, so only an output is
    # required.
    assert command.startswith("stitchsafe train --image cells") and " --output " in command
    assert meta["channel_roles"][-1] == "foreground"
    # Labelling defaults were chosen on the training data (calibrated by `train`, or by the
    # script's rule for the 2-D one): the chosen candidate is what is stored.
    calibration = meta["labels"]["calibration"]
    assert {k: meta["labels"].get(k) for k in calibration["params"]} == calibration["params"]
    assert bundled_model(dims).stat().st_size < 3_000_000


def test_recalibrate_replaces_only_the_labelling_defaults(
    trained: tuple[Path, dict, np.ndarray], tmp_path: Path
) -> None:
    from stitchsafe.training import recalibrate

    d, result, img = trained
    before = load_model(d / "model.pt")
    lab = tifffile.imread(d / "lab.tif")
    meta = recalibrate(d / "model.pt", img, lab, output=tmp_path / "re.pt")
    after = load_model(tmp_path / "re.pt")
    assert after.metadata == meta
    assert meta["labels"]["calibration"]["recalibrated"].startswith(
        "stitchsafe.training.recalibrate"
    )
    assert meta["labels"]["calibration"]["whole_image"] is True  # a 48 x 56 image: scored whole
    assert {k: v for k, v in meta.items() if k != "labels"} == {
        k: v for k, v in (before.metadata or {}).items() if k != "labels"
    }
    for k, v in before.module.state_dict().items():
        assert torch.equal(v, after.module.state_dict()[k])
    with pytest.raises(StitchsafeError, match="not a stitchsafe checkpoint"):
        recalibrate(d / "model.pt2", img, lab, output=tmp_path / "x.pt")


def test_init_continues_from_a_checkpoint(
    trained: tuple[Path, dict, np.ndarray], tmp_path: Path
) -> None:
    d, result, img = trained
    lab = tifffile.imread(d / "lab.tif")
    small = {
        "pooling_factors": [(2, 2)], "features": 4, "embedding_dims": 3, "window": (6, 10),
        "batch_size": 2, "progress": False, "device": "cpu", "calibrate": False,
    }  # fmt: skip
    # Zero steps of a real schedule are not possible; one tiny step barely moves weights.
    cont = train(
        img, lab, output=tmp_path / "cont.pt", iterations=1, lr=1e-9, init=d / "model.pt", **small
    )
    before = load_model(d / "model.pt").module.state_dict()
    after = load_model(tmp_path / "cont.pt").module.state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    t = cont.metadata["training"]
    assert t["arguments"]["init"] == str(d / "model.pt")
    assert t["init_sha256"] == file_sha256(d / "model.pt")
    fresh = train(img, lab, output=tmp_path / "fresh.pt", iterations=1, lr=1e-9, **small)
    assert fresh.metadata["training"]["init_sha256"] is None
    assert not all(
        torch.allclose(before[k], load_model(tmp_path / "fresh.pt").module.state_dict()[k])
        for k in before
    )


def test_init_with_another_architecture_is_refused(
    trained: tuple[Path, dict, np.ndarray], tmp_path: Path
) -> None:
    d, _, img = trained
    lab = tifffile.imread(d / "lab.tif")
    proc = subprocess.run(
        [EXE, "train", "--image", str(d / "img.zarr"), "--labels", str(d / "lab.tif"),
         "--output", str(tmp_path / "m.pt"), "--pooling-factor", "2,2", "--features", "8",
         "--embedding-dims", "3", "--iterations", "1", "--window", "6,10",
         "--init", str(d / "model.pt"), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--init" in proc.stderr and "architecture" in proc.stderr
    assert not (tmp_path / "m.pt").exists() and lab.shape == img.shape


def test_average_weights_mixes_two_checkpoints_and_records_the_other(tmp_path: Path) -> None:
    from stitchsafe.models import bundled_model, save_checkpoint
    from stitchsafe.training import average_weights

    start = bundled_model(3)
    # A second checkpoint of the same net, every weight tripled.
    loaded = load_model(start, device="cpu")
    state = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    meta = average_weights(start, start, weight=1.0, output=tmp_path / "copy.pt")
    assert meta["training"]["averaged_with"]["sha256"] == file_sha256(start)
    copy = load_model(tmp_path / "copy.pt", device="cpu")
    copy.module.load_state_dict({k: 3.0 * v for k, v in state.items()})
    save_checkpoint(copy.module, tmp_path / "tripled.pt", metadata=copy.metadata)
    meta = average_weights(start, tmp_path / "tripled.pt", weight=0.25, output=tmp_path / "avg.pt")
    averaged = load_model(tmp_path / "avg.pt", device="cpu").module.state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            torch.testing.assert_close(averaged[key], 0.25 * value + 0.75 * 3.0 * value)
    assert meta["training"]["averaged_with"] == {
        "checkpoint": "tripled.pt",
        "sha256": file_sha256(tmp_path / "tripled.pt"),
        "weight_of_model": 0.25,
    }
    with pytest.raises(StitchsafeError, match=r"weight must lie in \[0, 1\]"):
        average_weights(start, start, weight=1.5, output=tmp_path / "bad.pt")


def test_set_labelling_defaults_stores_chosen_parameters_that_predict_then_uses(
    tmp_path: Path,
) -> None:
    from stitchsafe.models import bundled_model
    from stitchsafe.training import set_labelling_defaults, synthetic_cells

    start = bundled_model(2)
    params = {"threshold": 0.5, "seed_threshold": 0.5, "seed_foreground_threshold": 0.95, "grow": 3}
    rule = {"rule": "a test", "scores": [{"ap50": 0.5}]}
    meta = set_labelling_defaults(start, params, calibration=rule, output=tmp_path / "m.pt")
    stored = load_model(tmp_path / "m.pt", device="cpu").metadata
    assert stored == meta
    assert {k: stored["labels"][k] for k in params} == params
    assert stored["labels"]["min_size"] == load_model(start).metadata["labels"]["min_size"]
    assert stored["labels"]["calibration"] == {**rule, "params": params}
    image, _ = synthetic_cells((96, 96), seed=3)
    tifffile.imwrite(tmp_path / "img.tif", image)
    result = stitchsafe.predict(
        tmp_path / "m.pt", tmp_path / "img.tif", output=tmp_path / "o.zarr", progress=False
    )
    used = result.label_params
    assert {k: used[k] for k in params} == params
    with pytest.raises(StitchsafeError, match="--seed-foreground-threshold"):
        set_labelling_defaults(
            start, {**params, "seed_foreground_threshold": 1.5}, calibration=rule,
            output=tmp_path / "bad.pt",
        )  # fmt: skip
    assert not (tmp_path / "bad.pt").exists()
