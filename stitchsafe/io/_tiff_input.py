"""TIFF/BigTIFF inputs: one image series, its axes from tifffile's axis letters."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import struct
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import tifffile

from ..errors import StitchsafeError
from ._axes import CHANNEL, SPACE, TIME, UNKNOWN, map_axes
from ._physical import AxisValue, PhysicalSettings, resolve_physical
from ._physical_formats import tiff_values
from ._quiet_logs import quiet_loggers
from ._selection import InputSelection
from ._volume import Volume, check_dtype, make_volume

__all__: list[str] = []

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def open_tiff(
    given: str,
    key: str | None,
    spatial_dims: int,
    physical: PhysicalSettings | None = None,
    chosen: InputSelection | None = None,
) -> Volume:
    """Open image series ``key`` (default 0) of the TIFF file ``given``.

    ``physical`` (``--voxel-size``, ``--unit``) replaces the file's own voxel size or unit;
    ``chosen`` (``--channel``, ``--timepoint``, ``--level``) selects what is read: a
    pyramid level's voxel size is level 0's times the level's reduction on each axis.
    """
    chosen = chosen if chosen is not None else InputSelection()
    try:
        series_index = int(key) if key is not None else 0
    except ValueError:
        raise StitchsafeError(
            f"the input {given!r} is a TIFF file; --input-key must be the index of an image "
            f"series (0, 1, ...), not {key!r}."
        ) from None
    level = chosen.level or 0
    shape, letters, dtype, found, shape0 = _series_layout(given, key, series_index, level)
    where = f"the TIFF file {given!r}"
    check_dtype(dtype, where)
    roles, names = _letter_roles(letters, shape)
    axes = map_axes(shape, roles, names, spatial_dims, where, chosen)
    spatial = axes.spatial_names
    values = [
        _reduced(found.get(n, AxisValue()), shape0[a], shape[a])
        for n, a in zip(spatial, axes.space)
    ]
    scale = resolve_physical(values, spatial, where, physical)
    return make_volume(
        given, "tiff", dtype, axes, given, physical=scale, series=series_index, chosen=chosen
    )


def _reduced(value: AxisValue, size0: int, size: int) -> AxisValue:
    """``value`` (level 0's) for a pyramid level with ``size`` voxels where level 0 has
    ``size0``: the voxel size times the reduction, a whole number when the sizes fit one.

    >>> _reduced(AxisValue(0.5, "um"), 33, 17).scale, _reduced(AxisValue(), 30, 20).scale
    (1.0, 1.5)
    """
    if size == size0:
        return value
    ratio = size0 / size
    whole = max(1, round(ratio))
    factor = whole if size0 // whole <= size <= -(-size0 // whole) else ratio
    return dataclasses.replace(value, scale=value.scale * factor)


def _series_layout(
    given: str, key: str | None, series_index: int, level: int = 0
) -> tuple[tuple[int, ...], str, np.dtype, dict[str, AxisValue], tuple[int, ...]]:
    """Shape, axis letters, data type and physical metadata (per axis name, level 0's) of
    pyramid ``level`` of one image series, read from the TIFF header, and level 0's shape."""
    try:
        with quiet_loggers("tifffile"), tifffile.TiffFile(given) as tf:
            if not tf.series:
                raise ValueError("it holds no images")
            if not 0 <= series_index < len(tf.series):
                raise StitchsafeError(
                    f"the TIFF file {given!r} has {len(tf.series)} image series; "
                    f"--input-key {key!r} is out of range (use 0 to {len(tf.series) - 1})."
                )
            s = tf.series[series_index]
            problem = _incomplete(tf, s, series_index)
            if problem:
                raise StitchsafeError(
                    f"the TIFF file {given!r} is truncated or corrupt: {problem}. Reading it "
                    "would silently drop or invent image planes; copy or export the file "
                    "again (compare its size with the original's) and run again."
                )
            found = tiff_values(tf, series_index)
            shape0 = tuple(int(v) for v in s.shape)
            s = _level(s, level, given)
            return tuple(int(v) for v in s.shape), s.axes, np.dtype(s.dtype), found, shape0
    except StitchsafeError:
        raise
    except Exception as e:  # tifffile raises TiffFileError, ValueError, struct.error...
        raise StitchsafeError(
            f"cannot read the TIFF file {given!r}: {e}. The file looks truncated or corrupt; "
            "re-export it or convert it to zarr."
        ) from None


def _level(series: Any, level: int, given: str) -> Any:
    """Pyramid ``level`` of the image ``series``; refused listing the levels it has."""
    levels = series.levels
    if level < len(levels):
        return levels[level]
    listed = ", ".join(f"{i} ({' x '.join(map(str, v.shape))})" for i, v in enumerate(levels))
    raise StitchsafeError(
        f"the TIFF file {given!r} has {len(levels)} resolution level(s) in this image series "
        f"(axes {series.axes}): {listed}; --level {level} is not one of them (use 0 to "
        f"{len(levels) - 1})."
    )


def _incomplete(tf: tifffile.TiffFile, series: Any, index: int) -> str | None:
    """What shows ``series`` of ``tf`` to be cut short or damaged, or ``None``.

    Three checks, each cheap: the chain of image directories ends properly, the series'
    pages and image data lie inside the file, and the planes the file's own metadata
    declares (ImageJ ``images=``, OME-XML ``SizeZ/SizeC/SizeT``, tifffile's shaped
    ``shape``) are all there.
    """
    return _broken_chain(tf) or _series_past_end(tf, series) or _missing_planes(tf, series, index)


def _broken_chain(tf: tifffile.TiffFile) -> str | None:
    """The last image directory must end the chain (a next offset of 0)."""
    pages = len(tf.pages)  # follows the whole chain of image directories
    where = tf.pages.next_page_offset
    if where is None:
        return None
    fh, size = tf.filehandle, tf.filehandle.size
    fh.seek(where)
    raw = fh.read(tf.tiff.offsetsize)
    if len(raw) < tf.tiff.offsetsize:
        return f"the file ends ({size} bytes) inside the directory of page {pages}"
    offset = struct.unpack(tf.tiff.offsetformat, raw)[0]
    if offset == 0:
        return None
    place = "past the end of the file" if offset >= size else "where no page can be read"
    return (
        f"after {pages} readable page(s) it points to a next page at byte {offset}, {place} "
        f"({size} bytes)"
    )


def _series_past_end(tf: tifffile.TiffFile, series: Any) -> str | None:
    """The series' pages must exist and their data lie inside the file.

    Contiguous data (one memory-mapped block) is checked as a whole; otherwise every page
    must be present and a sample of them (all, up to 4096) must end inside the file.
    """
    size = tf.filehandle.size
    if series.dataoffset is not None:
        end = int(series.dataoffset) + int(series.nbytes)
        if end > size:
            return f"its image data runs to byte {end} but the file has only {size} bytes"
        return None
    pages: list[Any] = []
    with contextlib.suppress(IndexError):  # tifffile: a page the series lists is not there
        pages.extend(series)
    planes = max(len(series), math.prod(series.shape) // max(1, math.prod(series.keyframe.shape)))
    missing = planes - sum(p is not None for p in pages)
    if missing > 0:
        return (
            f"{missing} of the {planes} image planes its metadata lists are missing (the file "
            f"holds {len(tf.pages)} page(s))"
        )
    step = max(1, len(pages) // 4096)
    for page in [*pages[::step], *pages[-1:]]:
        if page.parent is not tf:  # a multi-file OME-TIFF: the page lies in another file
            continue
        ends = [int(o) + int(c) for o, c in zip(page.dataoffsets, page.databytecounts) if c]
        if ends and max(ends) > size:
            return (
                f"the data of page {page.index} runs to byte {max(ends)} but the file has only "
                f"{size} bytes"
            )
    return None


def _missing_planes(tf: tifffile.TiffFile, series: Any, index: int) -> str | None:
    """Planes the file's metadata declares must all be in the series tifffile found."""
    per_page = max(1, math.prod(series.keyframe.shape))
    stored = math.prod(series.shape) // per_page
    declared = _declared(tf, series, index, per_page)
    if declared is not None and declared[0] > stored:
        return (
            f"{declared[1]} declares {declared[0]} image planes but its image series holds {stored}"
        )
    return None


def _declared(
    tf: tifffile.TiffFile, series: Any, index: int, per_plane: int
) -> tuple[int, str] | None:
    """The number of planes the file's own metadata declares for series ``index``."""
    if tf.is_imagej and index == 0 and tf.imagej_metadata:
        images = tf.imagej_metadata.get("images")
        if isinstance(images, int):
            return images, f"its ImageJ metadata (images={images})"
    if tf.is_shaped and tf.shaped_metadata and index < len(tf.shaped_metadata):
        shape = tf.shaped_metadata[index].get("shape")
        if isinstance(shape, list | tuple) and all(isinstance(v, int) for v in shape):
            return math.prod(shape) // max(1, per_plane), f"its shape metadata {list(shape)}"
    if tf.is_ome and series.kind != "ome":  # tifffile could not build the OME series
        sizes = _ome_sizes(tf.ome_metadata, index)
        if sizes is not None:
            zct = "/".join(f"Size{k}={sizes[k]}" for k in "ZCT")
            return math.prod(sizes.values()) // max(1, per_plane), f"its OME-XML ({zct})"
    return None


def _ome_sizes(xml: str | None, index: int) -> dict[str, int] | None:
    """``SizeX/Y/Z/C/T`` of the ``index``-th Image's Pixels in OME-XML, ``None`` if unknown.

    >>> pixels = '<Pixels SizeX="4" SizeY="3" SizeZ="8" SizeC="1" SizeT="1"/>'
    >>> _ome_sizes(f"<OME><Image>{pixels}</Image></OME>", 0)
    {'X': 4, 'Y': 3, 'Z': 8, 'C': 1, 'T': 1}
    """
    try:
        root = ET.fromstring(xml or "")
        images = [e for e in root if e.tag.rsplit("}", 1)[-1] == "Image"]
        pixels = next(e for e in images[index] if e.tag.rsplit("}", 1)[-1] == "Pixels")
        return {k: int(pixels.attrib[f"Size{k}"]) for k in "XYZCT"}
    except (ET.ParseError, IndexError, StopIteration, KeyError, ValueError):
        return None


def _letter_roles(
    letters: str, shape: tuple[int, ...]
) -> tuple[list[str | None], list[str | None]]:
    """Roles and names of the stored axes (``shape``) from tifffile's axis letters.

    tifffile writes 'Q' for axes it cannot name; the letters are trusted only when there
    are channel ('C') or sample ('S', e.g. RGB) axes, or a time axis ('T', ImageJ frames
    and OME SizeT) longer than 1, that the positional rule would misplace.

    >>> _letter_roles("YXS", (4, 5, 3))
    (['space', 'space', 'channel'], ['y', 'x', 'S'])
    >>> _letter_roles("TZYX", (3, 2, 4, 5))[0]
    ['time', 'space', 'space', 'space']
    >>> _letter_roles("QYX", (2, 4, 5))
    ([None, None, None], [None, None, None])
    """
    n = len(shape)
    names: list[str | None] = [None] * n
    roles: list[str | None] = [UNKNOWN] * n
    timed = any(c == "T" and s > 1 for c, s in zip(letters, shape))
    if len(letters) == n and (timed or any(c in letters for c in "CS")):
        for a, c in enumerate(letters):
            names[a] = c.lower() if c in "ZYX" else c
            roles[a] = (
                CHANNEL if c in "CS" else TIME if c == "T" else SPACE if c in "ZYX" else UNKNOWN
            )
        # Unnamed axes ('Q', 'I', ...) only pass when they are size 1.
        roles = [r if r is not UNKNOWN else SPACE for r in roles]
    return roles, names
