"""Tests for the stitchsafe.io facade: it re-exports the input, padding and output API."""

from __future__ import annotations

import pytest

import stitchsafe.io
from stitchsafe import output, padding, volume


@pytest.mark.parametrize("name", stitchsafe.io.__all__)
def test_facade_reexports_the_same_objects(name: str) -> None:
    homes = [m for m in (volume, padding, output) if name in m.__all__]
    assert len(homes) == 1, homes
    assert getattr(stitchsafe.io, name) is getattr(homes[0], name)


def test_facade_covers_every_public_name() -> None:
    public = {n for m in (volume, padding, output) for n in m.__all__}
    assert public - set(stitchsafe.io.__all__) == {"PAD_MODES"}
    assert stitchsafe.io.PAD_MODES is padding.PAD_MODES
