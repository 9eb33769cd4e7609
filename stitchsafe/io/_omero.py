"""OMERO channel metadata of an embeddings image: names, colours, contrast windows, visibility.

Viewers (napari with napari-ome-zarr, OMERO, vizarr) read ``attributes["ome"]["omero"]``
to turn each channel into a named layer with a colour, a contrast window and a visibility.
Without it an embeddings image opens as unnamed channels blended to a white wash.
:func:`write_channel_metadata` writes it once the image is complete:

- **names** from the model's channel roles (``attributes["stitchsafe"]["channel_roles"]``):
  ``embedding 0``, ``embedding 1``..., ``foreground``; another role is its own name,
  numbered when it repeats; without roles every channel is an embedding.
- **windows** from the data: the 0.5 and 99.5 percentiles of a bounded sample (at most
  :data:`SAMPLE_ITEMS` values, whole chunks spread over the coarsest level listed), so a
  200 GB image costs a few chunk reads, not a full pass.
- **visible**: only the foreground channel, or the first channel when there is none.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from ._layout import OutputSpec

__all__ = ["SAMPLE_ITEMS", "channel_names", "write_channel_metadata"]

# Values read to compute the windows, all channels together (16 MiB of float32).
SAMPLE_ITEMS = 1 << 22
# The roles named in the model metadata (as stitchsafe.labels reads them).
_EMBEDDING = "embedding"
_FOREGROUND = "foreground"
# Colours of the embedding channels, in turn (pure hues match napari's colormaps);
# the foreground is grey.
_COLORS = ("FF00FF", "00FFFF", "FFFF00", "FF0000", "00FF00", "0000FF")
_GREY = "FFFFFF"
_PERCENTILES = (0.5, 99.5)


def channel_names(roles: Sequence[str] | None, channels: int) -> list[str]:
    """The channels' names from their roles (one role per channel, or ``None``).

    >>> channel_names(["embedding", "embedding", "foreground"], 3)
    ['embedding 0', 'embedding 1', 'foreground']
    >>> channel_names(None, 2), channel_names(["boundary", "boundary", "x"], 3)
    (['embedding 0', 'embedding 1'], ['boundary 0', 'boundary 1', 'x'])
    """
    if roles is None or len(roles) != channels:
        roles = [_EMBEDDING] * channels
    names = []
    for i, role in enumerate(roles):
        role = str(role)
        if role == _EMBEDDING or list(roles).count(role) > 1:
            names.append(f"{role} {list(roles[:i]).count(role)}")
        else:
            names.append(role)
    return names


def write_channel_metadata(spec: OutputSpec, *, sample_items: int = SAMPLE_ITEMS) -> dict[str, Any]:
    """Write ``attributes["ome"]["omero"]`` of the complete image ``spec`` and return it.

    Parameters
    ----------
    spec
        An image with a channel axis (the embeddings), its level 0 complete; a pyramid,
        when written, makes the sample cheaper (its coarsest level is read).
    sample_items
        At most this many values are read for the windows (whole chunks, at least one).

    Returns
    -------
    dict
        The ``omero`` metadata written: ``channels`` (``label``, ``color``, ``window``
        with ``start``, ``end``, ``min``, ``max``, ``active``) and ``rdefs``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from stitchsafe.io import ImageLayout, create_output, write_block
    >>> from stitchsafe.geometry import Box
    >>> tmp = tempfile.TemporaryDirectory()
    >>> layout = ImageLayout(shape=(4, 4), chunks=(4, 4), axes=("y", "x"), channels=2,
    ...     attributes={"channel_roles": ["embedding", "foreground"]})
    >>> spec = create_output(f"{tmp.name}/o.zarr", layout)
    >>> block = np.stack([np.arange(16.0).reshape(4, 4), -np.ones((4, 4))])
    >>> write_block(spec, Box((0, 0), (4, 4)), block)
    >>> omero = write_channel_metadata(spec)
    >>> [(c["label"], c["active"], c["color"]) for c in omero["channels"]]
    [('embedding 0', False, 'FF00FF'), ('foreground', True, 'FFFFFF')]
    >>> omero["channels"][0]["window"]
    {'start': 0.075, 'end': 14.925, 'min': 0.0, 'max': 15.0}
    >>> tmp.cleanup()
    """
    image = zarr.open_group(store=os.path.join(spec.group, *spec.image.split("/")), mode="r+")
    attrs = image.attrs.asdict()
    ome = dict(attrs["ome"])
    datasets = ome["multiscales"][0]["datasets"]
    coarsest = image[str(datasets[-1]["path"])]
    channels = int(image[str(datasets[0]["path"])].shape[0])
    stored = attrs.get("stitchsafe")
    roles = stored.get("channel_roles") if isinstance(stored, dict) else None
    names = channel_names(roles, channels)
    visible = names.index(_FOREGROUND) if _FOREGROUND in names else 0
    windows = _windows(_sample(coarsest, sample_items))
    ome["omero"] = {
        "channels": [
            {
                "label": name,
                "color": _GREY if name == _FOREGROUND else _COLORS[i % len(_COLORS)],
                "window": window,
                "active": i == visible,
            }
            for i, (name, window) in enumerate(zip(names, windows))
        ],
        "rdefs": {"model": "color", "defaultT": 0, "defaultZ": _middle_z(image, datasets)},
    }
    image.attrs["ome"] = ome
    return ome["omero"]


def _middle_z(image: zarr.Group, datasets: list[dict[str, Any]]) -> int:
    shape = image[str(datasets[0]["path"])].shape
    return int(shape[1] // 2) if len(shape) == 4 else 0


def _sample(array: zarr.Array, items: int) -> np.ndarray:
    """At most about ``items`` values of ``array`` ``(C, *spatial)``, as
    ``(C, N)``: all of it when small, else whole chunks spread evenly over its grid."""
    shape = array.shape
    if math.prod(shape) <= items:
        data = np.asarray(array[...])
        return data.reshape(shape[0], -1)
    chunk = tuple(int(c) for c in array.chunks[1:])
    grid = [math.ceil(s / c) for s, c in zip(shape[1:], chunk)]
    take = max(1, min(math.prod(grid), items // (shape[0] * math.prod(chunk))))
    picks = np.unique(np.linspace(0, math.prod(grid) - 1, take).round().astype(np.int64))
    pieces = []
    for flat in picks:
        index = np.unravel_index(int(flat), grid)
        box = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunk, shape[1:]))
        pieces.append(np.asarray(array[(slice(None), *box)]).reshape(shape[0], -1))
    return np.concatenate(pieces, axis=1)


def _windows(sample: np.ndarray) -> list[dict[str, float]]:
    """One contrast window per channel of ``sample`` ``(C, N)``, from its finite values."""
    windows = []
    for values in sample:
        finite = values[np.isfinite(values)].astype(np.float64)
        if finite.size == 0:
            low = high = start = end = 0.0
        else:
            low, high = float(finite.min()), float(finite.max())
            start, end = (float(v) for v in np.percentile(finite, _PERCENTILES))
        if end <= start:  # a constant channel: a window of width 1 around it
            start, end = start - 0.5, start + 0.5
        low, high = min(low, start), max(high, end)
        windows.append({"start": start, "end": end, "min": low, "max": high})
    return windows
