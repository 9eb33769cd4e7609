"""Tests for the stitchsafe.io package: its public names are those of its private modules."""

from __future__ import annotations

import pytest

import stitchsafe.io
from stitchsafe.io import (
    _arrays,
    _axes,
    _label_output,
    _layout,
    _ome_image,
    _open,
    _output,
    _padding,
    _resume,
    _tiff_input,
    _volume,
    _zarr_input,
    _zarr_meta,
)

MODULES = (
    _arrays,
    _axes,
    _label_output,
    _layout,
    _ome_image,
    _open,
    _output,
    _padding,
    _resume,
    _tiff_input,
    _volume,
    _zarr_input,
    _zarr_meta,
)


@pytest.mark.parametrize("name", stitchsafe.io.__all__)
def test_package_reexports_the_same_objects(name: str) -> None:
    homes = [m for m in MODULES if name in getattr(m, "__all__", ())]
    assert len(homes) <= 1, homes
    if homes:
        assert getattr(stitchsafe.io, name) is getattr(homes[0], name)


def test_package_covers_every_public_name() -> None:
    public = {n for m in MODULES for n in m.__all__}
    assert public - set(stitchsafe.io.__all__) == set()
    assert stitchsafe.io.PAD_MODES is _padding.PAD_MODES
