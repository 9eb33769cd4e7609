"""Microscope files (Zeiss CZI, Nikon ND2, Leica LIF) through bioio's reader plugins.

One scene of the file (``--input-key``: its index or name, default the first) is read
with the axes bioio gives, ``T, C, Z, Y, X``: ``C`` is the channel axis, ``Z`` of size 1
is left out (one plane is a 2-D image), and ``T`` is time (one timepoint is read; a time
series needs ``--timepoint``). The voxel size is bioio's ``physical_pixel_sizes``, in
micrometer. Reads are lazy: a tile reads the plugin's chunks it touches (whole planes for
CZI), each decoded about once per run through the input chunk cache. Needs the optional
``stitchsafe[bioio]`` extra (bioio and the format's plugin).
"""

from __future__ import annotations

from typing import Any

from ..errors import StitchsafeError
from ._axes import CHANNEL, SPACE, TIME, map_axes
from ._bioio_file import MicroscopeArray, MicroscopeFormat, open_image, physical_sizes
from ._physical import AxisValue, PhysicalSettings, resolve_physical
from ._selection import InputSelection
from ._volume import Volume, check_dtype, make_volume

__all__: list[str] = []

_ROLES = {"T": TIME, "C": CHANNEL, "S": CHANNEL, "Z": SPACE, "Y": SPACE, "X": SPACE}


def open_microscope(
    given: str,
    fmt: MicroscopeFormat,
    key: str | None,
    spatial_dims: int,
    physical: PhysicalSettings | None = None,
    chosen: InputSelection | None = None,
) -> Volume:
    """Open scene ``key`` (default the first) of the microscope file ``given``.

    ``physical`` (``--voxel-size``, ``--unit``) replaces the file's own voxel size or unit;
    ``chosen`` (``--channel``, ``--timepoint``) selects the channels and timepoint read.
    """
    chosen = chosen if chosen is not None else InputSelection()
    where = f"the {fmt.name} file {given!r}"
    if chosen.level not in (None, 0):
        raise StitchsafeError(
            f"{where} is read at full resolution only; --level {chosen.level} applies to "
            "multiscale OME-Zarr images and pyramidal TIFF files. Drop --level."
        )
    image = open_image(given, fmt)
    scene = _scene(image, key, where)
    array = MicroscopeArray(image)
    check_dtype(array.dtype, where)
    names = [d.lower() for d in array.dims]
    roles = [_ROLES[d] for d in array.dims]
    axes = map_axes(array.shape, roles, names, spatial_dims, where, chosen)
    known = physical_sizes(image)
    values = [
        AxisValue(known[n], "micrometer", 0.0, "bioio physical_pixel_sizes", "micrometer")
        if n in known
        else AxisValue()
        for n in axes.spatial_names
    ]
    scale = resolve_physical(values, axes.spatial_names, where, physical)
    return make_volume(
        given,
        fmt.kind,
        array.dtype,
        axes,
        given,
        physical=scale,
        series=scene,
        container=given,
        array_path=str(scene),
        chosen=chosen,
    )


def _scene(image: Any, key: str | None, where: str) -> int:
    """The index of the scene ``key`` names (an index or a scene's name; default 0), set
    as ``image``'s scene."""
    scenes = [str(s) for s in image.scenes]
    if key is None or not key.strip():
        return 0
    key = key.strip()
    index = scenes.index(key) if key in scenes else int(key) if key.isdigit() else -1
    if not 0 <= index < len(scenes):
        listed = ", ".join(f"{i} ({s})" for i, s in enumerate(scenes[:12]))
        more = f" ... ({len(scenes)} in all)" if len(scenes) > 12 else ""
        raise StitchsafeError(
            f"{where} has no scene {key!r}; its scenes are {listed}{more}. Pass a scene's "
            "index or name with --input-key."
        )
    if index:
        image.set_scene(index)
    return index
