"""TIFF/BigTIFF inputs: one image series, its axes from tifffile's axis letters."""

from __future__ import annotations

import numpy as np
import tifffile

from ..errors import StitchsafeError
from ._axes import CHANNEL, SPACE, TIME, UNKNOWN, map_axes
from ._volume import Volume, check_dtype, make_volume

__all__: list[str] = []

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def open_tiff(given: str, key: str | None, spatial_dims: int) -> Volume:
    """Open image series ``key`` (default 0) of the TIFF file ``given``."""
    try:
        series_index = int(key) if key is not None else 0
    except ValueError:
        raise StitchsafeError(
            f"the input {given!r} is a TIFF file; --input-key must be the index of an image "
            f"series (0, 1, ...), not {key!r}."
        ) from None
    shape, letters, dtype = _series_layout(given, key, series_index)
    check_dtype(dtype, f"the TIFF file {given!r}")
    roles, names = _letter_roles(letters, len(shape))
    axes = map_axes(shape, roles, names, spatial_dims, f"the TIFF file {given!r}")
    return make_volume(given, "tiff", dtype, axes, given, series=series_index)


def _series_layout(
    given: str, key: str | None, series_index: int
) -> tuple[tuple[int, ...], str, np.dtype]:
    """Shape, axis letters and data type of one image series, read from the TIFF header."""
    try:
        with tifffile.TiffFile(given) as tf:
            if not tf.series:
                raise ValueError("it holds no images")
            if not 0 <= series_index < len(tf.series):
                raise StitchsafeError(
                    f"the TIFF file {given!r} has {len(tf.series)} image series; "
                    f"--input-key {key!r} is out of range (use 0 to {len(tf.series) - 1})."
                )
            s = tf.series[series_index]
            return tuple(int(v) for v in s.shape), s.axes, np.dtype(s.dtype)
    except StitchsafeError:
        raise
    except Exception as e:  # tifffile raises TiffFileError, ValueError, struct.error...
        raise StitchsafeError(
            f"cannot read the TIFF file {given!r}: {e}. The file looks truncated or corrupt; "
            "re-export it or convert it to zarr."
        ) from None


def _letter_roles(letters: str, n: int) -> tuple[list[str | None], list[str | None]]:
    """Roles and names of ``n`` stored axes from tifffile's axis letters.

    tifffile writes 'Q' for axes it cannot name; the letters are trusted only when there
    are channel ('C') or sample ('S', e.g. RGB) axes that the positional rule would
    misplace.

    >>> _letter_roles("YXS", 3)
    (['space', 'space', 'channel'], ['y', 'x', 'S'])
    >>> _letter_roles("QYX", 3)
    ([None, None, None], [None, None, None])
    """
    names: list[str | None] = [None] * n
    roles: list[str | None] = [UNKNOWN] * n
    if len(letters) == n and any(c in letters for c in "CS"):
        for a, c in enumerate(letters):
            names[a] = c.lower() if c in "ZYX" else c
            roles[a] = (
                CHANNEL if c in "CS" else TIME if c == "T" else SPACE if c in "ZYX" else UNKNOWN
            )
        # Unnamed axes ('Q', 'I', ...) only pass when they are size 1.
        roles = [r if r is not UNKNOWN else SPACE for r in roles]
    return roles, names
