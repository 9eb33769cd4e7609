"""Save models with their metadata: checkpoints, TorchScript, ``torch.export`` programs.

Each saver validates the metadata first (:func:`stitchsafe.models.validate_metadata`)
and stores it as the JSON entry :data:`stitchsafe.models.METADATA_KEY` where the format
keeps extra data; :func:`stitchsafe.models.load_model` reads all three back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.export import Dim

from ..errors import StitchsafeError
from ._loaded import CHECKPOINT_FORMAT, quiet_torchscript
from ._metadata import METADATA_KEY, validate_metadata
from ._unet import UNet

__all__ = ["save_checkpoint", "save_export", "save_torchscript"]


def save_checkpoint(
    net: UNet, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
) -> None:
    """Save a built-in :class:`~stitchsafe.models.UNet` as a stitchsafe checkpoint."""
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
    with quiet_torchscript(), _eval_mode(module):
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
    shape = _export_shape(example_shape)
    dyn = {0: Dim.AUTO, **{a: Dim.AUTO for a in range(2, len(shape))}}
    p = next(module.parameters(), None)
    x = torch.zeros(
        shape,
        dtype=p.dtype if p is not None else torch.float32,
        device=p.device if p is not None else None,
    )
    with _eval_mode(module):  # (not under no_grad: that makes the export ~2x slower)
        program = torch.export.export(module, (x,), dynamic_shapes=(dyn,))
    _require_dynamic_input(program, shape)
    torch.export.save(program, str(path), extra_files=_metadata_extra(metadata))


def _export_shape(example_shape: Sequence[int]) -> list[int]:
    """The example shape to export with (batch at least 2); refuse impossible ones.

    >>> _export_shape((1, 1, 20, 20))
    [2, 1, 20, 20]
    """
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
    return shape


def _require_dynamic_input(program: Any, shape: Sequence[int]) -> None:
    """Refuse a program whose input kept a spatial size fixed to the example's."""
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


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode inside the block, its former mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _metadata_extra(metadata: dict[str, Any] | None) -> dict[str, str]:
    """The validated metadata as the extra-files entry; none without metadata."""
    if metadata is None:
        return {}
    return {METADATA_KEY: json.dumps(validate_metadata(metadata))}
