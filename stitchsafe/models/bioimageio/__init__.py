"""bioimage.io model packages: reading the description, loading the weights, offline.

The modules inside are private; import from here.
"""

from __future__ import annotations

from ._archive import (
    MAX_MEMBER_BYTES,
    MAX_RATIO,
    MAX_TOTAL_BYTES,
    YAML_NAMES,
    PackageFiles,
    find_yaml,
    open_package,
)
from ._export import ExportResult, export_bioimageio
from ._export_spec import config_metadata
from ._module import PackageModule
from ._package import load_package
from ._parse import parse_description
from ._pointwise import PointwiseOp
from ._read import read_description
from ._spec import WEIGHT_FORMATS, ArchitectureSpec, PackageSpec, WeightsSpec

__all__ = [
    "ArchitectureSpec",
    "ExportResult",
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "PackageFiles",
    "PackageModule",
    "PackageSpec",
    "PointwiseOp",
    "WEIGHT_FORMATS",
    "WeightsSpec",
    "YAML_NAMES",
    "config_metadata",
    "export_bioimageio",
    "find_yaml",
    "load_package",
    "open_package",
    "parse_description",
    "read_description",
]
