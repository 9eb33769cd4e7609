"""A package's network from its weights: TorchScript, or a state dict and its architecture.

Only files inside the (unpacked) package are read, checked against their sha256 where the
description gives one; weights given as URLs are refused. ``torchscript`` runs no package
code; ``pytorch_state_dict`` imports the architecture callable (a ``source`` file from the
package, or an ``import_from`` module) and calls it with the described kwargs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import StitchsafeError
from .._loaded import dims_from_weights, quiet_torchscript
from ._errors import error_line
from ._spec import ArchitectureSpec, PackageSpec, WeightsSpec

__all__: list[str] = []


def load_network(weights: WeightsSpec, root: Path, where: str) -> nn.Module:
    """The package's network in eval mode, on the CPU; ``where`` names the package."""
    what = f"{weights.kind} weights file"
    p = _local_file(root, weights.source, what, where)
    _check_sha256(p, weights.sha256, what, where)
    if weights.kind == "torchscript":
        try:
            with quiet_torchscript():
                return torch.jit.load(str(p), map_location="cpu").eval()
        except Exception as e:
            raise StitchsafeError(
                f"{where}: its TorchScript weights {weights.source!r} could not be loaded "
                f"({error_line(e)}); the file may be corrupt."
            ) from None
    assert weights.architecture is not None
    net = _build_architecture(weights.architecture, root, where)
    state = _load_state(p, weights, where)
    try:
        net.load_state_dict(state, strict=weights.strict)
    except Exception as e:
        raise StitchsafeError(
            f"{where}: its state dict does not fit the network built by "
            f"{weights.architecture.callable}(**kwargs) ({error_line(e)})."
        ) from None
    return net.eval()


def check_weights_dims(net: nn.Module, spec: PackageSpec, where: str) -> None:
    """Refuse a network whose first convolution contradicts the described axes/channels."""
    dims, cin = dims_from_weights(net)
    if (dims is not None and dims != spec.dims) or (cin is not None and cin != spec.channels_in):
        raise StitchsafeError(
            f"{where}: its description says {spec.dims} space axes and {spec.channels_in} "
            f"input channel(s) but the network's first convolution takes {dims} and {cin}."
        )


def _load_state(p: Path, weights: WeightsSpec, where: str) -> Any:
    """The state dict, read with ``weights_only=True``."""
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise StitchsafeError(
            f"{where}: its state dict {weights.source!r} could not be loaded with "
            f"torch.load(weights_only=True) ({error_line(e)}); stitchsafe loads tensors and "
            "plain containers only."
        ) from None


def _local_file(root: Path, source: str, what: str, where: str) -> Path:
    """The package file ``source``; refuse URLs and missing files."""
    if "://" in source:
        raise StitchsafeError(
            f"{where}: its {what} is at {source}; stitchsafe reads packages offline. Download "
            "the package with its files (a bioimage.io zip) and pass that."
        )
    p = root / source
    if not p.is_file():
        raise StitchsafeError(
            f"{where}: its {what} {source!r} is missing from the package; the package is "
            "incomplete (repack it with all the files its rdf.yaml names)."
        )
    return p


def _check_sha256(p: Path, expected: str | None, what: str, where: str) -> None:
    """Refuse a file whose sha256 is not the described one (no check without one)."""
    if expected is None:
        return
    digest = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected.lower():
        raise StitchsafeError(
            f"{where}: its {what} {p.name!r} does not match the sha256 in its description "
            "(the file is corrupt or was replaced); repack the package."
        )


def _build_architecture(arch: ArchitectureSpec, root: Path, where: str) -> nn.Module:
    """Import the architecture callable (package file or module) and call it with kwargs."""
    module, what = _architecture_module(arch, root, where)
    fn = getattr(module, arch.callable, None)
    if not callable(fn):
        raise StitchsafeError(f"{where}: {what} has no callable {arch.callable!r}.")
    try:
        net = fn(**arch.kwargs)
    except Exception as e:
        raise StitchsafeError(
            f"{where}: building the network with {arch.callable}(**{arch.kwargs}) failed "
            f"({error_line(e)})."
        ) from None
    if not isinstance(net, nn.Module):
        raise StitchsafeError(
            f"{where}: {arch.callable}(**kwargs) returned {type(net).__name__}, not a torch "
            "nn.Module."
        )
    return net


def _architecture_module(arch: ArchitectureSpec, root: Path, where: str) -> tuple[Any, str]:
    """``(module, its description for messages)`` holding the architecture callable."""
    if arch.source is not None:
        p = _local_file(root, arch.source, "architecture source", where)
        _check_sha256(p, arch.sha256, "architecture source", where)
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        name = f"stitchsafe_bioimageio_{p.stem}_{digest}"
        what = f"the architecture source {arch.source!r} in the package"
        try:
            return sys.modules.get(name) or _import_file(name, p, root), what
        except Exception as e:
            raise StitchsafeError(
                f"{where}: {what} cannot be imported ({error_line(e)}); it may need a Python "
                "package that is not installed."
            ) from None
    what = f"the architecture module {arch.import_from!r}"
    try:
        return importlib.import_module(str(arch.import_from)), what
    except Exception as e:
        raise StitchsafeError(
            f"{where}: {what} cannot be imported ({error_line(e)}); install the Python "
            "package that provides it."
        ) from None


def _import_file(name: str, path: Path, root: Path) -> Any:
    """Import a package's source file; sibling modules import from the package folder.

    No bytecode is written into the package (its files are hashed for ``--resume``).
    """
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path.name}")
    module = importlib.util.module_from_spec(spec)
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    sys.path.insert(0, str(root))
    sys.dont_write_bytecode = True
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode
    return module
