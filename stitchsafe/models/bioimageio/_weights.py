"""A package's network from its weights: TorchScript, or a state dict and its architecture.

Only files of the package are read (:class:`PackageFiles`: a zip's members are extracted
on demand, with limits), checked against their sha256 where the description gives one;
weights given as URLs are refused. Weights files are checked as any model file is (every
CRC of their zip; untrusted TorchScript may not read or write files).

``torchscript`` runs no Python code of the package. A ``pytorch_state_dict`` needs its
architecture: a callable from a ``source`` file of the package, or from an
``import_from`` module, called with arguments the package chooses. That is code running
on this machine, so it is refused unless the caller trusts the package (``trust=True``,
``--trust-model``). State dicts are always read with ``torch.load(weights_only=True)``:
tensors and plain containers, never pickled objects.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import StitchsafeError
from .._integrity import verify_zip
from .._loaded import dims_from_weights, quiet_torchscript
from .._untrusted import check_torchscript
from ._archive import PackageFiles
from ._errors import error_line
from ._spec import ArchitectureSpec, PackageSpec, WeightsSpec

__all__: list[str] = []


def load_network(weights: WeightsSpec, files: PackageFiles, *, trust: bool) -> nn.Module:
    """The package's network in eval mode, on the CPU.

    ``trust``: the package may run its architecture code (``--trust-model``); without it
    a ``pytorch_state_dict`` package is refused, after checking that its files are there.
    """
    where = files.where
    what = f"{weights.kind} weights file"
    p = files.file(weights.source, what)
    _check_sha256(p, weights.sha256, what, where)
    _check_archive(p, weights, where, trust=trust)
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
    arch = weights.architecture
    source = _architecture_source(arch, files)
    if not trust:
        raise StitchsafeError(_untrusted(arch, where))
    state = _load_state(p, weights, where)
    net = _build_architecture(arch, source, files)
    try:
        net.load_state_dict(state, strict=weights.strict)
    except Exception as e:
        raise StitchsafeError(
            f"{where}: its state dict does not fit the network built by "
            f"{arch.callable}(**kwargs) ({error_line(e)})."
        ) from None
    return net.eval()


def _check_archive(p: Path, weights: WeightsSpec, where: str, *, trust: bool) -> None:
    """As for any model file: every CRC of a weights zip, and untrusted TorchScript's code.

    A legacy (non-zip) ``torch.save`` state dict has no CRCs to check.
    """
    try:
        if zipfile.is_zipfile(p):
            verify_zip(str(p))
        if weights.kind == "torchscript" and not trust:
            check_torchscript(str(p))
    except StitchsafeError as e:  # name the package's file, not its extracted copy
        message = str(e).replace(repr(str(p)), f"{weights.source!r} of {where}")
        raise type(e)(message) from None


def _untrusted(arch: ArchitectureSpec, where: str) -> str:
    """Why a package whose architecture is code is refused, and what would work."""
    if arch.source is not None:
        code = f"the Python source file {arch.source!r} in the package (callable {arch.callable!r})"
    else:
        code = (
            f"the callable {arch.callable!r} of the installed module {arch.import_from!r}, "
            "called with arguments the package chooses"
        )
    return (
        f"{where} has pytorch_state_dict weights, whose architecture is {code}: Python code "
        "that would run on this machine when the model is loaded, and stitchsafe runs no code "
        "from a model file it is not told to trust. If the package comes from a source you "
        "trust, pass --trust-model (trust=True in Python). Otherwise use a version of the "
        "package with TorchScript weights (they run no package code), or convert its network "
        "to TorchScript yourself where you trust the code."
    )


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
        text = str(e)
        if re.search(r"Unsupported (global|class|operand)", text):  # not corruption
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            example = f" (e.g. {found.group(1)})" if found else ""
            raise StitchsafeError(
                f"{where}: its state dict {weights.source!r} holds Python objects other than "
                f"tensors and plain containers{example}; unpickling them could run code, so "
                "stitchsafe refuses it, with or without --trust-model. A state dict saved "
                "with torch.save(net.state_dict(), path) holds only tensors."
            ) from None
        raise StitchsafeError(
            f"{where}: its state dict {weights.source!r} could not be loaded with "
            f"torch.load(weights_only=True) ({error_line(e)}); stitchsafe loads tensors and "
            "plain containers only."
        ) from None


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


def _architecture_source(arch: ArchitectureSpec, files: PackageFiles) -> Path | None:
    """The architecture's source file (checked), or None for ``import_from``; runs nothing.

    A missing file, a wrong sha256 or a module that is not installed is refused here,
    before the question of trust: such a package cannot load at all.
    """
    if arch.source is not None:
        p = files.file(arch.source, "architecture source")
        _check_sha256(p, arch.sha256, "architecture source", files.where)
        return p
    top = str(arch.import_from).split(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None  # finds; imports nothing
    except (ImportError, ValueError):
        found = False
    if not found:
        raise StitchsafeError(
            f"{files.where}: the architecture module {arch.import_from!r} cannot be imported "
            f"(no module named {top!r}); install the Python package that provides it."
        )
    return None


def _build_architecture(
    arch: ArchitectureSpec, source: Path | None, files: PackageFiles
) -> nn.Module:
    """Import the architecture callable (package file or module) and call it with kwargs."""
    where = files.where
    module, what = _architecture_module(arch, source, files)
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


def _architecture_module(
    arch: ArchitectureSpec, source: Path | None, files: PackageFiles
) -> tuple[Any, str]:
    """``(module, its description for messages)`` holding the architecture callable.

    The module's file is recorded as one that feeds the model when it lies outside the
    package (``import_from``).
    """
    where = files.where
    if source is not None:
        files.python_sources()  # a zip's siblings, for the source's own imports
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        name = f"stitchsafe_bioimageio_{source.stem}_{digest}"
        what = f"the architecture source {arch.source!r} in the package"
        try:
            return sys.modules.get(name) or _import_file(name, source, files.root), what
        except Exception as e:
            raise StitchsafeError(
                f"{where}: {what} cannot be imported ({error_line(e)}); it may need a Python "
                "package that is not installed."
            ) from None
    what = f"the architecture module {arch.import_from!r}"
    try:
        module = importlib.import_module(str(arch.import_from))
    except Exception as e:
        raise StitchsafeError(
            f"{where}: {what} cannot be imported ({error_line(e)}); install the Python "
            "package that provides it."
        ) from None
    module_file = getattr(module, "__file__", None)
    if isinstance(module_file, str):
        files.record_outside(module_file)
    return module, what


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
