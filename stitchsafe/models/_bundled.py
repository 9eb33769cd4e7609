"""The models that ship inside the package, so that stitchsafe works offline out of the box.

Both are the built-in valid-conv U-Net trained with ``stitchsafe train`` on synthetic cells
(:func:`stitchsafe.training.synthetic_cells`, seed 0); ``examples/train_bundled_models.py``
retrains them, and each checkpoint's metadata records the exact training command
(``load_model(path).metadata["training"]["command"]``). They segment bright, blob-like,
touching objects on a dark background (nuclei-like); they are a default and a
demonstration, not a substitute for a model trained on your data.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import StitchsafeError
from ..io import AxesMismatchError, PhysicalSettings, open_volume

__all__ = ["BUNDLED", "bundled_model", "model_for_input"]

BUNDLED = {2: "cells2d.pt", 3: "cells3d.pt"}


def bundled_model(dims: int) -> Path:
    """Path of the bundled model for ``dims`` (2 or 3) spatial axes.

    >>> bundled_model(3).name
    'cells3d.pt'
    """
    if dims not in BUNDLED:
        raise StitchsafeError(
            f"stitchsafe bundles models for 2-D and 3-D images, not {dims}-D; pass --model."
        )
    # A regular installation (wheel or editable) keeps package data as plain files.
    path = Path(str(resources.files("stitchsafe").joinpath("models", "weights", BUNDLED[dims])))
    if not path.is_file():
        raise StitchsafeError(
            f"the bundled {dims}-D model {path} is missing from this installation; reinstall "
            "stitchsafe or pass --model."
        )
    return path


def model_for_input(
    input: str | os.PathLike[str],
    *,
    input_key: str | None = None,
    physical: PhysicalSettings | None = None,
) -> Path:
    """The bundled model matching the input's dimensionality.

    ``physical`` (``--voxel-size``, ``--unit``) is applied as the run applies it, so that
    an override that rescues the input's metadata rescues it here too.

    A volume that reads as 3-D (``Z, Y, X``) gets the 3-D model, one with two axes the 2-D
    model. Anything else (channels, more axes) needs an explicit ``--model``. A problem of
    the input itself (missing, unreadable, truncated, malformed metadata) is reported as
    it is, exactly as with ``--model``.
    """
    mismatch: AxesMismatchError | None = None
    for dims in (3, 2):
        try:
            volume = open_volume(input, key=input_key, spatial_dims=dims, physical=physical)
        except AxesMismatchError as e:  # the axes do not fit this model; maybe the other
            mismatch = e
            continue
        channels = volume.channels
        volume.close()
        if channels == 1:
            return bundled_model(dims)
        raise StitchsafeError(
            f"no bundled model fits {os.fspath(input)!r}: it has {channels} channels of "
            f"{'x'.join(map(str, volume.shape))} voxels, and the bundled models take "
            "one-channel 2-D (Y, X) or 3-D (Z, Y, X) images. Pass --model (a model for "
            f"{channels} channels)."
        )
    layout = mismatch.layout if mismatch is not None else "its axes do not fit"
    raise StitchsafeError(
        f"no bundled model fits {os.fspath(input)!r}: {layout}, and the bundled models take "
        "one-channel 2-D (Y, X) or 3-D (Z, Y, X) images. Pass --model."
    )
