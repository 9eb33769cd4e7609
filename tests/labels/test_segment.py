"""Labels on disk: predict writes them, segment re-derives them, both as OME-Zarr image-labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from nets import make_net

import stitchsafe
from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.labels import LabelParams, label_array
from stitchsafe.models import save_checkpoint, unet_metadata
from stitchsafe.io import prepare_output, read_pyramid, write_block

ROLES = ["embedding", "embedding", "foreground"]


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("segment")
    net, cfg = make_net("2d-d1-f2", out_channels=3)
    model = tmp / "model.pt"
    meta = unet_metadata(cfg, channel_roles=ROLES, labels={"threshold": 0.02, "min_size": 2})
    save_checkpoint(net, model, metadata=meta)
    yy, xx = np.mgrid[:46, :52]
    data = (1000 * (np.sin(yy / 3.0) * np.cos(xx / 4.0) > 0.2) + 50 * np.sin(xx)).astype(np.uint16)
    inp = tmp / "vol.zarr"
    arr = zarr.create_array(inp, shape=data.shape, chunks=(16, 16), dtype=data.dtype)
    arr[...] = data
    return {"model": model, "input": inp, "tmp": tmp}


def _labels(group: str | Path, path: str) -> np.ndarray:
    return np.asarray(zarr.open_array(str(Path(group) / path), mode="r"))


def _predict(
    v: dict[str, Path], name: str, tile: tuple[int, int], **kw: object
) -> stitchsafe.PredictResult:
    options: dict[str, Any] = {"tile_shape": tile, "device": "cpu", "progress": False, **kw}
    return stitchsafe.predict(v["model"], v["input"], output=v["tmp"] / name, **options)


def test_predict_writes_labels_equal_to_whole_array(volume: dict[str, Path]) -> None:
    r = _predict(volume, "a.zarr", (16, 12))
    assert r.labels == "labels/instances/0" and r.objects is not None  # the root is the image
    labels = _labels(r.output, r.labels)
    emb = _labels(r.output, r.embeddings)
    params = LabelParams(0.02, min_size=2, channel_roles=tuple(ROLES))
    np.testing.assert_array_equal(labels, label_array(emb, params=params))
    assert 5 < r.objects == labels.max() and labels.dtype == np.uint32
    assert zarr.open_array(str(Path(r.output) / r.labels)).chunks == (16, 12)
    attrs = zarr.open_group(str(Path(r.output))).attrs.asdict()["stitchsafe"]
    assert attrs["channel_roles"] == ROLES
    assert attrs["label_defaults"]["threshold"] == 0.02 and attrs["label_defaults"]["min_size"] == 2
    d = r.to_dict()
    assert d["labels"] == r.labels and d["objects"] == r.objects


def test_tile_shape_does_not_change_labels(volume: dict[str, Path]) -> None:
    a = _predict(volume, "t1.zarr", (16, 12))
    b = _predict(volume, "t2.zarr", (6, 26))
    # Embeddings agree to float noise; the labels are identical.
    np.testing.assert_array_equal(_labels(a.output, a.labels), _labels(b.output, b.labels))


def test_segment_equals_predict_and_respects_overwrite(volume: dict[str, Path]) -> None:
    r = _predict(volume, "s.zarr", (16, 12), labels=False)
    assert r.labels is None and r.objects is None
    assert not (Path(r.output) / "labels").exists()
    s = stitchsafe.segment(r.output, progress=False)
    assert s.embeddings == "0" and s.labels == "labels/instances/0"
    p = _predict(volume, "p.zarr", (16, 12))
    np.testing.assert_array_equal(_labels(s.output, s.labels), _labels(p.output, p.labels))
    assert s.objects == p.objects and s.params["threshold"] == 0.02
    with pytest.raises(StitchsafeError, match="already holds.*--overwrite"):
        stitchsafe.segment(r.output, progress=False)
    s2 = stitchsafe.segment(r.output, threshold=0.5, min_size=0, overwrite=True, progress=False)
    assert s2.objects < s.objects  # a looser threshold merges more
    s3 = stitchsafe.segment(r.output, label_dtype="uint64", overwrite=True, progress=False)
    labels = _labels(s3.output, s3.labels)
    assert labels.dtype == np.uint64 and s3.objects == s.objects


def _embeddings_image(
    group: Path, data: np.ndarray, chunks: tuple[int, ...], **attrs: object
) -> None:
    spec = prepare_output(
        group,
        shape=data.shape[1:],
        channels=data.shape[0],
        chunks=chunks,
        axes=("z", "y", "x")[4 - data.ndim :],
        attributes=dict(attrs),
        overwrite=True,
    )
    write_block(spec, Box.from_shape(data.shape[1:]), data)


def test_segment_any_chunking_gives_the_same_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.choice([0.0, 0.4, 1.0], size=(3, 9, 17, 14)).astype(np.float32)
    data[2] = rng.normal(0.5, 1, data.shape[1:])
    roles = ["embedding", "embedding", "foreground"]
    params = LabelParams(0.6, min_size=3, channel_roles=tuple(roles))
    whole = label_array(data, params=params)
    for i, chunks in enumerate([(9, 17, 14), (4, 6, 5), (1, 17, 14), (9, 3, 2)]):
        group = tmp_path / f"c{i}.zarr"
        _embeddings_image(group, data, chunks, channel_roles=roles)
        s = stitchsafe.segment(group, threshold=0.6, min_size=3, progress=False)
        np.testing.assert_array_equal(_labels(group, s.labels), whole)


def test_seeded_segment_any_chunking_and_no_scratch_left(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = rng.choice([0.0, 0.4, 1.0], size=(3, 9, 17, 14)).astype(np.float32)
    data[2] = rng.normal(1.0, 1.5, data.shape[1:])
    roles = ["embedding", "embedding", "foreground"]
    flags = {"threshold": 0.6, "min_size": 2, "seed_threshold": 0.7, "grow": 3}
    params = LabelParams(**flags, channel_roles=tuple(roles))  # type: ignore[arg-type]
    whole = label_array(data, params=params)
    assert whole.max() > 3
    for i, chunks in enumerate([(9, 17, 14), (4, 6, 5), (2, 3, 2)]):
        group = tmp_path / f"c{i}.zarr"
        _embeddings_image(group, data, chunks, channel_roles=roles)
        s = stitchsafe.segment(group, progress=False, **flags)  # type: ignore[arg-type]
        np.testing.assert_array_equal(_labels(group, s.labels), whole)
        assert s.params["seed_threshold"] == 0.7 and s.params["grow"] == 3
        image = group / "embeddings" / "labels" / "instances"
        levels = [level.path for level in read_pyramid(group, "embeddings/labels/instances").levels]
        assert sorted(p.name for p in image.iterdir()) == sorted([*levels, "zarr.json"])


def test_seeded_defaults_come_from_the_model(tmp_path: Path) -> None:
    net, cfg = make_net("2d-d1-f2", out_channels=3)
    model = tmp_path / "model.pt"
    labels = {"threshold": 0.05, "min_size": 2, "seed_threshold": 0.05, "grow": 2}
    save_checkpoint(net, model, metadata=unet_metadata(cfg, channel_roles=ROLES, labels=labels))
    yy, xx = np.mgrid[:40, :44]
    data = (1000 * (np.sin(yy / 3.0) * np.cos(xx / 4.0) > 0.2)).astype(np.uint16)
    inp = tmp_path / "vol.zarr"
    zarr.create_array(inp, shape=data.shape, chunks=(16, 16), dtype=data.dtype)[...] = data
    r = stitchsafe.predict(
        model, inp, output=tmp_path / "o.zarr", tile_shape=(12, 12), device="cpu", progress=False
    )
    emb = _labels(r.output, r.embeddings)
    params = LabelParams(0.05, min_size=2, channel_roles=tuple(ROLES), seed_threshold=0.05, grow=2)
    np.testing.assert_array_equal(_labels(r.output, r.labels), label_array(emb, params=params))


def test_labels_are_valid_ome_zarr(volume: dict[str, Path]) -> None:
    models = pytest.importorskip("ome_zarr_models.v05")
    reader = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    r = _predict(volume, "ome.zarr", (16, 12))
    root = Path(r.output)  # the container predict made is the embeddings image
    models.Image.from_zarr(zarr.open_group(str(root)))
    labels_group = models.Labels.from_zarr(zarr.open_group(str(root / "labels")))
    assert labels_group.attributes.ome.labels == ["instances"]
    image_label = models.ImageLabel.from_zarr(zarr.open_group(str(root / "labels" / "instances")))
    assert image_label.attributes.ome.image_label.source.image == "../../"
    assert image_label.attributes.ome.image_label.colors is None
    nodes = list(reader.Reader(parse_url(str(root)))())
    found = [n for n in nodes if str(n.zarr).split()[0].endswith("instances")]
    assert found, [str(n.zarr) for n in nodes]
    np.testing.assert_array_equal(np.asarray(found[0].data[0]), _labels(r.output, r.labels))
    assert [a["name"] for a in found[0].metadata["axes"]] == ["y", "x"]


def test_segment_bad_input(tmp_path: Path) -> None:
    with pytest.raises(StitchsafeError, match="does not exist"):
        stitchsafe.segment(tmp_path / "missing.zarr")
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(StitchsafeError, match="embeddings array is missing"):
        stitchsafe.segment(tmp_path / "g.zarr")
    flat: dict[str, Any] = {"shape": (5,), "channels": 2, "chunks": (5,), "axes": ("x",)}
    spec = prepare_output(tmp_path / "g.zarr", image="flat", **flat)
    assert spec.array == "flat/0"
    with pytest.raises(StitchsafeError, match=r"shape \(2, 5\).*2 or 3 spatial axes"):
        stitchsafe.segment(tmp_path / "g.zarr", image="flat")
    _embeddings_image(tmp_path / "g.zarr", np.zeros((2, 4, 4), np.float32), (4, 4))
    for kw, words in [
        ({"threshold": 0.0}, "--threshold must be a positive"),
        ({"min_size": -1}, "--min-size must be a non-negative"),
        ({"label_dtype": "int8"}, "--label-dtype 'int8'"),
    ]:
        with pytest.raises(StitchsafeError, match=words):
            stitchsafe.segment(tmp_path / "g.zarr", **kw)  # type: ignore[arg-type]
    assert not (tmp_path / "g.zarr" / "embeddings" / "labels").exists()
    zeros = np.zeros((2, 4, 4), np.float32)
    _embeddings_image(tmp_path / "g.zarr", zeros, (4, 4), channel_roles=ROLES)
    with pytest.raises(StitchsafeError, match="name 3 channel.*have 2"):
        stitchsafe.segment(tmp_path / "g.zarr")
    _embeddings_image(tmp_path / "g.zarr", np.zeros((2, 4, 4), np.float32), (4, 4), complete=False)
    with pytest.raises(StitchsafeError, match="incomplete"):
        stitchsafe.segment(tmp_path / "g.zarr")


def test_failed_labelling_leaves_no_half_written_labels(tmp_path: Path) -> None:
    from stitchsafe.labels import open_embeddings, write_labels

    data = np.zeros((1, 6, 6), np.float32)
    data[0, ::2, ::2] = np.arange(1, 10).reshape(3, 3) * 10  # 9 objects + the background
    _embeddings_image(tmp_path / "g.zarr", data, (2, 2))
    source = open_embeddings(tmp_path / "g.zarr")
    with pytest.raises(StitchsafeError, match="--label-dtype uint64"):
        write_labels(source, params=LabelParams(1.0), max_id=3, progress=False)
    labels_dir = tmp_path / "g.zarr" / "embeddings" / "labels"
    assert not (labels_dir / "instances").exists()
    assert zarr.open_group(str(labels_dir)).attrs["ome"]["labels"] == []
    spec, stats = write_labels(source, params=LabelParams(1.0), progress=False)
    assert stats.objects == 10 and spec.array == "embeddings/labels/instances/0"
