"""``stitchsafe.predict_lazy``: the stitched result as a dask array, equal to one pass."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array
import numpy as np
import pytest
import zarr
from dask.core import flatten
from dask.optimization import cull
from images import random_image, write_zarr
from nets import saved_model

import stitchsafe
from stitchsafe.engine import compute_normalization, whole_volume_forward
from stitchsafe.errors import StitchsafeError
from stitchsafe.io import open_volume
from stitchsafe.models import load_model, resolve_geometry

TOL = 1e-4

# (architecture, volume shape, tile shape in periods): odd shapes, several tiles.
CASES = [
    ("2d-d2-f3", (61, 44), (2, 1)),
    ("2d-d1-f2", (5, 3), (4, 4)),
    ("3d-aniso-122-d2", (11, 29, 34), (3, 2, 3)),
]


def _oracle(model_path: Path, data: np.ndarray, image: str) -> np.ndarray:
    model = load_model(model_path)
    geometry, _ = resolve_geometry(model)
    with open_volume(image, spatial_dims=data.ndim) as volume:
        norm = compute_normalization(volume, method="percentile", percentiles=(1.0, 99.8))
    return whole_volume_forward(data[None], model, geometry, transform=norm)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name,shape,periods", CASES, ids=[c[0] for c in CASES])
def test_lazy_result_equals_one_whole_volume_pass(
    tmp_path: Path, name: str, shape: tuple[int, ...], periods: tuple[int, ...]
) -> None:
    path = saved_model(name, "stitchsafe")
    data = random_image(shape).astype(np.float32)
    image = write_zarr(tmp_path / "in.zarr", data)
    model = stitchsafe.load_model(path)
    tile = tuple(k * p for k, p in zip(periods, model.geometry.period))
    lazy = stitchsafe.predict_lazy(model, image, tile_shape=tile, normalize="percentile")
    assert lazy.embeddings.shape == (model.geometry.channels_out, *shape)
    assert lazy.embeddings.chunksize[1:] == tuple(min(t, s) for t, s in zip(tile, shape))
    result = lazy.embeddings.compute(scheduler="threads")
    assert _relative(result, _oracle(path, data, image)) < TOL
    # the same as a written run of the same tiles
    written = stitchsafe.predict(
        model,
        image,
        output=tmp_path / "out.zarr",
        tile_shape=tile,
        normalize="percentile",
        labels=False,
        progress=False,
    )
    stored = np.asarray(zarr.open_array(f"{written.output}/{written.embeddings}", mode="r"))
    assert _relative(result, stored) < 1e-5


def test_a_slice_runs_only_the_tiles_under_it(tmp_path: Path) -> None:
    path = saved_model("2d-d1-f2", "stitchsafe")
    image = write_zarr(tmp_path / "in.zarr", random_image((64, 64)))
    lazy = stitchsafe.predict_lazy(path, image, tile_shape=16)
    part = lazy.embeddings[:, 20:30, 40:50]
    # tiles (1, 2) and (1, 3): 16..32 x 32..64, the only tasks in the slice's graph
    graph, _ = cull(dict(part.__dask_graph__()), list(flatten(part.__dask_keys__())))
    tasks = [k for k in graph if k[0] == lazy.embeddings.name]
    assert sorted(k[2:] for k in tasks) == [(1, 2), (1, 3)]
    whole = lazy.embeddings.compute()
    np.testing.assert_array_equal(part.compute(), whole[:, 20:30, 40:50])


def test_lazy_result_on_a_local_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    path = saved_model("2d-d2-f3", "stitchsafe")
    data = random_image((40, 52)).astype(np.float32)
    image = write_zarr(tmp_path / "in.zarr", data)
    lazy = stitchsafe.predict_lazy(path, image, tile_shape=(18, 9), normalize="percentile")
    here = lazy.embeddings.compute(scheduler="threads")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # the workers load the model from its file (nothing pickled but the job)
        there = client.compute(lazy.embeddings).result()
    assert _relative(there, here) < 1e-5
    assert _relative(there, _oracle(path, data, image)) < TOL


def test_lazy_result_writes_anywhere(tmp_path: Path) -> None:
    path = saved_model("2d-d1-f2", "stitchsafe")
    image = write_zarr(tmp_path / "in.zarr", random_image((30, 30)))
    lazy = stitchsafe.predict_lazy(path, image, tile_shape=8)
    with dask.config.set(scheduler="threads"):
        lazy.embeddings.to_zarr(str(tmp_path / "mine.zarr"))
    stored = zarr.open_array(str(tmp_path / "mine.zarr"), mode="r")
    np.testing.assert_array_equal(stored[...], lazy.embeddings.compute())


@pytest.mark.parametrize("kind", ["numpy", "dask", "zarr"])
def test_arrays_in_give_the_file_run(tmp_path: Path, kind: str) -> None:
    path = saved_model("2d-d2-f3", "stitchsafe")
    data = random_image((2, 40, 52))[:1]  # one channel axis, as a stored array has
    image = write_zarr(tmp_path / "in.zarr", data)
    given = {
        "numpy": data,
        "dask": dask.array.from_array(data, chunks=(1, 16, 16)),
        "zarr": zarr.open_array(image, mode="r"),
    }[kind]
    kept = stitchsafe.load_model(path)
    from_file = stitchsafe.predict_lazy(kept, image, tile_shape=(18, 9)).embeddings.compute()
    lazy = stitchsafe.predict_lazy(kept, given, tile_shape=(18, 9), voxel_size="0.5")
    np.testing.assert_array_equal(lazy.embeddings.compute(), from_file)
    assert lazy.plan.input_path == "<array>" and lazy.physical.scale == (0.5, 0.5)
    written = stitchsafe.predict(
        kept, given, output=tmp_path / "out.zarr", tile_shape=(18, 9), progress=False
    )
    stored = zarr.open_array(f"{written.output}/{written.embeddings}", mode="r")[...]
    assert _relative(stored, from_file) < 1e-5
    assert written.objects is not None


def test_an_array_needs_an_output(tmp_path: Path) -> None:
    with pytest.raises(stitchsafe.errors.StitchsafeError, match="output="):
        stitchsafe.predict(None, np.zeros((32, 32), np.float32), progress=False)


def test_channel_roles_for_a_model_that_does_not_name_them(tmp_path: Path) -> None:
    """A TorchScript file without stitchsafe metadata: no roles unless declared; declared
    roles are checked against its output channels, and the bundled model's own are kept."""
    path = saved_model("2d-d1-f2", "torchscript", metadata=False)
    image = write_zarr(tmp_path / "in.zarr", random_image((32, 32)))
    plain = stitchsafe.predict_lazy(path, image, tile_shape=16)
    assert plain.channel_roles is None
    channels = plain.embeddings.shape[0]
    declared = ["embedding"] * (channels - 1) + ["probability"]  # a list, or the CLI's text
    lazy = stitchsafe.predict_lazy(path, image, tile_shape=16, channel_roles=declared)
    assert lazy.channel_roles == ("embedding",) * (channels - 1) + ("probability",)
    assert lazy.embeddings.shape[0] == channels
    with pytest.raises(StitchsafeError, match=f"has {channels} output channel"):
        stitchsafe.predict_lazy(path, image, tile_shape=16, channel_roles="e,e,e,e,e,e,e,f")
    with pytest.raises(StitchsafeError, match="not a role"):
        stitchsafe.predict_lazy(path, image, tile_shape=16, channel_roles="embeding")
    bundled = stitchsafe.predict_lazy(None, image, tile_shape=16)
    assert bundled.channel_roles is not None and bundled.channel_roles[-1] == "foreground"
    replaced = stitchsafe.predict_lazy(None, image, tile_shape=16, channel_roles="e:6,ignore")
    assert replaced.channel_roles == ("embedding",) * 6 + ("ignore",)
