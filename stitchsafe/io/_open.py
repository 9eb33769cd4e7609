"""Opening an input: a zarr store, an OME-Zarr image or a TIFF file, told apart on disk."""

from __future__ import annotations

import os

from ..errors import StitchsafeError
from ._tiff_input import TIFF_MAGIC, open_tiff
from ._volume import SUPPORTED_INPUTS, Volume
from ._zarr_input import open_zarr

__all__ = ["open_volume"]


def open_volume(
    path: str | os.PathLike[str], *, key: str | None = None, spatial_dims: int
) -> Volume:
    """Open an image for lazy, box-wise reads.

    Parameters
    ----------
    path
        A zarr v2/v3 array, a zarr group (with ``key``), an OME-Zarr image group, or a
        TIFF/BigTIFF file (recognised by its magic bytes, not its name).
    key
        Path of the array (or OME-Zarr image) inside a zarr group; for a TIFF file the
        index of the image series (default 0).
    spatial_dims
        Number of spatial axes the model expects (2 or 3). A stored array with
        ``spatial_dims`` axes has no channel axis; one with ``spatial_dims + 1`` axes has a
        leading channel axis. OME-Zarr axis metadata overrides this positional rule.

    Returns
    -------
    Volume

    Examples
    --------
    >>> import tempfile, zarr
    >>> from stitchsafe.geometry import Box
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> z = zarr.create_array(f"{d}/raw.zarr", shape=(2, 5, 6), dtype="uint8", chunks=(1, 5, 6))
    >>> v = open_volume(f"{d}/raw.zarr", spatial_dims=2)
    >>> v.kind, v.shape, v.channels, v.has_channel_axis
    ('zarr', (5, 6), 2, True)
    >>> v.read(Box((1, 1), (3, 4))).shape
    (2, 2, 3)

    >>> tmp.cleanup()
    """
    if spatial_dims < 1:
        raise StitchsafeError(f"spatial_dims must be at least 1, got {spatial_dims}.")
    given = os.fspath(path)
    if not os.path.exists(given):
        raise StitchsafeError(f"the input {given!r} does not exist; {SUPPORTED_INPUTS}.")
    if os.path.isdir(given):
        return open_zarr(given, key, spatial_dims)
    with open(given, "rb") as f:
        magic = f.read(4)
    if magic in TIFF_MAGIC:
        return open_tiff(given, key, spatial_dims)
    if os.path.basename(given) in ("zarr.json", ".zarray", ".zgroup"):
        return open_zarr(os.path.dirname(os.path.abspath(given)), key, spatial_dims)
    raise StitchsafeError(
        f"the input {given!r} is a file but not a TIFF (its first bytes are {magic!r}, not a "
        f"TIFF signature); {SUPPORTED_INPUTS}."
    )
