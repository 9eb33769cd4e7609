"""Tests for the stitchsafe.io package: its public names are those of its private modules."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import stitchsafe.io

# Every private module of the package, found rather than listed (a new one is covered too).
MODULES = tuple(
    importlib.import_module(f"stitchsafe.io.{m.name}")
    for m in pkgutil.iter_modules(stitchsafe.io.__path__)
)


@pytest.mark.parametrize("name", stitchsafe.io.__all__)
def test_package_reexports_the_same_objects(name: str) -> None:
    homes = [m for m in MODULES if name in getattr(m, "__all__", ())]
    assert len(homes) == 1, homes
    assert getattr(stitchsafe.io, name) is getattr(homes[0], name)


def test_package_covers_every_public_name() -> None:
    public = {n for m in MODULES for n in m.__all__}
    assert public - set(stitchsafe.io.__all__) == set()
    padding = importlib.import_module("stitchsafe.io._padding")
    assert stitchsafe.io.PAD_MODES is padding.PAD_MODES
