"""Load and save models; read their metadata; resolve their tiling geometry.

Four formats, told apart by the file's *content* (all zip archives; a bioimage.io
package may also be a folder):

``"export"``
    a ``torch.export`` program (``.pt2``, the format PyTorch recommends), saved with
    :func:`save_export`; its zip holds an ``archive_format`` entry.
``"torchscript"``
    a TorchScript archive (``torch.jit.save``; deprecated in PyTorch but still common); its
    zip holds ``code/`` and ``constants.pkl``.
``"stitchsafe"``
    a stitchsafe checkpoint of the built-in U-Net (:func:`save_checkpoint`): a
    ``torch.save`` dict ``{"format": "stitchsafe-checkpoint", "version": 1, "config": <JSON
    of UNetConfig>, "metadata": <JSON>, "state_dict": ...}``. It is loaded with
    ``torch.load(..., weights_only=True)`` only, so it never unpickles arbitrary objects
    and loads across torch versions.
``"bioimageio"``
    a bioimage.io model package: a folder, or a zip, holding ``bioimageio.yaml`` or
    ``rdf.yaml`` (:mod:`stitchsafe.bioimageio`; its metadata is derived from the package).

Metadata
--------
Every format stores one JSON entry named :data:`METADATA_KEY` (``"stitchsafe.json"``): in
the checkpoint dict, in TorchScript ``_extra_files``, in ``.pt2`` ``extra_files``. Schema
version 1 (every key but ``stitchsafe_metadata`` is optional; unknown keys are kept)::

    {"stitchsafe_metadata": 1,              # schema version
     "dims": 3,                             # spatial axes
     "channels_in": 1, "channels_out": 17,
     "pooling_factors": [[1, 2, 2], [2, 2, 2]],   # per level, per axis
     "period": [2, 4, 4],                   # product of the pooling factors per axis
     "halo": [[lo, hi], ...],               # input voxels before/after an output region
     "valid_input": {"min": [...], "step": [...]},  # valid sizes: min + k * step
     "channel_roles": ["embedding", ..., "foreground"],   # one per output channel
     "normalization": {"method": "percentile", "percentiles": [1.0, 99.8]},
     "labels": {"threshold": 1.5,           # instance labels: embedding distance < this
                "min_size": 20,             #   joins neighbours; smaller objects -> 0;
                "foreground_threshold": 0.5,    # foreground probability cut;
                "seed_threshold": 0.5,      #   optional seeded variant: seeds' neighbours
                "seed_foreground_threshold": 0.9,   # all closer than this, and
                "grow": 6},                 #   growth steps from the seeds
     "loss": {"name": "discriminative", "delta_v": 0.5, "delta_d": 1.5},
     "training": {"command": "stitchsafe train ...",   # free-form, by stitchsafe.train:
                  "iterations": 1000, "window": [12, 32, 32], "seed": 0,
                  "torch": "2.13.0", "final_loss": 0.41, ...},
     "architecture": {...}}                 # free-form, e.g. the UNetConfig dict

``channel_roles``: ``"embedding"`` channels feed the instance labelling, one optional
``"foreground"`` channel holds foreground logits, any other role is ignored. Without
roles every channel is an embedding and every voxel foreground.
``labels`` gives the labelling defaults (:mod:`stitchsafe.instances`); without
``labels.threshold`` the threshold is ``loss.delta_d`` (the discriminative loss's
distance margin: the middle of the gap it leaves between same-object and
different-object voxel pairs), else 1.5. ``loss`` is otherwise free-form training
information; ``delta_v``/``delta_d``, when present, must be positive numbers.

``period`` + ``halo`` + ``valid_input`` is a complete geometry; ``pooling_factors`` (or
``period``) alone fixes the period, and the rest is then probed. Probing measures only
the context ``lo + hi``: where an output region sits relative to its input is a
convention, and stitchsafe's is the centred one of valid U-Nets (``lo = context // 2``).
Metadata may declare an asymmetric halo; it is trusted as long as ``lo + hi`` matches.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
import warnings
import zipfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import probe
from .errors import GeometryMismatchError, StitchsafeError
from .geometry import ModelGeometry, normalize_pooling_factors
from .unet import UNet, UNetConfig

METADATA_KEY = "stitchsafe.json"
METADATA_VERSION = 1
CHECKPOINT_FORMAT = "stitchsafe-checkpoint"
FORMATS = ("stitchsafe", "torchscript", "export")

TORCHSCRIPT_NOTE = (
    "TorchScript is deprecated in PyTorch; stitchsafe still runs it, but a torch.export "
    "program (.pt2, stitchsafe.model.save_export) is the preferred format."
)
_NOT_A_MODEL = (
    "is not a model stitchsafe can read: expected a torch.export program (.pt2), a "
    "TorchScript file, a stitchsafe checkpoint (stitchsafe.model.save_checkpoint), or a "
    "bioimage.io model package (a zip or folder with rdf.yaml)"
)

__all__ = [
    "METADATA_KEY",
    "LoadedModel",
    "check_stitchable",
    "detect_format",
    "load_model",
    "resolve_geometry",
    "save_checkpoint",
    "save_export",
    "save_torchscript",
    "unet_metadata",
    "validate_metadata",
]

check_stitchable = probe.check_stitchable


@contextmanager
def _quiet_torchscript() -> Any:
    """Silence torch's per-call "torch.jit.* is deprecated" warnings (we say it once)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`?torch\.jit\.\w+`? is deprecated")
        yield


@dataclass
class LoadedModel:
    """A model ready to run: ``(N, C, *spatial)`` float32 in, ``(N, C_out, *spatial')`` out.

    ``module`` is in eval mode (exported programs are exported in eval mode). ``notes``
    are messages for stderr (e.g. the TorchScript deprecation note), one per load;
    ``probe_log`` says what each geometry resolution cost (forward passes, seconds).
    """

    path: str
    format: str
    module: nn.Module
    metadata: dict[str, Any] | None
    dims: int
    channels_in: int
    notes: list[str] = field(default_factory=list)
    program: Any = field(default=None, repr=False)  # the ExportedProgram, for format "export"
    probe_log: list[str] = field(default_factory=list, repr=False)  # what probing cost

    @property
    def device(self) -> torch.device:
        """Device of the module's parameters (CPU for a parameter-free module)."""
        for tensor in itertools.chain(self.module.parameters(), self.module.buffers()):
            return tensor.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> LoadedModel:
        """Move the model to ``device`` (in place) and return it."""
        dev = _parse_device(device)
        if self.format == "export":
            from torch.export.passes import move_to_device_pass

            self.program = move_to_device_pass(self.program, dev)
            self.module = self.program.module()
        else:
            self.module.to(dev)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x)


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise StitchsafeError(f"unknown device {device!r}: {e}. Use cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise StitchsafeError(
                f"device {device!r} was requested but this machine has no usable CUDA device "
                "(or torch was built without CUDA); use --device cpu."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise StitchsafeError(
                f"device {device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s), cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}."
            )
    return dev


# ---------------------------------------------------------------------------- formats


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"export"``, ``"torchscript"``, ``"stitchsafe"`` or ``"bioimageio"``, from the content.

    Raises
    ------
    StitchsafeError
        When the file is missing, empty, corrupt or not one of these formats.
    """
    from .bioimageio import find_yaml

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
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise StitchsafeError(
            f"model file {str(p)!r} {_NOT_A_MODEL} (it is not a zip archive as these all are, "
            "or it is truncated or corrupt)."
        ) from None

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


def load_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model of any supported format onto ``device``, in eval mode."""
    fmt = detect_format(path)
    _parse_device(device)  # refuse a bad device before the (slow) load
    p = str(path)
    from .bioimageio import load_package

    loader = {
        "stitchsafe": _load_checkpoint,
        "torchscript": _load_torchscript,
        "export": _load_export,
        "bioimageio": load_package,
    }
    try:
        model = loader[fmt](p)
    except StitchsafeError:
        raise
    except Exception as e:  # corrupt archives fail in many ways deep inside torch
        raise StitchsafeError(
            f"model file {p!r} looks like a {fmt} file but could not be loaded "
            f"({type(e).__name__}: {_first_line(e)}); it may be corrupt or truncated."
        ) from e
    return model.to(device)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def _load_checkpoint(path: str) -> LoadedModel:
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
            "stitchsafe.model.save_checkpoint, save_export (.pt2) or torch.jit.save."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise StitchsafeError(
            f"model file {path!r} is a torch.save file but not a stitchsafe checkpoint (a bare "
            "state_dict does not say which network it belongs to). Save the network as a "
            "torch.export program (.pt2) or TorchScript, or as a built-in U-Net with "
            "stitchsafe.model.save_checkpoint."
        )
    if int(ckpt.get("version", 0)) > 1:
        raise StitchsafeError(
            f"model file {path!r} is a stitchsafe checkpoint of version {ckpt['version']}, newer "
            "than this stitchsafe understands (1); upgrade stitchsafe."
        )
    try:
        cfg = UNetConfig.from_dict(json.loads(ckpt["config"]))
        net = UNet(cfg)
        net.load_state_dict(ckpt["state_dict"])
    except StitchsafeError:
        raise
    except Exception as e:
        raise StitchsafeError(
            f"model file {path!r}: the stitchsafe checkpoint is damaged ({_first_line(e)})."
        ) from None
    meta = _parse_metadata(ckpt.get("metadata"), path)
    model = LoadedModel(path, "stitchsafe", net.eval(), meta, cfg.dims, cfg.in_channels)
    _check_declared_channels(model)
    return model


def _load_torchscript(path: str) -> LoadedModel:
    extra = {METADATA_KEY: ""}
    with _quiet_torchscript():
        module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    module.eval()
    meta = _parse_metadata(extra[METADATA_KEY], path)
    dims, cin = _dims_from_weights(module)
    return _finish(
        LoadedModel(path, "torchscript", module, meta, 0, 0, [TORCHSCRIPT_NOTE]), dims, cin
    )


def _load_export(path: str) -> LoadedModel:
    extra = {METADATA_KEY: ""}
    program = torch.export.load(path, extra_files=extra)
    meta = _parse_metadata(extra[METADATA_KEY], path)
    dims, cin = _dims_from_program(program)
    model = LoadedModel(path, "export", program.module(), meta, 0, 0, program=program)
    return _finish(model, dims, cin)


def _finish(model: LoadedModel, dims: int | None, cin: int | None) -> LoadedModel:
    """Fill dims/channels from the weights, else the metadata; refuse when neither says."""
    meta = model.metadata or {}
    model.dims = dims if dims is not None else int(meta.get("dims", 0))
    model.channels_in = cin if cin is not None else int(meta.get("channels_in", 0))
    if model.dims < 1 or model.channels_in < 1:
        raise StitchsafeError(
            f"model file {model.path!r}: cannot tell the model's number of spatial axes and input "
            "channels (no convolution weight found and no metadata). Store metadata with the "
            "model (stitchsafe.model.save_export(..., metadata={'stitchsafe_metadata': 1, "
            "'dims': 3, 'channels_in': 1, ...}))."
        )
    _check_declared_channels(model)
    return model


def _check_declared_channels(model: LoadedModel) -> None:
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


def _dims_from_weights(module: nn.Module) -> tuple[int | None, int | None]:
    """``(dims, channels_in)`` from the first (non-transposed) convolution weight."""
    for m in module.modules():
        name = getattr(m, "original_name", type(m).__name__)
        w = getattr(m, "weight", None)
        is_conv = isinstance(m, nn.modules.conv._ConvNd) or name.startswith("Conv")
        if is_conv and isinstance(w, torch.Tensor) and w.ndim >= 3:
            if "Transpose" in name or getattr(m, "transposed", False):
                return w.ndim - 2, None
            return w.ndim - 2, int(w.shape[1]) * int(getattr(m, "groups", 1))
    for w in module.parameters():
        if w.ndim >= 3:
            return w.ndim - 2, int(w.shape[1])
    return None, None


def _dims_from_program(program: Any) -> tuple[int | None, int | None]:
    """``(dims, channels_in)`` from the first user input's fake tensor in the graph."""
    user_inputs = list(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and user_inputs and node.name == user_inputs[0]:
            val = node.meta.get("val")
            shape = getattr(val, "shape", None)
            if shape is None or len(shape) < 3:
                return None, None
            c = shape[1]
            return len(shape) - 2, int(c) if isinstance(c, int) else None
    return None, None


def save_checkpoint(
    net: UNet, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
) -> None:
    """Save a built-in :class:`~stitchsafe.unet.UNet` as a stitchsafe checkpoint."""
    if not isinstance(net, UNet):
        raise StitchsafeError(
            "save_checkpoint saves the built-in U-Net only; save other networks with "
            "save_export (.pt2) or save_torchscript."
        )
    meta = validate_metadata(metadata) if metadata is not None else None
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "config": net.config.to_json(),
            "metadata": json.dumps(meta),
            "state_dict": state,
        },
        str(path),
    )


def save_torchscript(
    module: nn.Module, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
) -> None:
    """Script ``module`` (in eval mode) and save it with the metadata in ``_extra_files``."""
    extra = _metadata_extra(metadata)
    with _quiet_torchscript(), _eval_mode(module):
        scripted = (
            module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
        )
        torch.jit.save(scripted, str(path), _extra_files=extra)


def save_export(
    module: nn.Module,
    path: str | os.PathLike[str],
    *,
    example_shape: Sequence[int],
    metadata: dict[str, Any] | None = None,
) -> None:
    """Export ``module`` in eval mode with dynamic batch and spatial axes; save as ``.pt2``.

    ``example_shape`` is a valid input shape ``(N, C, *spatial)``; the batch and spatial
    axes are exported as ``Dim.AUTO`` (a batch of 1 is widened to 2 for the export so that
    the program accepts any batch size).
    """
    from torch.export import Dim

    shape = [int(s) for s in example_shape]
    if len(shape) < 3:
        raise StitchsafeError(
            f"example_shape {tuple(shape)} must be (N, C, *spatial) with at least one spatial axis."
        )
    shape[0] = max(shape[0], 2)
    if any(s < 2 for s in shape[2:]):
        raise StitchsafeError(
            f"example_shape {tuple(shape)}: spatial sizes must be valid input sizes (>= 2)."
        )
    dyn = {0: Dim.AUTO, **{a: Dim.AUTO for a in range(2, len(shape))}}
    p = next(module.parameters(), None)
    x = torch.zeros(
        shape,
        dtype=p.dtype if p is not None else torch.float32,
        device=p.device if p is not None else None,
    )
    with _eval_mode(module):  # (not under no_grad: that makes the export ~2x slower)
        program = torch.export.export(module, (x,), dynamic_shapes=(dyn,))
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == program.graph_signature.user_inputs[0]:
            static = [a for a in range(2, len(shape)) if isinstance(node.meta["val"].shape[a], int)]
            if static:
                raise StitchsafeError(
                    f"torch.export fixed spatial axes {static} of the input to the example's size "
                    f"{[shape[a] for a in static]} (the model's code specialises on the input "
                    "size), so the program cannot run on tiles of other sizes."
                )
            break
    torch.export.save(program, str(path), extra_files=_metadata_extra(metadata))


@contextmanager
def _eval_mode(module: nn.Module) -> Any:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _metadata_extra(metadata: dict[str, Any] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    return {METADATA_KEY: json.dumps(validate_metadata(metadata))}


# --------------------------------------------------------------------------- metadata


def unet_metadata(cfg: UNetConfig, **extra: Any) -> dict[str, Any]:
    """Metadata for a built-in U-Net; ``extra`` adds or replaces keys (e.g. channel_roles).

    Same-padded configurations get no ``period``/``halo``/``valid_input`` (the closed form
    describes valid convolutions only); their pooling factors are still stored.

    >>> from stitchsafe.unet import UNetConfig
    >>> m = unet_metadata(UNetConfig(dims=2, pooling_factors=((2, 2),)))
    >>> m["period"], m["halo"], m["valid_input"]
    ([2, 2], [[8, 8], [8, 8]], {'min': [18, 18], 'step': [2, 2]})
    """
    meta: dict[str, Any] = {
        "stitchsafe_metadata": METADATA_VERSION,
        "dims": cfg.dims,
        "channels_in": cfg.in_channels,
        "channels_out": cfg.out_channels,
        "pooling_factors": [list(f) for f in cfg.pooling_factors],
    }
    if cfg.padding == "valid":
        g = cfg.geometry().to_dict()
        meta.update(period=g["period"], halo=g["halo"], valid_input=g["valid_input"])
    meta["architecture"] = {"name": "stitchsafe.unet.UNet", "config": json.loads(cfg.to_json())}
    meta.update(extra)
    return validate_metadata(meta)


def _parse_metadata(raw: Any, path: str) -> dict[str, Any] | None:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "null")):
        return None
    try:
        data = json.loads(raw)
    except (TypeError, ValueError) as e:
        raise StitchsafeError(
            f"model file {path!r}: its {METADATA_KEY} entry is not valid JSON ({e})."
        ) from None
    try:
        return validate_metadata(data)
    except StitchsafeError as e:
        raise StitchsafeError(f"model file {path!r}: {e}") from None


def validate_metadata(meta: Any) -> dict[str, Any]:
    """Check metadata against the schema; return it (a copy) or raise StitchsafeError.

    >>> validate_metadata({"stitchsafe_metadata": 1, "period": [0, 2]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: malformed ...: 'period' must be ... integers, got [0, 2].
    """

    def bad(msg: str) -> StitchsafeError:
        return StitchsafeError(f"malformed stitchsafe metadata: {msg}.")

    def ints(key: str, value: Any, *, minimum: int = 1, length: int | None = None) -> list[int]:
        ok = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value
        )
        if not ok or (length is not None and len(value) != length) or not value:
            need = "positive" if minimum == 1 else "non-negative"
            size = f" of length {length}" if length is not None else ""
            raise bad(f"{key!r} must be a list{size} of {need} integers, got {value!r}")
        return list(value)

    if not isinstance(meta, dict):
        raise bad(f"expected a JSON object, got {type(meta).__name__}")
    meta = copy.deepcopy(meta)
    version = meta.get("stitchsafe_metadata")
    if version != METADATA_VERSION:
        if isinstance(version, int) and version > METADATA_VERSION:
            raise StitchsafeError(
                f"the model's metadata has schema version {version}, newer than this stitchsafe "
                f"understands ({METADATA_VERSION}); upgrade stitchsafe."
            )
        raise bad(f"'stitchsafe_metadata' must be {METADATA_VERSION}, got {version!r}")
    for key in ("dims", "channels_in", "channels_out"):
        if key in meta:
            ints(key, [meta[key]])
    dims = meta.get("dims")
    if "pooling_factors" in meta:
        pf = meta["pooling_factors"]
        if not isinstance(pf, list) or not pf:
            raise bad(f"'pooling_factors' must be a list of levels, got {pf!r}")
        for level in pf:
            ints("pooling_factors", level, length=dims)
        dims = dims or len(pf[0])
        ints("pooling_factors", [len(level) for level in pf], minimum=dims, length=len(pf))
    if "period" in meta:
        ints("period", meta["period"], length=dims)
        dims = dims or len(meta["period"])
    if "halo" in meta:
        halo = meta["halo"]
        if not isinstance(halo, list) or (dims is not None and len(halo) != dims):
            raise bad(f"'halo' must be a list of [lo, hi] pairs, one per axis, got {halo!r}")
        for h in halo:
            ints("halo", h, minimum=0, length=2)
    if "valid_input" in meta:
        vi = meta["valid_input"]
        if not isinstance(vi, dict) or "min" not in vi or "step" not in vi:
            raise bad(f"'valid_input' must be {{'min': [...], 'step': [...]}}, got {vi!r}")
        ints("valid_input.min", vi["min"], length=dims)
        ints("valid_input.step", vi["step"], length=dims)
    if ("halo" in meta) != ("valid_input" in meta):
        raise bad("'halo' and 'valid_input' must be given together (or neither)")
    if "halo" in meta and "period" not in meta and "pooling_factors" not in meta:
        raise bad("'halo' and 'valid_input' need 'period' or 'pooling_factors'")
    if "period" in meta and "pooling_factors" in meta:
        product = _product(meta["pooling_factors"])
        if tuple(meta["period"]) != product:
            raise bad(
                f"'period' {meta['period']} is not the product {list(product)} of "
                f"'pooling_factors' {meta['pooling_factors']}"
            )
    if "halo" in meta:
        metadata_geometry(meta)  # the values must also make a consistent geometry
    roles = meta.get("channel_roles")
    if roles is not None and (
        not isinstance(roles, list)
        or not all(isinstance(r, str) for r in roles)
        or ("channels_out" in meta and len(roles) != meta["channels_out"])
    ):
        raise bad(
            f"'channel_roles' must be a list of strings, one per output channel, got {roles!r}"
        )
    _validate_labels(meta, bad)
    norm = meta.get("normalization")
    if norm is not None and (not isinstance(norm, dict) or not isinstance(norm.get("method"), str)):
        raise bad(f"'normalization' must be an object with a 'method' string, got {norm!r}")
    if "architecture" in meta and not isinstance(meta["architecture"], dict):
        raise bad("'architecture' must be an object")
    return meta


def _validate_labels(meta: dict[str, Any], bad: Any) -> None:
    """Check the optional ``labels`` and ``loss`` entries (labelling defaults)."""

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            raise bad(f"'labels' must be an object, got {labels!r}")
        t = labels.get("threshold", 1.0)
        m = labels.get("min_size", 0)
        p = labels.get("foreground_threshold", 0.5)
        if not (number(t) and t > 0):
            raise bad(f"'labels.threshold' must be a positive number, got {t!r}")
        if not (isinstance(m, int) and not isinstance(m, bool) and m >= 0):
            raise bad(f"'labels.min_size' must be a non-negative integer, got {m!r}")
        if not (number(p) and 0 < p < 1):
            raise bad(f"'labels.foreground_threshold' must lie strictly in (0, 1), got {p!r}")
        st = labels.get("seed_threshold")
        sp = labels.get("seed_foreground_threshold", 0.5)
        g = labels.get("grow", 0)
        if st is not None and not (number(st) and st > 0):
            raise bad(f"'labels.seed_threshold' must be a positive number or null, got {st!r}")
        if not (number(sp) and 0 < sp < 1):
            raise bad(f"'labels.seed_foreground_threshold' must lie strictly in (0, 1), got {sp!r}")
        if not (isinstance(g, int) and not isinstance(g, bool) and g >= 0):
            raise bad(f"'labels.grow' must be a non-negative integer, got {g!r}")
        if g and st is None:
            raise bad("'labels.grow' needs 'labels.seed_threshold'")
    loss = meta.get("loss")
    if loss is not None:
        if not isinstance(loss, dict):
            raise bad(f"'loss' must be an object, got {loss!r}")
        for key in ("delta_v", "delta_d"):
            if key in loss and not (number(loss[key]) and loss[key] > 0):
                raise bad(f"'loss.{key}' must be a positive number, got {loss[key]!r}")


def _product(levels: Sequence[Sequence[int]]) -> tuple[int, ...]:
    return tuple(math.prod(level[a] for level in levels) for a in range(len(levels[0])))


def metadata_geometry(
    meta: dict[str, Any] | None, *, channels_in: int = 1
) -> tuple[ModelGeometry | None, tuple[int, ...] | None]:
    """``(complete geometry or None, period or None)`` declared by the metadata."""
    if not meta:
        return None, None
    period = tuple(meta["period"]) if "period" in meta else None
    if period is None and "pooling_factors" in meta:
        period = _product(meta["pooling_factors"])
    if period is None or "halo" not in meta:
        return None, period
    try:
        geometry = ModelGeometry(
            period=period,
            halo=tuple((int(lo), int(hi)) for lo, hi in meta["halo"]),
            min_input=tuple(meta["valid_input"]["min"]),
            step=tuple(meta["valid_input"]["step"]),
            channels_in=int(meta.get("channels_in", channels_in)),
            channels_out=int(meta.get("channels_out", 1)),
        )
    except StitchsafeError as e:
        raise StitchsafeError(f"malformed stitchsafe metadata: {e}") from None
    except (TypeError, ValueError, KeyError) as e:
        raise StitchsafeError(f"malformed stitchsafe metadata: {e!r}.") from None
    return geometry, period


# --------------------------------------------------------------------------- geometry


def resolve_geometry(
    model: LoadedModel,
    *,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    depth: int | None = None,
) -> tuple[ModelGeometry, str]:
    """The model's geometry and where it came from: ``"metadata"``, ``"flags"`` or ``"probe"``.

    Metadata wins, then the flags (``pooling_factors``/``depth``; a depth alone means factor
    2), then probing. Declared geometry is always cross-checked with a few forward passes.

    Raises
    ------
    GeometryMismatchError
        Declared geometry (metadata or flags) disagrees with the model's behaviour.
    UnstitchableModelError
        The model cannot be tiled exactly (same padding, spatial normalisation...).
    """
    flags_period = None
    if pooling_factors is not None or depth is not None:
        pf = normalize_pooling_factors(
            pooling_factors if pooling_factors is not None else 2, dims=model.dims, depth=depth
        )
        flags_period = _product(pf)
    declared, meta_period = metadata_geometry(model.metadata, channels_in=model.channels_in)
    if meta_period is not None:
        if flags_period is not None and flags_period != meta_period:
            raise GeometryMismatchError(
                f"the model's metadata says period {meta_period} but --pooling-factor/--depth "
                f"say {flags_period}; drop the flags (the metadata is cross-checked against the "
                "model) or fix the metadata."
            )
        who = "metadata says"
        if declared is not None:
            return probe.cross_check(model, declared, who=who), "metadata"
        return probe.probe_with_period(model, meta_period, who=who), "metadata"
    if flags_period is not None:
        return probe.probe_with_period(
            model, flags_period, who="--pooling-factor/--depth say"
        ), "flags"
    return probe.probe_geometry(model), "probe"
