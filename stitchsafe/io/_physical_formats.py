"""Physical metadata as each input format stores it: OME-Zarr, OME-TIFF, ImageJ, TIFF tags,
HDF5 attributes.

Each reader's helper gives :class:`~stitchsafe.io._physical.AxisValue` entries (the values
and the fields they came from), which :func:`~stitchsafe.io._physical.resolve_physical`
turns into the volume's :class:`~stitchsafe.io.PhysicalScale`. A new input format adds its
helper here.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from ..errors import StitchsafeError
from ._physical import AxisValue, PhysicalScale, no_unit, resolve_physical
from ._zarr_meta import check_transforms, checked_multiscale, malformed

__all__ = ["image_axes"]

# TIFF ResolutionUnit codes (tifffile's RESUNIT; 4 and 5 are its own extensions).
_RESOLUTION_UNITS = {2: "inch", 3: "centimeter", 4: "millimeter", 5: "micrometer"}


# -- OME-Zarr ------------------------------------------------------------------------------


def ome_zarr_values(
    multiscale: dict[str, Any], field: str, where: str, ndim: int, *, level: int = 0
) -> list[AxisValue]:
    """Per stored axis of an OME-Zarr image (``ndim`` of them): the ``level``'s transforms
    composed with the multiscale-wide ones, and the axes' units.

    ``multiscale`` was checked by :func:`~stitchsafe.io._zarr_meta.checked_multiscale`
    (``field`` is its name); a transformation with the wrong number of values is refused.

    >>> level = [{"type": "scale", "scale": [2, 2]}, {"type": "translation", "translation": [1, 0]}]
    >>> ms = {"axes": [{"name": "y", "unit": "um"}, {"name": "x"}],
    ...       "datasets": [{"path": "0", "coordinateTransformations": level}],
    ...       "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.25]}]}
    >>> [(v.scale, v.unit, v.translation) for v in ome_zarr_values(ms, "multiscales[0]", "g", 2)]
    [(1.0, 'um', 0.5), (0.5, None, 0.0)]
    """
    level_field = f"{field}.datasets[{level}].coordinateTransformations"
    sequences = [(level_field, multiscale["datasets"][level].get("coordinateTransformations"))]
    sequences.append(
        (f"{field}.coordinateTransformations", multiscale.get("coordinateTransformations"))
    )
    scale, translation = [1.0] * ndim, [0.0] * ndim
    for name, transforms in sequences:
        if transforms is None:
            continue
        check_transforms(transforms, name, where)
        for i, t in enumerate(transforms):
            kind = t["type"]
            if kind not in ("scale", "translation") or kind not in t:
                continue  # other types, or values kept in a file ("path"): nothing read here
            values = [float(v) for v in t[kind]]
            if len(values) != ndim:
                malformed(where, f"{name}[{i}].{kind}", f"has {len(values)} values for {ndim} axes")
            if kind == "scale":  # scales what came before, translation included
                scale = [a * b for a, b in zip(scale, values)]
                translation = [a * b for a, b in zip(translation, values)]
            else:
                translation = [a + b for a, b in zip(translation, values)]
    axes = multiscale.get("axes") or [{}] * ndim
    return [
        AxisValue(
            scale=scale[a],
            unit=axes[a].get("unit") if isinstance(axes[a], dict) else None,
            translation=translation[a],
            scale_field=level_field,
            unit_field=f"{field}.axes[{a}].unit",
        )
        for a in range(ndim)
    ]


def image_axes(
    attrs: dict[str, Any], where: str, *, ndim: int, spatial: int
) -> tuple[tuple[str, ...], PhysicalScale]:
    """Names and :class:`PhysicalScale` of the last ``spatial`` of the ``ndim`` axes of an
    OME-Zarr image group with attributes ``attrs`` (an output stitchsafe wrote).

    Without ``multiscales`` the axes are ``z``, ``y``, ``x`` with the default scale.

    >>> image_axes({}, "out.zarr", ndim=3, spatial=2)
    (('y', 'x'), PhysicalScale(scale=(1.0, 1.0), units=(None, None), translation=(0.0, 0.0)))
    """
    names = ("z", "y", "x")[-spatial:] if spatial <= 3 else tuple(f"d{i}" for i in range(spatial))
    checked = checked_multiscale(attrs, where)
    if checked is None:
        return names, PhysicalScale.default(spatial)
    multiscale, field = checked
    axes = multiscale.get("axes")
    if isinstance(axes, list) and len(axes) == ndim:
        names = tuple(str(a.get("name") if isinstance(a, dict) else a) for a in axes[-spatial:])
    values = ome_zarr_values(multiscale, field, where, ndim)[-spatial:]
    return names, resolve_physical(values, names, where)


# -- TIFF ----------------------------------------------------------------------------------


def tiff_values(tf: Any, index: int) -> dict[str, AxisValue]:
    """Per axis name (``x``, ``y``, ``z``) of image series ``index`` of the open
    ``tifffile.TiffFile`` ``tf``: its OME-XML's physical sizes, else its ImageJ
    calibration, else its resolution tags in inches, centimeters or smaller."""
    if tf.is_ome:
        found = _ome_xml_values(tf.ome_metadata, index)
        if found:
            return found
    page = tf.series[index].keyframe
    xres, yres = (float(r) for r in getattr(page, "resolution", (1.0, 1.0)))
    code = int(getattr(page, "resolutionunit", 1) or 1)
    if tf.is_imagej and index == 0 and tf.imagej_metadata:
        return _imagej_values(tf.imagej_metadata, (xres, yres), _RESOLUTION_UNITS.get(code))
    if code not in _RESOLUTION_UNITS:
        return {}  # no unit: the tags say nothing physical
    unit = _RESOLUTION_UNITS[code]
    return {
        name: AxisValue(
            scale=1.0 / res if res > 0 else math.nan,
            unit=unit,
            scale_field=f"its {name.upper()}Resolution tag",
            unit_field="its ResolutionUnit tag",
        )
        for name, res in (("x", xres), ("y", yres))
    }


def _ome_xml_values(xml: str | None, index: int) -> dict[str, AxisValue]:
    """``PhysicalSizeX/Y/Z`` (and units, default µm) of the ``index``-th OME-XML Image.

    >>> pixels = '<Pixels PhysicalSizeX="0.5" PhysicalSizeXUnit="nm" PhysicalSizeZ="2"/>'
    >>> found = _ome_xml_values(f"<OME><Image>{pixels}</Image></OME>", 0)
    >>> {k: (v.scale, v.unit) for k, v in found.items()}
    {'x': (0.5, 'nm'), 'z': (2.0, 'µm')}
    """
    try:
        root = ET.fromstring(xml or "")
        images = [e for e in root if e.tag.rsplit("}", 1)[-1] == "Image"]
        pixels = next(e for e in images[index] if e.tag.rsplit("}", 1)[-1] == "Pixels")
    except (ET.ParseError, IndexError, StopIteration):
        return {}
    found = {}
    for axis in "XYZ":
        size = pixels.attrib.get(f"PhysicalSize{axis}")
        if size is None:
            continue
        found[axis.lower()] = AxisValue(
            scale=_number(size),
            unit=pixels.attrib.get(f"PhysicalSize{axis}Unit", "µm"),
            scale_field=f"its OME-XML PhysicalSize{axis}",
            unit_field=f"its OME-XML PhysicalSize{axis}Unit",
        )
    return found


def _imagej_values(
    meta: dict[str, Any], resolution: tuple[float, float], tag_unit: str | None
) -> dict[str, AxisValue]:
    """ImageJ's calibration: pixel width and height from the resolution tags, depth from
    ``spacing``, the units from ``unit`` (``yunit``, ``zunit``), origins in pixels."""
    unit = meta.get("unit", tag_unit)
    if no_unit(unit):
        return {}  # uncalibrated: ImageJ ignores the resolution tags too
    sizes = {
        "x": (1.0 / resolution[0] if resolution[0] > 0 else math.nan, "its XResolution tag"),
        "y": (1.0 / resolution[1] if resolution[1] > 0 else math.nan, "its YResolution tag"),
        "z": (_number(meta.get("spacing", 1.0)), "spacing= in its ImageJ description"),
    }
    found = {}
    for name, (size, field) in sizes.items():
        origin = _number(meta.get(f"{name}origin", 0.0))
        found[name] = AxisValue(
            scale=size,
            unit=str(meta.get(f"{name}unit", unit)),
            # ImageJ's origin is the pixel at position 0: voxel 0 lies at -origin pixels.
            translation=-origin * size if math.isfinite(origin * size) else 0.0,
            scale_field=field,
            unit_field="unit= in its ImageJ description",
        )
    return found


def _number(value: Any) -> float:
    """``value`` as a float; NaN (refused where it is used) when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# -- HDF5 ----------------------------------------------------------------------------------

# Dataset attributes giving the voxel size, with their unit: ilastik's and CREMI's.
HDF5_SIZE_ATTRIBUTES = (("element_size_um", "micrometer"), ("resolution", "nanometer"))


def hdf5_values(attrs: Any, space: tuple[int, ...], ndim: int, where: str) -> list[AxisValue]:
    """Per spatial axis (stored axes ``space`` of ``ndim``) of an HDF5 dataset: the voxel
    size from its attribute ``element_size_um`` (ilastik, micrometer) or else ``resolution``
    (CREMI, nanometer), one value per spatial axis (or per stored axis).

    A value that is not a list of numbers of that length is refused naming the attribute.

    >>> [(v.scale, v.unit) for v in hdf5_values({"resolution": [40, 4, 4]}, (0, 1, 2), 3, "f")]
    [(40.0, 'nanometer'), (4.0, 'nanometer'), (4.0, 'nanometer')]
    >>> hdf5_values({"element_size_um": "big"}, (1, 2), 3, "f")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the HDF5 attribute 'element_size_um' of f is 'big', ...
    """
    for name, unit in HDF5_SIZE_ATTRIBUTES:
        if name not in attrs:
            continue
        raw = attrs[name]
        values = np.atleast_1d(np.asarray(raw))
        if values.dtype.kind in "iuf" and values.ndim == 1 and len(values) in (len(space), ndim):
            sizes = [float(v) for v in values]
            sizes = sizes if len(values) == len(space) else [sizes[a] for a in space]
            return [AxisValue(s, unit, 0.0, f"its attribute {name}", name) for s in sizes]
        shown = raw.tolist() if isinstance(raw, np.ndarray) else raw
        shown = shown.decode(errors="replace") if isinstance(shown, bytes) else shown
        raise StitchsafeError(
            f"the HDF5 attribute {name!r} of {where} is {shown!r}, not {len(space)} numbers "
            f"(the voxel size in {unit}s of each spatial axis). Fix or delete that attribute, "
            "or give the voxel size with --voxel-size (and --unit)."
        )
    return [AxisValue() for _ in space]
