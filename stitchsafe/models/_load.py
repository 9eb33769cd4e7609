"""Load a model of any supported format, told apart by the file's content.

Four formats (all zip archives; a bioimage.io package may also be a folder):

``"export"``
    a ``torch.export`` program (``.pt2``, the format PyTorch recommends), saved with
    :func:`stitchsafe.models.save_export`; its zip holds an ``archive_format`` entry.
``"torchscript"``
    a TorchScript archive (``torch.jit.save``; deprecated in PyTorch but still common); its
    zip holds ``code/`` and ``constants.pkl``.
``"stitchsafe"``
    a stitchsafe checkpoint of the built-in U-Net (:func:`stitchsafe.models.save_checkpoint`):
    a ``torch.save`` dict ``{"format": "stitchsafe-checkpoint", "version": 1, "config": <JSON
    of UNetConfig>, "metadata": <JSON>, "state_dict": ...}``. It is loaded with
    ``torch.load(..., weights_only=True)`` only, so it never unpickles arbitrary objects
    and loads across torch versions.
``"bioimageio"``
    a bioimage.io model package: a folder, or a zip, holding ``bioimageio.yaml`` or
    ``rdf.yaml`` (:mod:`stitchsafe.models.bioimageio`; its metadata is derived from the package).

Every format may carry stitchsafe metadata (:mod:`stitchsafe.models`, ``METADATA_KEY``);
what it says about axes and channels must match the weights.

Model files are data unless trusted (``trust=True``, ``--trust-model``). Before a file is
loaded, its zip is read back and every member's CRC-32 checked (:func:`verify_zip`: a
damaged file is refused, naming the member). Untrusted, nothing in the file may run code
while it loads or runs (:mod:`stitchsafe.models._untrusted`): a checkpoint is read with
``torch.load(weights_only=True)`` (trusted or not); a ``.pt2`` archive is checked for
pickles, native code and program strings that torch would run, then loaded from the very
bytes that were checked; TorchScript code may not read or write files; a bioimage.io
package may not run architecture code of its own.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import GeometryMismatchError, StitchsafeError
from ._integrity import verify_zip
from ._loaded import (
    CHECKPOINT_FORMAT,
    TORCHSCRIPT_NOTE,
    LoadedModel,
    dims_from_program,
    dims_from_weights,
    first_line,
    parse_device,
    quiet_torchscript,
)
from ._metadata import METADATA_KEY, parse_metadata
from ._unet import UNet, UNetConfig
from ._untrusted import check_export_archive, check_torchscript
from .bioimageio import find_yaml, load_package

__all__ = ["detect_format", "load_model"]

_NOT_A_MODEL = (
    "is not a model stitchsafe can read: expected a torch.export program (.pt2), a "
    "TorchScript file, a stitchsafe checkpoint (stitchsafe.models.save_checkpoint), or a "
    "bioimage.io model package (a zip or folder with rdf.yaml)"
)


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"export"``, ``"torchscript"``, ``"stitchsafe"`` or ``"bioimageio"``, from the content.

    Raises
    ------
    StitchsafeError
        When the file is missing, empty, corrupt or not one of these formats.
    """
    p = Path(path)
    if not p.exists():
        raise StitchsafeError(f"model file {str(p)!r} does not exist.")
    if p.is_dir():
        if find_yaml(c.name for c in p.iterdir() if c.is_file()) is not None:
            return "bioimageio"
        raise StitchsafeError(f"model path {str(p)!r} is a directory; {_NOT_A_MODEL}.")
    if find_yaml([p.name]) is not None:
        raise StitchsafeError(
            f"model file {str(p)!r} is a bioimage.io description; pass the package folder "
            f"({str(p.parent)!r}) or its zip instead."
        )
    if p.stat().st_size == 0:
        raise StitchsafeError(f"model file {str(p)!r} is empty; it {_NOT_A_MODEL}.")
    return _format_of_zip(p, _zip_names(p))


def _zip_names(p: Path) -> list[str]:
    """The member names of the model file's zip; refuse a file that is no zip."""
    try:
        with zipfile.ZipFile(p) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise StitchsafeError(
            f"model file {str(p)!r} {_NOT_A_MODEL} (it is not a zip archive as these all are, "
            "or it is truncated or corrupt)."
        ) from None


def _format_of_zip(p: Path, names: list[str]) -> str:
    """The format a zip's member ``names`` show."""

    def has(member: str) -> bool:
        return any(n == member or n.endswith("/" + member) for n in names)

    if find_yaml(names) is not None:
        return "bioimageio"
    if has("archive_format"):
        return "export"
    if has("constants.pkl") and any(n.startswith("code/") or "/code/" in n for n in names):
        return "torchscript"
    if has("data.pkl"):
        return "stitchsafe"
    raise StitchsafeError(f"model file {str(p)!r} is a zip archive but {_NOT_A_MODEL}.")


def load_model(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu", trust: bool = False
) -> LoadedModel:
    """Load a model of any supported format onto ``device``, in eval mode.

    Parameters
    ----------
    path
        The model file (or bioimage.io package folder).
    device
        Where the model runs.
    trust
        The file may run code of its own while it is loaded or run (``--trust-model``):
        pickled objects, architecture code. Only for files from a source you trust.

    Raises
    ------
    StitchsafeError
        For a file that is not a model, is damaged (a CRC-32 that does not match), or,
        untrusted, would run code of its own.
    """
    fmt = detect_format(path)
    parse_device(device)  # refuse a bad device before the (slow) load
    p = str(path)
    loader: dict[str, Callable[..., LoadedModel]] = {
        "stitchsafe": _load_checkpoint,
        "torchscript": _load_torchscript,
        "export": _load_export,
        "bioimageio": load_package,
    }
    try:
        model = loader[fmt](p, trust=trust)
    except StitchsafeError:
        raise
    except Exception as e:  # corrupt archives fail in many ways deep inside torch
        raise StitchsafeError(
            f"model file {p!r} looks like a {fmt} file but could not be loaded "
            f"({type(e).__name__}: {first_line(e)}); it may be corrupt or truncated."
        ) from e
    return model.to(device)


def _load_checkpoint(path: str, *, trust: bool) -> LoadedModel:  # noqa: ARG001 - never needed
    """A stitchsafe checkpoint: the built-in U-Net, rebuilt from its config.

    Read with ``weights_only=True`` whether trusted or not: a checkpoint holds tensors and
    plain values only.
    """
    verify_zip(path)
    ckpt = _read_checkpoint(path)
    try:
        cfg = UNetConfig.from_dict(json.loads(ckpt["config"]))
        net = UNet(cfg)
        net.load_state_dict(ckpt["state_dict"])
    except StitchsafeError:
        raise
    except Exception as e:
        raise StitchsafeError(
            f"model file {path!r}: the stitchsafe checkpoint is damaged ({first_line(e)})."
        ) from None
    meta = parse_metadata(ckpt.get("metadata"), path)
    model = LoadedModel(path, "stitchsafe", net.eval(), meta, cfg.dims, cfg.in_channels)
    _check_declared_channels(model)
    return model


def _read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint dict, read with ``weights_only=True``; refuse anything else."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:
            raise
        raise StitchsafeError(
            f"model file {path!r} is a torch.save file that stitchsafe refuses to load: it holds "
            f"objects other than tensors and plain containers (e.g. {found.group(1)}), and "
            "stitchsafe never unpickles arbitrary objects. Save the model with "
            "stitchsafe.models.save_checkpoint, save_export (.pt2) or torch.jit.save."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise StitchsafeError(
            f"model file {path!r} is a torch.save file but not a stitchsafe checkpoint (a bare "
            "state_dict does not say which network it belongs to). Save the network as a "
            "torch.export program (.pt2) or TorchScript, or as a built-in U-Net with "
            "stitchsafe.models.save_checkpoint."
        )
    if int(ckpt.get("version", 0)) > 1:
        raise StitchsafeError(
            f"model file {path!r} is a stitchsafe checkpoint of version {ckpt['version']}, newer "
            "than this stitchsafe understands (1); upgrade stitchsafe."
        )
    return ckpt


def _load_torchscript(path: str, *, trust: bool) -> LoadedModel:
    """A TorchScript archive, with the metadata from its ``_extra_files``."""
    data = _read_bytes(path)
    verify_zip(path, data)
    if not trust:
        check_torchscript(path, data)
    extra = {METADATA_KEY: ""}
    with quiet_torchscript():
        module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
    module.eval()
    meta = parse_metadata(extra[METADATA_KEY], path)
    dims, cin = dims_from_weights(module)
    return _finish(
        LoadedModel(path, "torchscript", module, meta, 0, 0, [TORCHSCRIPT_NOTE]), dims, cin
    )


def _load_export(path: str, *, trust: bool) -> LoadedModel:
    """A ``torch.export`` program, with the metadata from its ``extra_files``.

    The file is read once; its bytes are checked (CRC, and untrusted: nothing that would
    run code) and loaded, so that what torch loads is what was checked.
    """
    data = _read_bytes(path)
    verify_zip(path, data)
    if not trust:
        check_export_archive(path, data)
    extra = {METADATA_KEY: ""}
    program = torch.export.load(io.BytesIO(data), extra_files=extra)
    meta = parse_metadata(extra[METADATA_KEY], path)
    dims, cin = dims_from_program(program)
    model = LoadedModel(path, "export", program.module(), meta, 0, 0, program=program)
    return _finish(model, dims, cin)


def _read_bytes(path: str) -> bytes:
    """The whole file: checked and then loaded from memory, so both see the same bytes."""
    with open(path, "rb") as f:
        return f.read()


def _finish(model: LoadedModel, dims: int | None, cin: int | None) -> LoadedModel:
    """Fill dims/channels from the weights, else the metadata; refuse when neither says."""
    meta = model.metadata or {}
    model.dims = dims if dims is not None else int(meta.get("dims", 0))
    model.channels_in = cin if cin is not None else int(meta.get("channels_in", 0))
    if model.dims < 1 or model.channels_in < 1:
        raise StitchsafeError(
            f"model file {model.path!r}: cannot tell the model's number of spatial axes and input "
            "channels (no convolution weight found and no metadata). Store metadata with the "
            "model (stitchsafe.models.save_export(..., metadata={'stitchsafe_metadata': 1, "
            "'dims': 3, 'channels_in': 1, ...}))."
        )
    _check_declared_channels(model)
    return model


def _check_declared_channels(model: LoadedModel) -> None:
    """Refuse metadata whose ``dims``/``channels_in`` contradict the weights."""
    meta = model.metadata or {}
    for key, measured, what in (
        ("dims", model.dims, "spatial axes"),
        ("channels_in", model.channels_in, "input channels"),
    ):
        if key in meta and int(meta[key]) != measured:
            raise GeometryMismatchError(
                f"model file {model.path!r}: metadata says {key} {meta[key]} but the model "
                f"takes {measured} {what}. Fix or remove the metadata."
            )
