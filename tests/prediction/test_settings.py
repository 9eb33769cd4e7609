"""Settings values: each checks itself once, with the message the command line shows."""

from __future__ import annotations

import dataclasses

import pytest
from cli_helpers import assert_bad_input, run_cli

from stitchsafe.approximate import ApproximateSettings
from stitchsafe.engine import RunSettings
from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import TilingSettings
from stitchsafe.io import PAD_MODES, OutputSettings
from stitchsafe.labels import LabelSettings
from stitchsafe.prediction import PredictSettings


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: RunSettings(pad_mode="wrap"), "--pad-mode 'wrap'"),
        (lambda: RunSettings(batch_size=0), "--batch-size"),
        (lambda: RunSettings(batch_size=True), "--batch-size"),
        (lambda: RunSettings(precision="fp8"), "--precision 'fp8'"),
        (lambda: RunSettings(embeddings_dtype="int8"), "--embeddings-dtype 'int8'"),
        (lambda: RunSettings(normalize="minmax"), "normalisation method 'minmax'"),
        (lambda: RunSettings(scheduler="mpi"), "--scheduler 'mpi'"),
        (lambda: OutputSettings(resume=True, overwrite=True), "--resume"),
        (lambda: TilingSettings(depth=3), "--depth needs --pooling-factor"),
        (lambda: LabelSettings(threshold=0.0), "--threshold"),
        (lambda: LabelSettings(min_size=-1), "--min-size"),
        (lambda: LabelSettings(foreground_threshold=1.0), "--foreground-threshold"),
        (lambda: LabelSettings(label_dtype="uint16"), "--label-dtype 'uint16'"),
        (lambda: ApproximateSettings(tolerance=1e-3), "--tolerance applies"),
        (lambda: ApproximateSettings(allow=True, tolerance=2.0), "--tolerance 2.0"),
        (lambda: PredictSettings(labels=False, embeddings=False), "would write nothing"),
        (
            lambda: PredictSettings(embeddings=False, run=RunSettings(scheduler="local")),
            "--scheduler threads only",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_values_are_refused_when_made(make, words: str) -> None:
    with pytest.raises(StitchsafeError, match=words.replace("(", r"\(")):
        make()


def test_settings_are_frozen_values() -> None:
    settings = PredictSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.run = RunSettings(device="cpu")  # type: ignore[misc]
    assert PredictSettings() == settings  # values: equal when their fields are


def test_the_one_list_of_pad_modes() -> None:
    assert PAD_MODES == ("reflect", "constant", "edge")
    for mode in PAD_MODES:
        assert RunSettings(pad_mode=mode).pad_mode == mode


def test_label_flags_over_stored_defaults() -> None:
    stored = {"threshold": 0.7, "min_size": 4, "seed_threshold": 0.3, "grow": 1}
    # --grow alone relies on the seed threshold stored with the model.
    params = LabelSettings(grow=3).resolve(stored, ["embedding", "foreground"], channels=2)
    assert (params.threshold, params.min_size, params.seed_threshold, params.grow) == (
        0.7,
        4,
        0.3,
        3,
    )
    params = LabelSettings(threshold=2.0).resolve(None, None, channels=3)
    assert (params.threshold, params.seed_threshold) == (2.0, None)
    with pytest.raises(StitchsafeError, match="--grow needs --seed-threshold"):
        LabelSettings(grow=3).resolve(None, None, channels=3)


def test_bad_flags_fail_before_the_input_is_read(tmp_path) -> None:
    # The settings are made first: a bad flag is reported although the input is missing
    # (no model is looked for or loaded).
    proc = run_cli("predict", "--input", str(tmp_path / "missing.zarr"), "--threshold", "-1")
    assert_bad_input(proc, "--threshold")
    assert "does not exist" not in proc.stderr
