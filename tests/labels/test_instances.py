"""Instance labels: blockwise == whole array (identical ids), against independent oracles.

The blockwise labelling must give exactly the ids of ``label_array`` for every block
shape (ids are ordered by first voxel, so "up to a bijection" becomes plain equality).
``label_array`` itself is checked against a small union-find written here from the
definition, and against ``scipy.ndimage.label`` where links reduce to foreground adjacency.
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from stitchsafe.labels import block_boxes, label_blocks
from stitchsafe.errors import StitchsafeError
from stitchsafe.labels import LabelParams, label_array, label_defaults, merge_fragments
from stitchsafe.models import validate_metadata

ROLES = ("embedding", "embedding", "foreground")


def embed(gt: np.ndarray, *, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Ideal embeddings of a label image: object k at (10 k, -10 k), foreground logit +-5."""
    rng = np.random.default_rng(seed)
    out = np.zeros((3, *gt.shape), np.float32)
    out[0] = 10.0 * gt
    out[1] = -10.0 * gt
    out[:2] += rng.normal(0, noise, out[:2].shape) if noise else 0
    out[2] = np.where(gt > 0, 5.0, -5.0)
    return out


def blockwise(
    emb: np.ndarray,
    params: LabelParams,
    block: tuple[int, ...],
    *,
    dtype: type = np.uint32,
    max_id: int | None = None,
    num_workers: int | None = None,
) -> np.ndarray:
    out = np.zeros(emb.shape[1:], dtype)
    label_blocks(
        emb,
        out,
        params=params,
        block_shape=block,
        max_id=max_id,
        num_workers=num_workers,
        progress=False,
    )
    return out


def bijective(a: np.ndarray, b: np.ndarray) -> bool:
    """Same partition: background matches and ids pair one-to-one."""
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def oracle(emb: np.ndarray, params: LabelParams) -> np.ndarray:
    """The definition, voxel by voxel: union-find over linked face neighbours (tiny arrays)."""
    shape = emb.shape[1:]
    roles = params.channel_roles or ("embedding",) * emb.shape[0]
    e = [i for i, r in enumerate(roles) if r == "embedding"]
    p = params.foreground_threshold
    fg = np.ones(shape, bool)
    if "foreground" in roles:
        fg = emb[roles.index("foreground")] > np.log(p / (1 - p))
    parent = {v: v for v in itertools.product(*map(range, shape)) if fg[v]}

    def find(v: tuple[int, ...]) -> tuple[int, ...]:
        while parent[v] != v:
            v = parent[v]
        return v

    for v in parent:
        for a in range(len(shape)):
            w = tuple(x + (i == a) for i, x in enumerate(v))
            if w in parent:
                d = sum((float(emb[c][v]) - float(emb[c][w])) ** 2 for c in e)
                if d < params.threshold**2:
                    parent[find(v)] = find(w)
    groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for v in sorted(parent):
        groups.setdefault(find(v), []).append(v)
    out = np.zeros(shape, np.uint32)
    kept = sorted((g for g in groups.values() if len(g) >= params.min_size), key=min)
    for i, g in enumerate(kept, 1):
        for v in g:
            out[v] = i
    return out


def snake(shape: tuple[int, int]) -> np.ndarray:
    """A 1-voxel-wide serpentine path through the whole image."""
    gt = np.zeros(shape, np.uint32)
    gt[::2] = 1
    for r in range(1, shape[0], 2):
        gt[r, -1 if (r // 2) % 2 == 0 else 0] = 1
    return gt


def spiral(n: int) -> np.ndarray:
    """A 1-voxel-wide square spiral walking inwards, a 1-voxel gap between its turns."""
    gt = np.zeros((n, n), np.uint32)
    y, x, dy, dx = 0, 0, 0, 1
    gt[0, 0] = 1

    def free(y: int, x: int) -> bool:
        return 0 <= y < n and 0 <= x < n and not gt[y, x]

    while True:
        for _ in range(2):  # straight on, else turn right
            ahead = (y + 2 * dy, x + 2 * dx)
            if free(y + dy, x + dx) and (free(*ahead) or not (min(ahead) >= 0 and max(ahead) < n)):
                y, x = y + dy, x + dx
                gt[y, x] = 1
                break
            dy, dx = dx, -dy
        else:
            return gt


def helix3d(shape: tuple[int, int, int]) -> np.ndarray:
    """A 1-voxel-wide path in 3-D: a snake in each z-plane, joined plane to plane."""
    gt = np.zeros(shape, np.uint32)
    for z in range(0, shape[0], 2):
        plane = snake(shape[1:])
        gt[z] = plane if (z // 2) % 2 == 0 else plane[::-1, ::-1]
        if z + 1 < shape[0]:
            end = (shape[1] - 1, shape[2] - 1) if gt[z, -1, -1] else (shape[1] - 1, 0)
            gt[z + 1][end] = 1
    return gt


def _cases() -> list[tuple[str, np.ndarray, tuple[int, ...]]]:
    corner2 = np.zeros((12, 12), np.uint32)
    corner2[2:6, 2:6] = 1  # crosses the corner (4, 4) of 4x4 blocks
    corner2[2:6, 6:9] = 2  # touches object 1, embedding far away
    corner3 = np.zeros((8, 8, 8), np.uint32)
    corner3[2:6, 2:6, 2:6] = 1  # crosses the corner (4, 4, 4) of 4x4x4 blocks
    corner3[6:, :, 6:] = 2
    yy, xx = np.mgrid[:30, :30]
    disk = ((yy - 15) ** 2 + (xx - 14) ** 2 < 120).astype(np.uint32)  # spans many blocks
    zz, yy3, xx3 = np.mgrid[:14, :15, :16]
    ball = ((zz - 7) ** 2 + (yy3 - 7) ** 2 + (xx3 - 8) ** 2 < 40).astype(np.uint32) * 3
    return [
        ("corner-2d", corner2, (4, 4)),
        ("corner-3d", corner3, (4, 4, 4)),
        ("disk-many-blocks", disk, (4, 5)),
        ("ball-many-blocks", ball, (3, 4, 5)),
        ("snake-2d", snake((15, 17)), (3, 4)),
        ("spiral-2d", spiral(19), (4, 3)),
        ("helix-3d", helix3d((7, 9, 8)), (2, 3, 3)),
        ("filling", np.ones((9, 10, 11), np.uint32), (4, 3, 5)),
        ("empty", np.zeros((9, 10), np.uint32), (4, 3)),
        ("one-voxel-blocks", disk[:9, 9:20], (1, 1)),
    ]


CASES = _cases()


@pytest.mark.parametrize("name, gt, block", CASES, ids=[c[0] for c in CASES])
def test_blockwise_equals_whole_array(name: str, gt: np.ndarray, block: tuple[int, ...]) -> None:
    params = LabelParams(1.0, channel_roles=ROLES)
    emb = embed(gt, noise=0.05, seed=1)
    whole = label_array(emb, params=params)
    np.testing.assert_array_equal(blockwise(emb, params, block), whole)
    # ... and the whole-array labels are the ground truth's components.
    components, _ = ndimage.label(gt > 0)
    expected = np.where(gt > 0, gt * 1000 + components, 0)
    assert bijective(whole, expected), name
    if name in ("snake-2d", "spiral-2d", "helix-3d"):
        assert whole.max() == 1 and ndimage.label(gt)[1] == 1  # one long thin object
    if name == "filling":
        assert (whole == 1).all()
    if name == "empty":
        assert not whole.any()


def test_min_size_decided_on_merged_objects() -> None:
    gt = np.zeros((8, 8), np.uint32)
    gt[3:5, 3:5] = 1  # 4 voxels, one in each of four 4x4 blocks
    gt[0, 0:3] = 2  # 3 voxels in one block
    emb = embed(gt)
    for min_size, expected_ids in [(4, {0, 1}), (3, {0, 1, 2}), (5, {0})]:
        params = LabelParams(1.0, min_size=min_size, channel_roles=ROLES)
        whole = label_array(emb, params=params)
        np.testing.assert_array_equal(blockwise(emb, params, (4, 4)), whole)
        assert set(np.unique(whole)) == expected_ids
    whole = label_array(emb, params=LabelParams(1.0, min_size=4, channel_roles=ROLES))
    assert whole[3, 3] == 1 and whole[0, 0] == 0


def test_ids_are_consecutive_in_first_voxel_order() -> None:
    gt = np.zeros((6, 6), np.uint32)
    gt[4:, 4:] = 7
    gt[0, 5] = 9
    gt[2:4, 0:2] = 8
    whole = label_array(embed(gt), params=LabelParams(1.0, channel_roles=ROLES))
    assert whole[0, 5] == 1 and whole[2, 0] == 2 and whole[4, 4] == 3


def test_without_foreground_channel_background_is_a_component() -> None:
    gt = np.zeros((10, 10), np.uint32)
    gt[3:6, 3:6] = 1
    emb = embed(gt)[:2]  # embeddings only
    params = LabelParams(1.0)  # no roles: every channel an embedding, every voxel foreground
    whole = label_array(emb, params=params)
    assert set(np.unique(whole)) == {1, 2} and whole[0, 0] == 1 and whole[4, 4] == 2
    np.testing.assert_array_equal(blockwise(emb, params, (3, 4)), whole)


def test_threshold_is_strict_and_ignored_roles_are_ignored() -> None:
    emb = np.array([[[0.0, 1.0, 1.5]], [[9.0, -9.0, 3.0]], [[1.0, 1.0, 1.0]]])
    params = LabelParams(1.0, channel_roles=("embedding", "other", "foreground"))
    assert label_array(emb, params=params).tolist() == [[1, 2, 2]]  # distance 1.0 is not < 1.0


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_blockwise_property(data: st.DataObject) -> None:
    dims = data.draw(st.sampled_from([2, 3]), label="dims")
    limit = 14 if dims == 2 else 8
    shape = tuple(data.draw(st.integers(1, limit), label=f"size{a}") for a in range(dims))
    blocks = [
        tuple(data.draw(st.integers(max(1, -(-s // 4)), s), label="block") for s in shape)
        for _ in range(2)
    ]
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    # Few distinct values: exact ties with the threshold and long chains both happen.
    emb = rng.choice([0.0, 0.5, 1.0, 2.0], size=(3, *shape)).astype(np.float32)
    emb[2] = rng.normal(0.3, 1.0, shape)
    params = LabelParams(
        data.draw(st.sampled_from([0.5, 1.0, 1.5]), label="threshold"),
        min_size=data.draw(st.sampled_from([0, 2, 5]), label="min_size"),
        foreground_threshold=data.draw(st.sampled_from([0.3, 0.5]), label="p"),
        channel_roles=ROLES,
    )
    whole = label_array(emb, params=params)
    if whole.size <= 300:
        np.testing.assert_array_equal(whole, oracle(emb, params))
    for block in blocks:
        np.testing.assert_array_equal(blockwise(emb, params, block, num_workers=2), whole)


def test_uint32_overflow_is_an_error_not_a_wrap() -> None:
    gt = np.zeros((6, 6), np.uint32)
    gt[::2, ::2] = np.arange(1, 10).reshape(3, 3)  # 9 isolated objects
    emb = embed(gt)
    params = LabelParams(1.0, channel_roles=ROLES)
    with pytest.raises(StitchsafeError, match="9 objects.*up to 8.*--label-dtype uint64"):
        label_array(emb, params=params, max_id=8)
    with pytest.raises(StitchsafeError, match="9 objects.*up to 8.*--label-dtype uint64"):
        blockwise(emb, params, (2, 2), max_id=8)
    assert label_array(emb, params=params, max_id=9).max() == 9
    # Local (per-block) ids must not wrap either: 300 objects in one block of uint8 labels.
    many = np.zeros((40, 40), np.uint32)
    many[::2, ::2] = np.arange(1, 401).reshape(20, 20)
    with pytest.raises(StitchsafeError, match="400 separate pieces.*uint8.*--label-dtype uint64"):
        blockwise(embed(many), params, (40, 40), dtype=np.uint8)


def test_merge_fragments_chains_across_many_faces() -> None:
    # 10 fragments in a chain given in scrambled order merge into one object.
    sizes = np.ones(10, np.int64)
    first = np.arange(10)[::-1].copy()
    pairs = np.array([[3, 4], [0, 1], [8, 9], [1, 2], [5, 6], [2, 3], [7, 8], [4, 5], [6, 7]])
    ids, n = merge_fragments(sizes, first, pairs, min_size=0, max_id=100)
    assert n == 1 and (ids == 1).all()


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"labels": {"threshold": 0}}, "labels.threshold"),
        ({"labels": {"min_size": -3}}, "labels.min_size"),
        ({"labels": {"foreground_threshold": 1.0}}, "labels.foreground_threshold"),
        ({"labels": [1.5]}, "'labels' must be an object"),
        ({"loss": {"delta_d": "big"}}, "loss.delta_d"),
        ({"labels": {"seed_threshold": -1}}, "labels.seed_threshold"),
        ({"labels": {"seed_threshold": 1, "grow": 1.5}}, "labels.grow"),
        ({"labels": {"grow": 2}}, "needs 'labels.seed_threshold'"),
        ({"labels": {"seed_foreground_threshold": 0}}, "labels.seed_foreground_threshold"),
    ],
    ids=[
        "threshold",
        "min-size",
        "probability",
        "not-object",
        "delta-d",
        "seed-threshold",
        "grow",
        "grow-without-seeds",
        "seed-probability",
    ],
)
def test_metadata_label_entries_are_validated(entry: dict[str, object], words: str) -> None:
    with pytest.raises(StitchsafeError, match=words):
        validate_metadata({"stitchsafe_metadata": 1, **entry})


def test_label_defaults_from_metadata() -> None:
    meta = validate_metadata(
        {"stitchsafe_metadata": 1, "labels": {"min_size": 4}, "loss": {"delta_d": 2.0, "x": 1}}
    )
    assert label_defaults(meta) == {
        "threshold": 2.0,
        "min_size": 4,
        "foreground_threshold": 0.5,
        "source": "metadata loss.delta_d",
    }
    assert label_defaults({"labels": {"threshold": 0.7, "min_size": 9}})["min_size"] == 9
    d = label_defaults({"loss": {"delta_d": 2.5}, "labels": {"foreground_threshold": 0.8}})
    assert (d["threshold"], d["foreground_threshold"], d["source"]) == (
        2.5,
        0.8,
        "metadata loss.delta_d",
    )


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"threshold": 0.0}, "--threshold must be a positive"),
        ({"threshold": -1.0}, "--threshold must be a positive"),
        ({"threshold": float("nan")}, "--threshold must be a positive"),
        ({"threshold": 1.0, "min_size": -1}, "--min-size must be a non-negative"),
        ({"threshold": 1.0, "foreground_threshold": 1.0}, "--foreground-threshold"),
        ({"threshold": 1.0, "channel_roles": ("foreground", "foreground")}, "more than one"),
    ],
    ids=["zero", "negative", "nan", "min-size", "probability", "two-foregrounds"],
)
def test_bad_parameters(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(StitchsafeError, match=words):
        LabelParams(**kwargs)  # type: ignore[arg-type]


def test_roles_must_match_channels() -> None:
    with pytest.raises(StitchsafeError, match="one role per output channel"):
        label_array(np.zeros((2, 3, 3)), params=LabelParams(1.0, channel_roles=ROLES))


def test_block_boxes_partition() -> None:
    boxes = block_boxes((7, 5, 3), (3, 2, 3))
    cover = np.zeros((7, 5, 3), int)
    for b in boxes:
        cover[b.to_slices()] += 1
    assert (cover == 1).all() and len(boxes) == 3 * 3 * 1


def test_zarr_blocks_more_than_100k_objects(tmp_path: Path) -> None:
    """>100,000 objects on zarr storage, against scipy.ndimage.label; memory measured."""
    shape, block = (96, 128, 128), (32, 64, 64)  # 1.6 M voxels, 18 blocks
    fg = np.random.default_rng(0).random(shape) < 0.2  # below percolation: many clusters
    reference, n = ndimage.label(fg)
    assert n > 100_000
    group = zarr.open_group(str(tmp_path / "scale.zarr"), mode="w")
    emb = group.create_array("emb", shape=(2, *shape), chunks=(2, *block), dtype="float32")
    emb[1] = np.where(fg, 4.0, -4.0)
    out = group.create_array("labels", shape=shape, chunks=block, dtype="uint32")
    params = LabelParams(1.0, channel_roles=("embedding", "foreground"))
    # Warm up (imports, thread pool) so that the measurement sees the labelling only.
    warm = np.zeros((4, 4, 4), np.uint32)
    label_blocks(emb[:, :4, :4, :4], warm, params=params, block_shape=(2, 2, 2), progress=False)
    tracemalloc.start()
    start = time.perf_counter()
    stats = label_blocks(emb, out, params=params, progress=False)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    labels = out[...]
    assert stats.objects == n and bijective(labels, reference)
    volume_bytes = emb.nbytes + labels.nbytes
    print(
        f"\n{n} objects, {fg.size} voxels, {stats.blocks} blocks: {seconds:.2f} s (traced), "
        f"peak {peak / 1e6:.1f} MB traced vs {volume_bytes / 1e6:.1f} MB of embeddings + labels"
    )
    # The memory bound itself is tested below, where the object count stays fixed.


def _traced_peak(shape: tuple[int, ...], block: tuple[int, ...], tmp_path: Path) -> int:
    fg = np.zeros(shape, bool)
    fg[:, 10:20, 10:20] = True  # one long object through every z block, a few blocks wide
    group = zarr.open_group(str(tmp_path / f"m{shape[0]}.zarr"), mode="w")
    emb = group.create_array("emb", shape=(2, *shape), chunks=(2, *block), dtype="float32")
    emb[1] = np.where(fg, 4.0, -4.0)
    out = group.create_array("labels", shape=shape, chunks=block, dtype="uint32")
    params = LabelParams(1.0, channel_roles=("embedding", "foreground"))
    tracemalloc.start()
    stats = label_blocks(emb, out, params=params, progress=False, num_workers=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert stats.objects == 1
    return peak


def test_memory_does_not_grow_with_the_volume(tmp_path: Path) -> None:
    block = (16, 64, 64)
    _traced_peak((16, 64, 64), block, tmp_path)  # warm-up: imports, thread pool
    small = _traced_peak((32, 128, 128), block, tmp_path)
    large = _traced_peak((128, 128, 128), block, tmp_path)  # 4x the voxels, same blocks
    print(f"\ntraced peak: {small / 1e6:.1f} MB (0.5 M voxels), {large / 1e6:.1f} MB (2 M)")
    # Holding the volume (or even one array of it) would grow the peak by at least the
    # data's growth, 12 bytes per voxel here; the blocks and the per-block bookkeeping grow
    # it by a small fraction of that (measured: about a sixth).
    data_growth = 12 * (128 - 32) * 128 * 128
    assert large - small < 0.35 * data_growth


# ------------------------------------------------------------------ the seeded variant


def blurred(
    gt: np.ndarray, *, sigma: float = 1.0, noise: float = 0.05, seed: int = 0
) -> np.ndarray:
    """Embeddings that change smoothly across borders, as a trained network's do."""
    emb = embed(gt, noise=noise, seed=seed)
    for c in range(2):
        emb[c] = ndimage.gaussian_filter(emb[c], sigma)
    return emb


def seeded_oracle(emb: np.ndarray, params: LabelParams) -> np.ndarray:
    """The seeded definition voxel by voxel (tiny arrays): seeds, links, size, growth."""
    shape = emb.shape[1:]
    roles = params.channel_roles or ("embedding",) * emb.shape[0]
    e = [i for i, r in enumerate(roles) if r == "embedding"]
    logit = emb[roles.index("foreground")] if "foreground" in roles else None

    def prob_above(v: tuple[int, ...], p: float) -> bool:
        return True if logit is None else bool(logit[v] > np.log(p / (1 - p)))

    def dist2(v: tuple[int, ...], w: tuple[int, ...]) -> float:
        return sum((float(emb[c][v]) - float(emb[c][w])) ** 2 for c in e)

    def neighbours(v: tuple[int, ...]) -> list[tuple[int, ...]]:
        found = []
        for a in range(len(shape)):
            for step in (1, -1):  # the next voxel before the previous one
                w = tuple(x + step * (i == a) for i, x in enumerate(v))
                if 0 <= w[a] < shape[a]:
                    found.append(w)
        return found

    voxels = list(itertools.product(*map(range, shape)))
    fg = {v for v in voxels if prob_above(v, params.foreground_threshold)}
    assert params.seed_threshold is not None
    seeds = {
        v
        for v in fg
        if prob_above(v, params.seed_foreground_threshold)
        and all(dist2(v, w) < params.seed_threshold**2 for w in neighbours(v) if w in fg)
    }
    parent = {v: v for v in seeds}

    def find(v: tuple[int, ...]) -> tuple[int, ...]:
        while parent[v] != v:
            v = parent[v]
        return v

    for v in sorted(seeds):
        for w in neighbours(v):
            if w in seeds and dist2(v, w) < params.threshold**2:
                parent[find(v)] = find(w)
    groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for v in sorted(seeds):
        groups.setdefault(find(v), []).append(v)
    out = np.zeros(shape, np.uint32)
    kept = sorted((g for g in groups.values() if len(g) >= params.min_size), key=min)
    for i, g in enumerate(kept, 1):
        for v in g:
            out[v] = i
    for _ in range(params.grow):
        new = {}
        for v in fg:
            if out[v]:
                continue
            best = None
            for w in neighbours(v):
                if out[w] and (best is None or dist2(v, w) < best[0]):
                    best = (dist2(v, w), int(out[w]))
            if best is not None:
                new[v] = best[1]
        for v, i in new.items():
            out[v] = i
    return out


SEEDED = LabelParams(1.0, channel_roles=ROLES, seed_threshold=1.0, grow=3)


@pytest.mark.parametrize("name, gt, block", CASES, ids=[c[0] for c in CASES])
def test_seeded_blockwise_equals_whole_array(
    name: str, gt: np.ndarray, block: tuple[int, ...]
) -> None:
    emb = blurred(gt, sigma=0.7, seed=2)
    whole = label_array(emb, params=SEEDED)
    np.testing.assert_array_equal(blockwise(emb, SEEDED, block), whole)
    if name == "filling":
        assert (whole == 1).all()
    if name == "empty":
        assert not whole.any()


def test_seeds_separate_what_links_merge_across_a_blurred_border() -> None:
    # Two touching rectangles whose embedding ramps smoothly from 0 to 4 across their
    # border (steepest step 0.8): a chain of close neighbours crosses it, so plain links
    # merge them; seeds stop short of the steep part and growth splits it evenly.
    gt = np.zeros((20, 24), np.uint32)
    gt[4:16, 3:12] = 1
    gt[4:16, 12:21] = 2
    x = np.arange(24) - 11.5
    emb = np.zeros((2, *gt.shape), np.float32)
    emb[0] = 4.0 / (1.0 + np.exp(-x / 1.25))
    emb[1] = np.where(gt > 0, 5.0, -5.0)
    roles = ("embedding", "foreground")
    links = label_array(emb, params=LabelParams(1.0, channel_roles=roles))
    assert links.max() == 1  # one merged object
    seeded = LabelParams(1.0, channel_roles=roles, seed_threshold=0.5, grow=4)
    labels = label_array(emb, params=seeded)
    assert bijective(labels, gt)  # both objects back, every voxel assigned by the growth
    np.testing.assert_array_equal(blockwise(emb, seeded, (5, 7)), labels)
    seeds_only = LabelParams(1.0, channel_roles=roles, seed_threshold=0.5)
    no_growth = label_array(emb, params=seeds_only)
    assert no_growth.max() == 2 and (no_growth > 0).sum() < (gt > 0).sum()


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_seeded_blockwise_property(data: st.DataObject) -> None:
    dims = data.draw(st.sampled_from([2, 3]), label="dims")
    limit = 12 if dims == 2 else 7
    shape = tuple(data.draw(st.integers(1, limit), label=f"size{a}") for a in range(dims))
    blocks = [
        tuple(data.draw(st.integers(max(1, -(-s // 4)), s), label="block") for s in shape)
        for _ in range(2)
    ]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    emb = rng.choice([0.0, 0.5, 1.0, 2.0], size=(3, *shape)).astype(np.float32)
    emb[2] = rng.normal(0.8, 1.5, shape)
    params = LabelParams(
        data.draw(st.sampled_from([0.5, 1.0, 1.5]), label="threshold"),
        min_size=data.draw(st.sampled_from([0, 2, 4]), label="min_size"),
        channel_roles=ROLES,
        seed_threshold=data.draw(st.sampled_from([0.6, 1.0, 2.0]), label="seed_threshold"),
        seed_foreground_threshold=data.draw(st.sampled_from([0.5, 0.8]), label="ps"),
        grow=data.draw(st.integers(0, 4), label="grow"),
    )
    whole = label_array(emb, params=params)
    if whole.size <= 250:
        np.testing.assert_array_equal(whole, seeded_oracle(emb, params))
    for block in blocks:
        np.testing.assert_array_equal(blockwise(emb, params, block, num_workers=2), whole)


def test_seeded_zarr_blocks_use_a_scratch_array(tmp_path: Path) -> None:
    gt = np.zeros((10, 14, 15), np.uint32)
    gt[1:9, 2:8, 2:13] = 1
    gt[1:9, 8:13, 2:13] = 2
    emb = blurred(gt, sigma=1.0)
    params = LabelParams(1.5, channel_roles=ROLES, seed_threshold=1.5, grow=3)
    out = zarr.create_array(tmp_path / "l.zarr", shape=gt.shape, chunks=(4, 5, 6), dtype="uint32")
    with pytest.raises(ValueError, match="scratch"):
        label_blocks(emb, out, params=params, progress=False)
    scratch = zarr.create_array(
        tmp_path / "s.zarr", shape=gt.shape, chunks=(4, 5, 6), dtype="uint32"
    )
    label_blocks(emb, out, params=params, scratch=scratch, progress=False)
    np.testing.assert_array_equal(out[...], label_array(emb, params=params))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"grow": 2}, "--grow needs --seed-threshold"),
        ({"seed_threshold": 0.0}, "--seed-threshold must be a positive"),
        ({"seed_threshold": float("nan")}, "--seed-threshold must be a positive"),
        ({"seed_threshold": 1.0, "seed_foreground_threshold": 1.0}, "strictly between 0 and 1"),
        ({"seed_threshold": 1.0, "grow": -1}, "--grow must be a non-negative"),
    ],
)
def test_bad_seed_parameters(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(StitchsafeError, match=words):
        LabelParams(1.0, **kwargs)  # type: ignore[arg-type]


def test_seeded_defaults_from_metadata() -> None:
    meta = {"labels": {"threshold": 0.4, "seed_threshold": 0.5, "grow": 6}}
    d = label_defaults(meta)
    assert (d["threshold"], d["seed_threshold"], d["grow"]) == (0.4, 0.5, 6)
    assert "seed_threshold" not in label_defaults({"labels": {"threshold": 0.4}})
