"""Zarr inputs: a zarr v2/v3 array, an array inside a group (``key``), an OME-Zarr image.

The path and key are resolved to one level-0 array; its axes come from the OME-Zarr
``multiscales`` axes, the zarr v3 ``dimension_names``, or their position.
"""

from __future__ import annotations

import os
from typing import Any

import zarr

from ..errors import StitchsafeError
from ._axes import CHANNEL, SPACE, TIME, UNKNOWN, map_axes, role_of_name
from ._physical import AxisValue, PhysicalSettings, resolve_physical
from ._physical_formats import ome_zarr_values
from ._selection import InputSelection
from ._volume import SUPPORTED_INPUTS, Volume, check_dtype, make_volume
from ._zarr_meta import checked_multiscale, container_of, list_arrays, malformed, zarr_node

__all__: list[str] = []

# Per stored axis: roles, names and physical metadata.
_AxisMeta = tuple[list[str | None], list[str | None], list[AxisValue]]


def open_zarr(
    given: str,
    key: str | None,
    spatial_dims: int,
    physical: PhysicalSettings | None = None,
    chosen: InputSelection | None = None,
) -> Volume:
    """Open the zarr array, OME-Zarr image or array ``key`` in a group at ``given``.

    ``physical`` (``--voxel-size``, ``--unit``) replaces the input's own voxel size or unit;
    ``chosen`` (``--channel``, ``--timepoint``, ``--level``) selects what is read.
    """
    chosen = chosen if chosen is not None else InputSelection()
    node = zarr_node(given)
    if node is None:
        raise StitchsafeError(
            f"the input {given!r} is a directory but not a zarr array or group (it has no "
            f"zarr.json, .zarray or .zgroup); {SUPPORTED_INPUTS}."
        )
    if node[0] == "array":
        if key is not None:
            raise StitchsafeError(
                f"the input {given!r} is a zarr array, so --input-key {key!r} does not apply; "
                "drop the key, or pass the group that contains the array."
            )
        container, array_path = container_of(given)
        chosen.refuse_level(repr(given), "a zarr array")
        kw = dict(container=container, array_path=array_path, physical=physical, chosen=chosen)
        return _zarr_volume(given, given, spatial_dims, **kw)  # type: ignore[arg-type]
    if key is None:
        where = repr(given)
        return _ome_image(given, given, node[2], spatial_dims, where, physical, chosen, keyed=False)
    key = key.strip("/")
    target = os.path.join(given, *key.split("/"))
    node = zarr_node(target) if key else None
    if node is None:
        found = list_arrays(given)
        raise StitchsafeError(
            f"the zarr group {given!r} has no array or image {key!r}. Arrays found: "
            f"{', '.join(found) or 'none'}. Pass one of them with --input-key."
        )
    if node[0] == "array":
        chosen.refuse_level(f"{given!r} key {key!r}", "a zarr array")
        kw = dict(container=given, array_path=key, physical=physical, chosen=chosen)
        return _zarr_volume(given, target, spatial_dims, **kw)  # type: ignore[arg-type]
    where = f"{given!r} key {key!r}"
    return _ome_image(given, target, node[2], spatial_dims, where, physical, chosen, keyed=True)


def _ome_image(
    group: str,
    target: str,
    attrs: dict[str, Any],
    spatial_dims: int,
    where: str,
    physical: PhysicalSettings | None,
    chosen: InputSelection,
    *,
    keyed: bool,
) -> Volume:
    """The level-0 array (or level ``chosen.level``) of the OME-Zarr image group ``target``
    inside ``group``."""
    checked = checked_multiscale(attrs, where)
    # A bioformats2raw layout keeps the image in the subgroup "0".
    ome = attrs.get("ome", attrs)
    if checked is None and isinstance(ome, dict) and "bioformats2raw.layout" in ome:
        sub = zarr_node(os.path.join(target, "0"))
        if sub is not None and sub[0] == "group":
            target, where = os.path.join(target, "0"), f"{where} (image group '0')"
            checked = checked_multiscale(sub[2], where)
    if checked is None:
        found = list_arrays(target)
        what = f"the zarr group at {where}" if keyed else f"the zarr group {where}"
        raise StitchsafeError(
            f"{what} is not an OME-Zarr image (no multiscales metadata), so stitchsafe does "
            f"not know which array to read. Arrays found: {', '.join(found) or 'none'}. "
            "Pass the array path inside the group with --input-key (e.g. --input-key "
            f"{found[0] if found else 'raw'})."
        )
    ms, field = checked
    level = chosen.level or 0
    path = _level_path(ms, field, where, level, target)
    array_dir = os.path.join(target, *path.split("/"))
    if zarr_node(array_dir) is None:
        malformed(where, f"{field}.datasets[{level}].path", f"is {path!r}, which names no array")
    rel = os.path.relpath(array_dir, group).replace(os.sep, "/")
    return _zarr_volume(
        group,
        array_dir,
        spatial_dims,
        container=group,
        array_path=rel,
        multiscale=(ms, field, where, level),
        physical=physical,
        chosen=chosen,
    )


def _level_path(ms: dict[str, Any], field: str, where: str, level: int, target: str) -> str:
    """The array path of resolution ``level`` of the checked multiscale ``ms``; a level
    past the ones listed is refused listing them (path and shape)."""
    datasets = ms["datasets"]
    if level >= len(datasets):
        listed = []
        for i, d in enumerate(datasets):
            path = str(d.get("path", "?")) if isinstance(d, dict) else "?"
            listed.append(f"{i} (array {path!r}, shape {_shape_of(target, path)})")
        raise StitchsafeError(
            f"the OME-Zarr image {where} has {len(datasets)} resolution level(s): "
            f"{', '.join(listed)}; --level {level} is not one of them (use 0 to "
            f"{len(datasets) - 1})."
        )
    entry = datasets[level]
    found = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(found, str) or not found.strip("/") or ".." in found.split("/"):
        malformed(where, f"{field}.datasets[{level}].path", f"is {found!r}, not an array path")
    return found.strip("/")


def _zarr_volume(
    given: str,
    array_dir: str,
    spatial_dims: int,
    *,
    container: str | None,
    array_path: str | None,
    multiscale: tuple[dict[str, Any], str, str, int] | None = None,
    physical: PhysicalSettings | None = None,
    chosen: InputSelection | None = None,
) -> Volume:
    """The volume of the zarr array at ``array_dir`` (``given`` is what the user passed);
    ``multiscale`` is the OME-Zarr image's (its field name, where, and the level read),
    ``None`` for a plain zarr array."""
    kind = "zarr" if multiscale is None else "ome-zarr"
    where = f"the array {array_dir!r}"
    try:
        arr = zarr.open_array(store=array_dir, mode="r")
    except Exception as e:  # zarr raises many types for broken stores
        raise StitchsafeError(
            f"cannot open {where} as a zarr array: {e}. {SUPPORTED_INPUTS}."
        ) from None
    shape = tuple(int(s) for s in arr.shape)
    check_dtype(arr.dtype, where)
    if multiscale is not None:
        roles, names, values = _ome_axes(*multiscale, shape, where)
    else:
        roles, names, values = _dimension_names(arr, len(shape))
    # An OME-Zarr image that lists its axes says what they are: --axes may not contradict it.
    declared = multiscale is not None and any(n is not None for n in names)
    axes = map_axes(shape, roles, names, spatial_dims, where, chosen, declared=declared)
    scale = resolve_physical(
        [values[a] for a in axes.space],
        axes.spatial_names,
        multiscale[2] if multiscale is not None else where,
        physical,
    )
    return make_volume(
        given,
        kind,
        arr.dtype,
        axes,
        array_dir,
        physical=scale,
        container=container,
        array_path=array_path,
        chosen=chosen,
    )


def _ome_axes(
    multiscale: dict[str, Any],
    field: str,
    where: str,
    level: int,
    shape: tuple[int, ...],
    array: str,
) -> _AxisMeta:
    """Roles, names and physical metadata (``level``'s) of the axes an OME-Zarr image lists.

    The entries were checked by :func:`checked_multiscale`; here their count is checked
    against the level-0 ``array``'s (``where`` is the image, ``field`` its multiscale).
    Without ``axes`` (OME-Zarr 0.3 and older) the roles are positional.
    """
    axes = multiscale.get("axes") or []
    if axes and len(axes) != len(shape):
        malformed(where, f"{field}.axes", f"lists {len(axes)} axes but {array} has shape {shape}")
    roles, names, _ = _no_axis_meta(len(shape))
    for a, ax in enumerate(axes):
        if isinstance(ax, str):  # OME-Zarr 0.3 lists bare names
            ax = {"name": ax}
        names[a] = str(ax["name"])
        kind_ = ax.get("type")
        roles[a] = {"channel": CHANNEL, "time": TIME}.get(kind_) or (
            SPACE if kind_ == "space" else role_of_name(names[a])
        )
    return roles, names, ome_zarr_values(multiscale, field, where, len(shape), level=level)


def _shape_of(target: str, path: str) -> str:
    """The shape of the array ``path`` inside ``target`` in words, ``?`` if unreadable."""
    try:
        arr = zarr.open_array(store=os.path.join(target, *path.strip("/").split("/")), mode="r")
    except Exception:  # noqa: BLE001 - only for a message listing the levels
        return "?"
    return " x ".join(str(int(n)) for n in arr.shape)


def _dimension_names(arr: Any, n: int) -> _AxisMeta:
    """Roles and names from a zarr v3 array's ``dimension_names`` (when all are set)."""
    roles, names, values = _no_axis_meta(n)
    dim_names = getattr(arr.metadata, "dimension_names", None)
    if dim_names and all(name is not None for name in dim_names):
        names = [str(name) for name in dim_names]
        roles = [role_of_name(name) for name in names]
    return roles, names, values


def _no_axis_meta(n: int) -> _AxisMeta:
    """Nothing known about ``n`` axes: unknown roles and names, scale 1, no units."""
    return [UNKNOWN] * n, [None] * n, [AxisValue()] * n
