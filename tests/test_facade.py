"""The public facade: ``stitchsafe.plan``, ``predict``, ... load lazily and stay functions."""

from __future__ import annotations

import subprocess
import sys

import pytest

import stitchsafe


@pytest.mark.parametrize("name", [n for n in stitchsafe.__all__ if n != "__version__"])
def test_public_functions_resolve(name: str) -> None:
    assert callable(getattr(stitchsafe, name))


def test_predict_stays_a_function_after_its_module_is_imported() -> None:
    # Why the orchestration lives in stitchsafe.prediction, not stitchsafe.predict: importing
    # a submodule sets it as an attribute of the package, which would hide the function.
    code = (
        "import stitchsafe.prediction, stitchsafe.session, stitchsafe; "
        "import inspect; print(inspect.isfunction(stitchsafe.predict), "
        "inspect.isfunction(stitchsafe.plan))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = (
        "import sys, stitchsafe; print([m for m in ('torch', 'zarr', 'dask') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        stitchsafe.nothing  # noqa: B018
