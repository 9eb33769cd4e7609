"""Export a stitchsafe checkpoint as a bioimage.io model package (format 0.5), offline.

:func:`export_bioimageio` writes a zip that ``bioimageio.spec`` validates without touching
the network, and that stitchsafe reads back (``--model package.zip``) with the same
geometry and normalisation: TorchScript weights (run by stitchsafe, no package code) and
state-dict weights with the U-Net's architecture, the valid input sizes, the output offset,
the whole-volume normalisation as preprocessing, test tensors, a cover and a README; the
checkpoint's stitchsafe metadata goes into ``config.stitchsafe``
(:mod:`._export_rdf` says what maps to what).

The geometry written is the one stitchsafe resolves and cross-checks for the checkpoint
(:func:`stitchsafe.models.resolve_geometry`), so a package never declares sizes the network
does not honour. The package is built in a scratch folder beside ``out``, validated, and
then moved into place: a failed export leaves nothing behind and replaces nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import StitchsafeError
from .._loaded import LoadedModel
from .._metadata import unet_metadata, validate_metadata
from .._resolve import resolve_geometry
from .._unet import UNet
from ._export_files import (
    ARCHITECTURE_CALLABLE,
    architecture_kwargs,
    make_test_tensors,
    readme,
    write_cover,
    write_weights,
)
from ._export_rdf import description, export_sizes, preprocessing_steps
from ._export_spec import require_spec, validate_package

__all__ = ["ExportResult", "export_bioimageio"]

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same model gives the same zip


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_bioimageio` wrote.

    ``valid_input`` is the package's ``{"min": [...], "step": [...]}``, ``offset`` the
    output size minus the input size per space axis, ``status`` the validation status
    ``bioimageio.spec`` gave the written zip.
    """

    path: str
    model: str
    name: str
    weights: tuple[str, ...]
    period: tuple[int, ...]
    valid_input: dict[str, list[int]]
    offset: tuple[int, ...]
    preprocessing: tuple[str, ...]
    status: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``stitchsafe export --json``)."""
        return {
            "path": self.path,
            "model": self.model,
            "name": self.name,
            "weights": list(self.weights),
            "period": list(self.period),
            "valid_input": self.valid_input,
            "offset": list(self.offset),
            "preprocessing": list(self.preprocessing),
            "status": self.status,
        }

    def describe(self) -> str:
        """A few lines for the terminal."""
        vi = self.valid_input
        return "\n".join(
            [
                f"bioimage.io package {self.path} ({self.name!r}), from {self.model}",
                f"  weights:        {', '.join(self.weights)}",
                f"  input sizes:    {vi['min']} + n * {vi['step']} (period {list(self.period)})",
                f"  output size:    input size + {list(self.offset)}",
                f"  preprocessing:  {', '.join(self.preprocessing)}",
                f"  bioimageio.spec: {self.status} (validated offline)",
            ]
        )


def export_bioimageio(
    model: LoadedModel,
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write ``model`` (a stitchsafe checkpoint of the built-in U-Net) as a bioimage.io zip.

    Parameters
    ----------
    model
        A loaded stitchsafe checkpoint (:func:`stitchsafe.models.load_model`), e.g. one
        that ``stitchsafe train`` wrote, or a bundled model.
    out
        The package to write (``.zip``).
    name
        The package's name; default ``"stitchsafe <checkpoint name>"``.
    overwrite
        Replace an existing ``out``.

    Returns
    -------
    ExportResult

    Raises
    ------
    StitchsafeError
        ``model`` is not a stitchsafe checkpoint of a stitch-safe U-Net, ``out`` exists
        (without ``overwrite``) or cannot be written, ``bioimageio.spec`` is missing, or
        the written package does not validate.
    """
    target = _target(out, model, overwrite)
    net, meta = _exportable(model)
    require_spec()
    name = _name(name, model)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".stitchsafe-export-") as tmp:
        folder = Path(tmp) / "package"
        folder.mkdir()
        weights = _write_package(net, meta, folder, name)
        staged = Path(tmp) / target.name
        _zip(folder, staged)
        status = validate_package(staged)
        os.replace(staged, target)
    mins, step, context = export_sizes(meta)
    return ExportResult(
        path=str(target),
        model=model.path,
        name=name,
        weights=tuple(weights),
        period=tuple(meta["period"]),
        valid_input={"min": mins, "step": step},
        offset=tuple(-c for c in context),
        preprocessing=tuple(str(s["id"]) for s in preprocessing_steps(meta)),
        status=status,
    )


def _target(out: str | os.PathLike[str], model: LoadedModel, overwrite: bool) -> Path:
    """The zip to write, once it is seen to be writable without losing anything."""
    target = Path(out).absolute()
    if target.suffix.lower() != ".zip":
        raise StitchsafeError(
            f"the package {str(out)!r} must be a .zip file (a bioimage.io package is a zip)."
        )
    if target.is_dir():
        raise StitchsafeError(f"the package {str(out)!r} is a directory; name a .zip file.")
    if any(os.path.abspath(f) == str(target) for f in model.files):
        raise StitchsafeError(f"the package {str(out)!r} would replace the model it exports.")
    if target.exists() and not overwrite:
        raise StitchsafeError(
            f"the package {str(out)!r} already exists; pass --overwrite to replace it."
        )
    if not target.parent.is_dir():
        raise StitchsafeError(
            f"the folder of the package {str(out)!r} does not exist; create it first."
        )
    return target


def _exportable(model: LoadedModel) -> tuple[UNet, dict[str, Any]]:
    """The U-Net (on the CPU) and its complete metadata, the geometry cross-checked."""
    if model.format != "stitchsafe" or not isinstance(model.module, UNet):
        raise StitchsafeError(
            f"model file {model.path!r} is a {model.format} model; export writes stitchsafe "
            "checkpoints of the built-in U-Net (what stitchsafe train writes, and the bundled "
            "models) as bioimage.io packages."
        )
    cfg = model.module.config
    if cfg.padding != "valid" or cfg.norm in ("instance", "group"):
        raise StitchsafeError(
            f"model file {model.path!r} is a U-Net with padding {cfg.padding!r} and norm "
            f"{cfg.norm!r}, which is not stitch-safe; export writes valid-convolution U-Nets "
            "whose tiles stitch exactly."
        )
    geometry, _ = resolve_geometry(model)
    meta = {**unet_metadata(cfg), **(model.metadata or {}), **_geometry_entries(geometry)}
    net = model.module if model.device.type == "cpu" else copy.deepcopy(model.module).cpu()
    return net.eval(), validate_metadata(meta)


def _geometry_entries(geometry: Any) -> dict[str, Any]:
    """``period``/``halo``/``valid_input`` of a resolved geometry."""
    g = geometry.to_dict()
    return {"period": g["period"], "halo": g["halo"], "valid_input": g["valid_input"]}


def _name(name: str | None, model: LoadedModel) -> str:
    """The package's name: as given, or from the checkpoint's file name (letters kept).

    bioimage.io names are at most 128 characters of letters, digits, spaces and ``_-().,``.
    """
    text = name if name is not None else f"stitchsafe {Path(model.path).stem}"
    clean = re.sub(r"[^A-Za-z0-9 _\-().,]", "_", text).strip()[:128]
    if len(clean) < 5:
        raise StitchsafeError(f"the package name {text!r} must have at least 5 characters.")
    return clean


def _write_package(net: UNet, meta: dict[str, Any], folder: Path, name: str) -> list[str]:
    """Every file of the package into ``folder``; returns the weight formats written."""
    files = write_weights(net, meta, folder)
    x, y = make_test_tensors(net, meta)
    np.save(folder / "test_input.npy", x)
    np.save(folder / "test_output.npy", y)
    write_cover(x, y, meta, folder / "cover.png")
    kinds = ["torchscript", "pytorch_state_dict"]
    (folder / "README.md").write_text(readme(meta, name, kinds))
    sha = {p.name: _sha256(p) for p in folder.iterdir()}
    version = torch.__version__.split("+")[0]
    weights = {
        "torchscript": {
            "source": files["torchscript"],
            "sha256": sha[files["torchscript"]],
            "pytorch_version": version,
        },
        "pytorch_state_dict": {
            "source": files["state_dict"],
            "sha256": sha[files["state_dict"]],
            "pytorch_version": version,
            "architecture": {
                "source": files["architecture"],
                "sha256": sha[files["architecture"]],
                "callable": ARCHITECTURE_CALLABLE,
                "kwargs": architecture_kwargs(net),
            },
        },
    }
    tolerance = 1e-4 * float(np.abs(y).max())  # float rounding, well below 1% of the output
    rdf = description(
        meta, name=name, files=sha, weights=weights, torch_version=version, tolerance=tolerance
    )
    # JSON is YAML; the description validates as it is written
    (folder / "rdf.yaml").write_text(json.dumps(rdf, indent=2) + "\n")
    return kinds


def _sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _zip(folder: Path, target: Path) -> None:
    """The folder's files as a deflated zip (``rdf.yaml`` first, fixed member dates)."""
    names = sorted(p.name for p in folder.iterdir())
    names.remove("rdf.yaml")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for member in ["rdf.yaml", *names]:
            info = zipfile.ZipInfo(member, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(folder / member, "rb") as src, zf.open(info, "w") as dst:
                for block in iter(lambda s=src: s.read(1 << 20), b""):
                    dst.write(block)
