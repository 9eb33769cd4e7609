"""Foreground-only models: labels are the connected components of the thresholded output,
blockwise and exact (equal to ``scipy.ndimage.label`` on the whole array); channel roles
parsed and chosen once."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from stitchsafe.errors import StitchsafeError
from stitchsafe.labels import (
    LabelParams,
    LabelSettings,
    choose_roles,
    label_array,
    label_blocks,
    parse_channel_roles,
)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images split the voxels alike (0 is background in both)."""
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def smooth_field(shape: tuple[int, ...], seed: int, sigma: float) -> np.ndarray:
    """A smooth random field in (0, 1): blobs several voxels wide, some wider than a block."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=sigma)
    return 1.0 / (1.0 + np.exp(-field / field.std() * 2.0))


def spans_blocks(labels: np.ndarray, block: tuple[int, ...]) -> bool:
    """Whether some object lies in more than one block of the grid ``block``."""
    index = np.zeros(labels.shape, np.int64)
    for axis, b in enumerate(block):
        shape = [1] * labels.ndim
        shape[axis] = labels.shape[axis]
        index = index * 1000 + (np.arange(labels.shape[axis]) // b).reshape(shape)
    fg = labels > 0
    pairs = np.unique(np.stack([labels[fg], index[fg]]), axis=1)
    return len(np.unique(pairs[0])) < pairs.shape[1]


# Shapes not multiples of the blocks; blocks smaller than the largest objects.
CASES = [
    pytest.param((37, 45), (8, 8), ("probability",), 0.6, id="2d-probability"),
    pytest.param((11, 21, 19), (4, 8, 8), ("foreground",), 0.8, id="3d-logits"),
    pytest.param(
        (29, 33), (6, 7), ("ignore", "probability", "ignore"), 0.6, id="2d-ignored-channels"
    ),
]


@pytest.mark.parametrize(("shape", "block", "roles", "p"), CASES)
def test_foreground_components_equal_scipy_label(shape, block, roles, p):
    prob = smooth_field(shape, seed=len(shape), sigma=2.0 if len(shape) == 2 else 1.0)
    channels = {"probability": prob, "foreground": np.log(prob / (1 - prob)), "ignore": -prob}
    data = np.stack([channels[r] for r in roles]).astype(np.float32)
    fg = next(i for i, r in enumerate(roles) if r != "ignore")
    cut = p if roles[fg] == "probability" else math.log(p / (1 - p))
    expected, count = ndimage.label(data[fg] > cut)  # face connectivity: scipy's default
    params = LabelParams(1.0, foreground_threshold=p, channel_roles=roles)
    out = np.zeros(shape, np.uint32)
    stats = label_blocks(data, out, params=params, block_shape=block, num_workers=1)
    assert stats.objects == count > 3
    assert same_partition(out, expected)
    assert np.array_equal(out, expected)  # scipy numbers in raster order, so do the labels
    assert spans_blocks(expected, block)  # merging across block faces mattered
    assert np.array_equal(label_array(data, params=params), expected)


def test_no_foreground_channel_means_every_voxel_foreground():
    # An embedding channel alone: close neighbours join (today's behaviour, unchanged).
    data = np.array([[[0.0, 0.1, 5.0, 5.0]]])
    labels = label_array(data, params=LabelParams(1.0, channel_roles=("embedding",)))
    assert labels.tolist() == [[1, 1, 2, 2]]


@pytest.mark.parametrize(
    ("text", "roles"),
    [
        ("embedding,embedding,foreground", ("embedding", "embedding", "foreground")),
        ("embedding:2,foreground", ("embedding", "embedding", "foreground")),
        ("e:2, f", ("embedding", "embedding", "foreground")),
        ("probability", ("probability",)),
        ("Ignore,p", ("ignore", "probability")),
        (["embedding", "foreground"], ("embedding", "foreground")),
    ],
    ids=["names", "repeat", "letters", "probability", "mixed", "list"],
)
def test_channel_roles_syntax(text, roles):
    assert parse_channel_roles(text) == roles
    assert LabelSettings(channel_roles=text).channel_roles == roles


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("embeding,foreground", ["'embeding' is not a role"]),
        ("embedding:0", ["repeat count"]),
        ("embedding:x", ["repeat count"]),
        ("", ["is not a role"]),
        ("foreground,probability", ["2 foreground/probability channels"]),
    ],
    ids=["typo", "zero", "not-a-number", "empty", "two-foregrounds"],
)
def test_bad_channel_roles_are_refused(text, words):
    with pytest.raises(StitchsafeError) as err:
        LabelSettings(channel_roles=text)
    for w in words:
        assert w in str(err.value)
    assert "--channel-roles" in str(err.value)


def test_role_choice_flag_metadata_assumption():
    flag = parse_channel_roles("e:2,p")
    over = choose_roles(flag, ["embedding", "embedding", "foreground"], channels=3)
    assert over.roles == flag and over.source == "--channel-roles"
    assert "replaces the channel roles of the model" in over.notes[0]
    stored = choose_roles(None, ["embedding", "foreground"], channels=2)
    assert stored.roles == ("embedding", "foreground") and stored.notes == ()
    assumed = choose_roles(None, None, channels=1)
    assert assumed.roles is None and "--channel-roles probability" in assumed.notes[0]
    nothing = choose_roles(("ignore", "ignore"), None, channels=2)
    assert not nothing.labelled and nothing.notes[-1].startswith("no labels")
    with pytest.raises(StitchsafeError, match="the model has 3 output channels"):
        choose_roles(flag[:2], None, channels=3)
