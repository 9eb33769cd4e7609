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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import StitchsafeError
from ..io import AxesMismatchError, InputSelection, PhysicalSettings, input_name, open_volume

__all__ = ["BUNDLED", "bundled_model", "model_for_input"]

BUNDLED = {2: "cells2d.pt", 3: "cells3d.pt"}
_TAKES = "the bundled models take one-channel 2-D (Y, X) or 3-D (Z, Y, X) images"
_NAMING = "OME-Zarr axes, zarr v3 dimension_names, TIFF axes or HDF5 dimension labels"


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
    selection: InputSelection | None = None,
) -> Path:
    """The bundled model matching the input's dimensionality.

    ``physical`` (``--voxel-size``, ``--unit``) is applied as the run applies it, so that
    an override that rescues the input's metadata rescues it here too; ``selection``
    (``--channel``, ``--timepoint``, ``--level``) likewise.

    A volume that reads as 3-D (``Z, Y, X``) gets the 3-D model, one with two axes the 2-D
    model. A problem of the input itself (missing, unreadable, truncated, malformed
    metadata, a time axis without ``--timepoint``) is reported as it is, exactly as with
    ``--model``; so is an input that is no 2-D or 3-D image (one axis, or axes that read
    as no image), naming its shape or axes. Only an image that is fine but has more
    channels than the bundled models take is told to choose a channel or pass ``--model``.

    Examples
    --------
    >>> import tempfile, zarr, numpy as np
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> _ = zarr.create_array(f"{d}/a.zarr", data=np.zeros((5, 6, 7), "uint8"))
    >>> model_for_input(f"{d}/a.zarr").name
    'cells3d.pt'
    >>> _ = zarr.create_array(f"{d}/s.zarr", data=np.zeros(9, "uint8"))
    >>> model_for_input(f"{d}/s.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the input '.../s.zarr' is one-dimensional (...
    >>> tmp.cleanup()
    """
    where = input_name(input)
    opening = {"key": input_key, "physical": physical, "selection": selection}
    image: _Read | None = None
    layout = ""
    for dims in (3, 2):
        read = _read_as(input, dims, opening)
        if isinstance(read, AxesMismatchError):  # the axes do not fit; maybe the other
            layout = read.layout
        elif read.channels == 1:
            return bundled_model(dims)
        else:
            image = image or read
    if image is not None:  # an image, fine, with more channels than the bundled models take
        raise StitchsafeError(_channels_text(where, image, layout, selection))
    signal = _read_as(input, 1, opening)
    if not isinstance(signal, AxesMismatchError):
        raise StitchsafeError(_signal_text(where, signal, layout))
    raise StitchsafeError(_not_an_image_text(where, layout))


@dataclass(frozen=True)
class _Read:
    """How an input reads for a number of spatial axes: its channels and spatial shape."""

    channels: int
    shape: tuple[int, ...]
    axes: tuple[str, ...]

    def describe(self) -> str:
        """``2 channels of 3x16x16 voxels (Z, Y, X)``."""
        voxels = "x".join(map(str, self.shape))
        names = ", ".join(a.upper() for a in self.axes)
        return f"{self.channels} channels of {voxels} voxels ({names})"


def _read_as(
    input: str | os.PathLike[str], dims: int, opening: dict[str, Any]
) -> _Read | AxesMismatchError:
    """How ``input`` reads with ``dims`` spatial axes, or why its axes do not fit them.

    Every other problem of the input is its own, whatever the model: it is raised as is.
    """
    try:
        volume = open_volume(input, spatial_dims=dims, **opening)
    except AxesMismatchError as e:
        return e
    volume.close()
    return _Read(volume.channels, volume.shape, volume.axes)


def _channels_text(where: str, image: _Read, layout: str, selection: InputSelection | None) -> str:
    """An image that is fine, with more channels than the bundled models take."""
    picked = selection is not None and selection.channels is not None
    text = (
        f"no bundled model fits {where!r}: {f'{layout}; ' if layout else ''}it has "
        f"{image.describe()}{', selected with --channel' if picked else ''}, and {_TAKES}. "
    )
    if picked:
        text += "Select one channel with --channel, or pass "
    else:
        text += "Choose one channel with --channel (e.g. --channel 0), or pass "
    text += f"--model with a model for {image.channels} channels."
    # Unnamed axes are read by position (see io.AxesMismatchError.layout): the channel
    # axis is then a guess, which the user can correct by naming the axes.
    if " has shape " in layout:
        text += (
            " Its axes are unnamed, so stitchsafe took the first one as channels; if it is "
            f"not, name its axes in its metadata ({_NAMING})."
        )
    return text


def _signal_text(where: str, signal: _Read, layout: str) -> str:
    """An input with one spatial axis: not an image."""
    values = f"{signal.shape[0]} values along one axis" + (
        f", in {signal.channels} channels" if signal.channels > 1 else ""
    )
    return (
        f"the input {where!r} is one-dimensional ({layout}): {values}, not a 2-D or 3-D "
        f"image, and {_TAKES}. Pass an image (for a zarr group or an HDF5 file, check that "
        "--input-key names the image); a 1-D signal needs a model made for 1-D inputs "
        "(--model)."
    )


def _not_an_image_text(where: str, layout: str) -> str:
    """An input whose axes read as no 1-D, 2-D or 3-D image at all."""
    unnamed = " has shape " in layout  # read by position (io.AxesMismatchError.layout)
    why = (
        "with its axes unnamed, stitchsafe cannot tell channels or time from space"
        if unnamed
        else "axes named other than c (channel) and t (time) count as spatial"
    )
    return (
        f"the input {where!r} is not a 2-D or 3-D image as stitchsafe reads one: {layout}, "
        f"and {why}. An image has 2 or 3 spatial axes (Y, X or Z, Y, X), besides at most "
        "one channel axis, a time axis (one timepoint read, --timepoint) and axes of size 1. "
        f"Name its axes in its metadata ({_NAMING}), or write the image you want as its own "
        "array."
    )
