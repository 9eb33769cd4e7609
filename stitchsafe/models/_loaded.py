"""A model ready to run, and the low-level facts every format shares.

:class:`LoadedModel` is what every loader returns (:func:`stitchsafe.models.load_model`)
and what the probe, the engine and the reports run. The helpers here read a module's
spatial axes and input channels from its weights or from an exported program, and keep
TorchScript's deprecation warnings quiet; they know nothing about files.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.export.passes import move_to_device_pass

from ..errors import StitchsafeError

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMATS",
    "TORCHSCRIPT_NOTE",
    "LoadedModel",
    "dims_from_program",
    "dims_from_weights",
    "quiet_torchscript",
]

CHECKPOINT_FORMAT = "stitchsafe-checkpoint"
FORMATS = ("stitchsafe", "torchscript", "export")

TORCHSCRIPT_NOTE = (
    "TorchScript is deprecated in PyTorch; stitchsafe still runs it, but a torch.export "
    "program (.pt2, stitchsafe.models.save_export) is the preferred format."
)


@contextmanager
def quiet_torchscript() -> Iterator[None]:
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
    files: tuple[str, ...] = ()  # every file that feeds the model; () = (abspath(path),)

    def __post_init__(self) -> None:
        self.files = tuple(os.path.abspath(f) for f in self.files or (self.path,))

    @property
    def device(self) -> torch.device:
        """Device of the module's parameters (CPU for a parameter-free module)."""
        for tensor in itertools.chain(self.module.parameters(), self.module.buffers()):
            return tensor.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> LoadedModel:
        """Move the model to ``device`` (in place) and return it."""
        dev = parse_device(device)
        if self.format == "export":
            self.program = move_to_device_pass(self.program, dev)
            self.module = self.program.module()
        else:
            self.module.to(dev)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x)


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`; refuse one that this machine does not have.

    >>> parse_device("cpu")
    device(type='cpu')
    """
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


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters.

    >>> first_line(ValueError("bad size\\nmore detail"))
    'bad size'
    """
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def dims_from_weights(module: nn.Module) -> tuple[int | None, int | None]:
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


def dims_from_program(program: Any) -> tuple[int | None, int | None]:
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
