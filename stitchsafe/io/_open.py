"""Opening an input: a zarr store, an OME-Zarr image, a TIFF or an HDF5 file, told apart on disk."""

from __future__ import annotations

import os
import stat
from typing import Any

from ..errors import StitchsafeError
from ._array_input import is_array, volume_from_array
from ._bioio_file import microscope_format
from ._bioio_input import open_microscope
from ._hdf5_file import is_hdf5, split_hdf5_path
from ._hdf5_input import open_hdf5
from ._physical import PhysicalSettings
from ._remote import open_remote
from ._selection import InputSelection
from ._stores import is_url
from ._tiff_input import TIFF_MAGIC, open_tiff
from ._volume import SUPPORTED_INPUTS, Volume
from ._zarr_input import open_zarr

__all__ = ["open_volume"]


def open_volume(
    path: str | os.PathLike[str] | Any,
    *,
    key: str | None = None,
    spatial_dims: int,
    physical: PhysicalSettings | None = None,
    selection: InputSelection | None = None,
) -> Volume:
    """Open an image for lazy, box-wise reads.

    Parameters
    ----------
    path
        A zarr v2/v3 array or group (with ``key``), an OME-Zarr image, a TIFF or HDF5 file
        (told by their magic bytes); an HDF5 dataset also as ``file.h5/path/to/dataset``;
        or an array in hand (numpy, dask, an opened zarr array: :func:`volume_from_array`).
    key
        Path of the array (or OME-Zarr image) inside a zarr group, or of the dataset in an
        HDF5 file; for a TIFF file the index of the image series (default 0).
    spatial_dims
        Spatial axes the model takes (2 or 3); one more stored axis is a leading channel
        axis. Axis metadata (OME-Zarr, TIFF, HDF5 labels) overrides this positional rule.
    physical
        ``--voxel-size``, ``--unit``: over the input's own (:attr:`Volume.physical`).
    selection
        ``--channel``, ``--timepoint``, ``--level`` (:attr:`Volume.selection`).

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
    >>> open_volume(f"{d}/raw.zarr", spatial_dims=2, physical=PhysicalSettings(0.5, "um")).physical
    PhysicalScale(scale=(0.5, 0.5), units=('micrometer', 'micrometer'), translation=(0.0, 0.0))
    >>> tmp.cleanup()
    """
    if spatial_dims < 1:
        raise StitchsafeError(f"spatial_dims must be at least 1, got {spatial_dims}.")
    chosen = selection if selection is not None else InputSelection()
    if is_array(path):  # numpy, dask or an opened zarr array: already in hand
        return volume_from_array(path, spatial_dims=spatial_dims, physical=physical, chosen=chosen)
    given = os.fspath(path)
    if is_url(given):  # s3://, gs://, https://...: a zarr input through zarr's store layer
        return open_remote(given, key, spatial_dims, physical, chosen)
    inside = None if os.path.lexists(given) else split_hdf5_path(given)
    if inside is not None:  # file.h5/path/to/dataset (and --input-key below that)
        return open_hdf5(inside[0], _join(inside[1], key), spatial_dims, physical, chosen)
    if check_input_path(given) == "directory":
        return open_zarr(given, key, spatial_dims, physical, chosen)
    return _open_file(given, key, spatial_dims, physical, chosen)


def _open_file(
    given: str,
    key: str | None,
    spatial_dims: int,
    physical: PhysicalSettings | None,
    chosen: InputSelection,
) -> Volume:
    """The input ``given`` that is a regular file: TIFF, HDF5 or a zarr metadata file."""
    with open(given, "rb") as f:
        magic = f.read(4)
    if magic in TIFF_MAGIC:
        return open_tiff(given, key, spatial_dims, physical, chosen)
    if is_hdf5(given):
        return open_hdf5(given, key, spatial_dims, physical, chosen)
    microscope = microscope_format(given)
    if microscope is not None:  # CZI, ND2, LIF by signature: the optional bioio extra
        return open_microscope(given, microscope, key, spatial_dims, physical, chosen)
    if os.path.basename(given) in ("zarr.json", ".zarray", ".zgroup"):
        folder = os.path.dirname(os.path.abspath(given))
        return open_zarr(folder, key, spatial_dims, physical, chosen)
    raise StitchsafeError(
        f"the input {given!r} is a file but neither a TIFF nor an HDF5 file (its first bytes "
        f"are {magic!r}, not a TIFF or HDF5 signature); {SUPPORTED_INPUTS}."
    )


def _join(dataset: str, key: str | None) -> str:
    """The dataset path ``file.h5/dataset`` names, with ``--input-key`` below it."""
    return "/".join(p for p in (dataset, (key or "").strip("/")) if p)


def check_input_path(given: str) -> str:
    """``"file"`` or ``"directory"``: refuse anything else before opening it.

    A FIFO would block the first read for ever, a device would stream endless bytes, and a
    dangling symbolic link names nothing; each is refused with what it is.

    >>> check_input_path(".")
    'directory'
    >>> check_input_path("/dev/null")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the input '/dev/null' is a character device, not ...
    """
    try:
        mode = os.stat(given).st_mode
    except FileNotFoundError:
        if os.path.islink(given):
            raise StitchsafeError(
                f"the input {given!r} is a symbolic link to {os.readlink(given)!r}, which "
                "does not exist (a dangling link); point the link at the image, or pass the "
                f"image's own path. {SUPPORTED_INPUTS}."
            ) from None
        raise StitchsafeError(f"the input {given!r} does not exist; {SUPPORTED_INPUTS}.") from None
    except OSError as e:  # a link loop, a path component that is a file, no permission
        raise StitchsafeError(
            f"cannot look at the input {given!r}: {e.strerror or e}. Pass the path of a TIFF "
            "file or a zarr directory that you can read."
        ) from None
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    raise StitchsafeError(
        f"the input {given!r} is a {_file_kind(mode)}, not a regular file or a directory, "
        "so stitchsafe cannot read it as an image (a stream cannot be read box by box). "
        f"Write the image to a file first; {SUPPORTED_INPUTS}."
    )


def _file_kind(mode: int) -> str:
    """What a file that is neither regular nor a directory is, in words."""
    kinds = (
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")
