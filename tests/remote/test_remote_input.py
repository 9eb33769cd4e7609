"""Inputs on a real S3-compatible server (moto) and a GCS emulator (fake-gcs-server),
both on 127.0.0.1: read as the local copies are."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
import numpy as np
import pytest

from stitchsafe.errors import StitchsafeError
from stitchsafe.geometry import Box
from stitchsafe.io import input_identity, open_volume, use_storage_options

if TYPE_CHECKING:  # the fixtures' type (tests/remote/conftest.py)
    from conftest import GcsServer, S3Server


def _whole(volume) -> np.ndarray:
    return volume.read(Box((0,) * volume.ndim, volume.shape))


def test_remote_array_group_and_ome_image_read_as_their_local_copies(s3_env: S3Server) -> None:
    local = open_volume(s3_env.local["vol.zarr"] / "raw", spatial_dims=3)
    for url, key in (
        (s3_env.url("vol.zarr/raw"), None),
        (s3_env.url("vol.zarr"), "raw"),
        (s3_env.url("vol.zarr/raw/"), None),
    ):
        remote = open_volume(url, key=key, spatial_dims=3)
        assert (remote.kind, remote.shape, remote.dtype) == ("zarr", local.shape, local.dtype)
        assert (remote.container, remote.array_path) == (s3_env.url("vol.zarr"), "raw")
        np.testing.assert_array_equal(_whole(remote), _whole(local))
    ome_local = open_volume(s3_env.local["ome.zarr"], spatial_dims=3)
    ome = open_volume(s3_env.url("ome.zarr"), spatial_dims=3)
    assert ome.kind == "ome-zarr" and ome.physical == ome_local.physical
    np.testing.assert_array_equal(_whole(ome), _whole(ome_local))


def test_remote_identity_is_the_local_one_but_for_the_path(s3_env: S3Server) -> None:
    remote = input_identity(open_volume(s3_env.url("vol.zarr/raw"), spatial_dims=3)).to_dict()
    local = input_identity(open_volume(s3_env.local["vol.zarr"] / "raw", spatial_dims=3)).to_dict()
    assert remote.pop("path") == s3_env.url("vol.zarr/raw")
    assert Path(local.pop("path")) == (s3_env.local["vol.zarr"] / "raw").resolve()
    assert remote == local


@pytest.fixture()
def options(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch):
    """``use_storage_options`` for one test: fsspec's configuration and environment restored."""
    monkeypatch.setattr(fsspec.config, "conf", {})
    monkeypatch.setenv("FSSPEC_S3", "{}")  # restored (removed) after the test
    yield use_storage_options
    use_storage_options({})


def test_missing_bucket_key_and_array_are_named(s3_env: S3Server) -> None:
    with pytest.raises(StitchsafeError, match="no bucket 'no-such-bucket'"):
        open_volume("s3://no-such-bucket/vol.zarr", spatial_dims=3)
    with pytest.raises(StitchsafeError, match="does not exist: the store holds no zarr array"):
        open_volume(s3_env.url("nothing.zarr"), spatial_dims=3)
    with pytest.raises(StitchsafeError, match="has no array or image 'nope'. Arrays found: raw"):
        open_volume(s3_env.url("vol.zarr"), key="nope", spatial_dims=3)


def test_storage_options_reach_the_store_over_the_environment(options, s3_env, monkeypatch) -> None:
    url = s3_env.url("vol.zarr/raw")
    options({"key": s3_env.key, "secret": "wrong"})
    with pytest.raises(StitchsafeError, match="access to .* was denied .*AWS_ACCESS_KEY_ID"):
        open_volume(url, spatial_dims=3)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    options({"endpoint_url": "http://127.0.0.1:9"})  # nothing listens there
    with pytest.raises(StitchsafeError, match="cannot reach the store .* endpoint_url"):
        open_volume(url, spatial_dims=3)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    options({"endpoint_url": s3_env.endpoint})
    assert open_volume(url, spatial_dims=3).shape == (8, 32, 32)


def test_images_over_http_read_as_their_local_copies(http_images: str, s3: S3Server) -> None:
    for name, key in (("vol.zarr", "raw"), ("vol.zarr/raw", None), ("ome.zarr", None)):
        remote = open_volume(f"{http_images}/{name}", key=key, spatial_dims=3)
        local = open_volume(s3.local["vol.zarr"].parent / name, key=key, spatial_dims=3)
        assert (remote.kind, remote.physical) == (local.kind, local.physical)
        np.testing.assert_array_equal(_whole(remote), _whole(local))
        here, there = input_identity(local).to_dict(), input_identity(remote).to_dict()
        assert here.pop("path") != there.pop("path") and here == there
    with pytest.raises(StitchsafeError, match="does not exist: the store holds no zarr array"):
        open_volume(f"{http_images}/nothing.zarr", spatial_dims=3)


def test_gcs_array_and_ome_image_read_as_their_local_copies(gcs_env: GcsServer) -> None:
    local = open_volume(gcs_env.local["vol.zarr"] / "raw", spatial_dims=3)
    remote = open_volume(gcs_env.url("vol.zarr"), key="raw", spatial_dims=3)
    assert (remote.container, remote.array_path) == (gcs_env.url("vol.zarr"), "raw")
    np.testing.assert_array_equal(_whole(remote), _whole(local))
    ome_local = open_volume(gcs_env.local["ome.zarr"], spatial_dims=3)
    ome = open_volume(gcs_env.url("ome.zarr"), spatial_dims=3)
    assert ome.kind == "ome-zarr" and ome.physical == ome_local.physical
    np.testing.assert_array_equal(_whole(ome), _whole(ome_local))
    with pytest.raises(StitchsafeError, match="no bucket 'no-such-bucket'.*STORAGE_EMULATOR"):
        open_volume("gs://no-such-bucket/vol.zarr", spatial_dims=3)
