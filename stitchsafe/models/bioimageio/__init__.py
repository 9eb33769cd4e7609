"""bioimage.io model packages: reading the description, loading the weights, offline.

The modules inside are private; import from here.
"""

from __future__ import annotations

from ._module import PackageModule
from ._package import load_package
from ._parse import parse_description
from ._pointwise import PointwiseOp
from ._read import YAML_NAMES, find_yaml, package_root, read_description
from ._spec import WEIGHT_FORMATS, ArchitectureSpec, PackageSpec, WeightsSpec

__all__ = [
    "ArchitectureSpec",
    "PackageModule",
    "PackageSpec",
    "PointwiseOp",
    "WEIGHT_FORMATS",
    "WeightsSpec",
    "YAML_NAMES",
    "find_yaml",
    "load_package",
    "package_root",
    "parse_description",
    "read_description",
]
