"""Zarr metadata: node type, format and attributes, without opening zarr arrays.

Reading the ``zarr.json`` / ``.zarray`` / ``.zgroup`` / ``.zattrs`` keys directly is
cheap and tells zarr v2 from v3, arrays from groups, and finds the container around an
array; on a local disk as files, at a URL (``s3://``, ``https://``...) through zarr's
store layer (:mod:`._stores`); the OME-Zarr ``multiscales`` are read from the attributes
found here and checked field by field (:func:`checked_multiscale`), so that malformed
metadata is refused naming the field rather than failing somewhere later.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import stat
from collections.abc import Callable
from typing import Any, NoReturn

from ..errors import StitchsafeError
from ._stores import is_url, list_children, read_key

__all__ = ["zarr_node"]


def _read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in ``path``, ``None`` when there is no such file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # absent (or a dangling link): no such node
        return None
    if not stat.S_ISREG(mode):
        raise StitchsafeError(
            f"the zarr metadata file {path!r} is not a regular file (a FIFO, device or "
            "directory), so it cannot be read; replace it with the JSON metadata file."
        )
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise StitchsafeError(
            f"cannot read the zarr metadata file {path!r}: {e}. The zarr store looks corrupt; "
            "rewrite it or point to a different input."
        ) from None
    if not isinstance(meta, dict):
        raise StitchsafeError(f"the zarr metadata file {path!r} does not hold a JSON object.")
    return meta


def zarr_node(path: str) -> tuple[str, int, dict[str, Any]] | None:
    """``(node_type, zarr_format, attributes)`` of the zarr node at ``path``, or None.

    Examples
    --------
    >>> import tempfile, zarr
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> _ = zarr.open_group(f"{d}/g.zarr", mode="w", zarr_format=2, attributes={"a": 1})
    >>> zarr_node(f"{d}/g.zarr"), zarr_node(d)
    (('group', 2, {'a': 1}), None)

    >>> tmp.cleanup()
    """
    if is_url(path):
        return _node(lambda name: _remote_json(path, name), f"{path}/zarr.json")
    return _node(lambda name: _read_json(os.path.join(path, name)), os.path.join(path, "zarr.json"))


def _remote_json(url: str, name: str) -> dict[str, Any] | None:
    """The JSON object stored as ``name`` at ``url``, ``None`` when there is none."""
    data = read_key(url, name)
    if data is None:
        return None
    try:
        meta = json.loads(data)
    except ValueError as e:
        raise StitchsafeError(
            f"cannot read the zarr metadata {url}/{name}: {e}. The zarr store looks corrupt; "
            "rewrite it or point to a different input."
        ) from None
    if not isinstance(meta, dict):
        raise StitchsafeError(f"the zarr metadata {url}/{name} does not hold a JSON object.")
    return meta


def _node(
    read: Callable[[str], dict[str, Any] | None], meta_file: str
) -> tuple[str, int, dict[str, Any]] | None:
    """The node that ``read`` (a metadata key's JSON, or ``None``) describes."""
    path = os.path.dirname(meta_file)
    meta = read("zarr.json")
    if meta is not None:
        node_type = meta.get("node_type")
        if node_type not in ("array", "group"):
            raise StitchsafeError(
                f"{path!r} has a zarr.json without a valid node_type; the zarr store looks corrupt."
            )
        attrs = meta.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise StitchsafeError(
                f"the zarr metadata file {meta_file!r} has "
                f"'attributes' of type {type(attrs).__name__}, not a JSON object; the zarr "
                "store looks corrupt. Fix or remove the attributes, or rewrite the store."
            )
        return node_type, 3, dict(attrs)
    for name, node_type in ((".zarray", "array"), (".zgroup", "group")):
        if read(name) is not None:
            return node_type, 2, read(".zattrs") or {}
    return None


def container_of(array_dir: str) -> tuple[str | None, str | None]:
    """The outermost zarr group above ``array_dir`` and the array's path inside it."""
    if is_url(array_dir):
        return _remote_container_of(array_dir)
    current = os.path.abspath(array_dir)
    container = None
    parent = os.path.dirname(current)
    while parent and parent != current:
        node = zarr_node(parent)
        if node is None or node[0] != "group":
            break
        container, current = parent, parent
        parent = os.path.dirname(current)
    if container is None:
        return None, None
    rel = os.path.relpath(os.path.abspath(array_dir), container)
    return container, rel.replace(os.sep, "/")


def _remote_container_of(url: str) -> tuple[str | None, str | None]:
    """:func:`container_of` at a URL: the groups above it, up to the bucket or host."""
    scheme, _, rest = url.partition("://")
    root, *parts = rest.split("/")
    container = None
    for n in range(len(parts) - 1, 0, -1):
        parent = f"{scheme}://{root}/" + "/".join(parts[:n])
        node = zarr_node(parent)
        if node is None or node[0] != "group":
            break
        container = parent
    if container is None:
        return None, None
    return container, url[len(container) + 1 :]


def _remote_arrays(url: str, limit: int, depth: int = 4) -> list[str]:
    """:func:`list_arrays` at a URL (nothing where the store cannot list: https)."""
    found: list[str] = []
    for name in list_children(url):
        node = zarr_node(posixpath.join(url, name))
        if node is not None and node[0] == "array":
            found.append(name)
        elif node is not None and depth > 1:
            inner = _remote_arrays(posixpath.join(url, name), limit - len(found), depth - 1)
            found.extend(f"{name}/{a}" for a in inner)
        if len(found) >= limit:
            break
    return found[:limit]


def list_arrays(group: str, limit: int = 20) -> list[str]:
    """Paths of the first ``limit`` arrays inside ``group`` (for error messages)."""
    if is_url(group):
        return _remote_arrays(group, limit)
    found: list[str] = []
    for root, dirs, _files in os.walk(group):
        dirs.sort()
        for d in list(dirs):
            node = zarr_node(os.path.join(root, d))
            if node is None:
                dirs.remove(d)
            elif node[0] == "array":
                found.append(os.path.relpath(os.path.join(root, d), group).replace(os.sep, "/"))
                dirs.remove(d)
        if len(found) >= limit:
            break
    return found[:limit]


def checked_multiscale(attrs: dict[str, Any], where: str) -> tuple[dict[str, Any], str] | None:
    """The first ``multiscales`` entry of an image group, checked, and its field name.

    ``None`` when the attributes hold no ``multiscales`` (not an OME-Zarr image); a
    malformed entry is refused naming the field. The axes' count and the scale's length
    are checked against the array by the caller (they need its shape).

    >>> checked_multiscale({"ome": {"multiscales": [{"datasets": [{"path": "0"}]}]}}, "g")
    ({'datasets': [{'path': '0'}]}, 'ome.multiscales[0]')
    >>> checked_multiscale({"multiscales": {}}, "'g.zarr'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: ... malformed: multiscales is an object, not a list...
    """
    if "ome" in attrs:
        ome = attrs["ome"]
        if not isinstance(ome, dict):
            malformed(where, "ome", f"is {_json_kind(ome)}, not an object")
        if "multiscales" not in ome:
            return None
        field, ms = "ome.multiscales", ome["multiscales"]
    elif "multiscales" in attrs:
        field, ms = "multiscales", attrs["multiscales"]
    else:
        return None
    if not isinstance(ms, list):
        malformed(where, field, f"is {_json_kind(ms)}, not a list of multiscale objects")
    if not ms:
        malformed(where, field, "is an empty list (it must describe at least one image)")
    field += "[0]"
    first = ms[0]
    if not isinstance(first, dict):
        malformed(where, field, f"is {_json_kind(first)}, not an object")
    _check_datasets(first.get("datasets"), f"{field}.datasets", where)
    _check_axes(first.get("axes"), f"{field}.axes", where)
    return first, field


def malformed(where: str, field: str, problem: str) -> NoReturn:
    """Refuse the OME-Zarr metadata of ``where``: ``field`` has ``problem``."""
    raise StitchsafeError(
        f"the OME-Zarr metadata of {where} is malformed: {field} {problem}. Fix that field "
        "in the image group's attributes (zarr.json 'attributes', or .zattrs for zarr v2), "
        "or pass the level-0 array itself as --input (or with --input-key)."
    )


def _check_datasets(datasets: Any, field: str, where: str) -> None:
    """``datasets`` is a non-empty list whose first entry has a relative array ``path``."""
    if datasets is None:
        malformed(where, field, "is missing (it must list the resolution levels)")
    if not isinstance(datasets, list):
        malformed(where, field, f"is {_json_kind(datasets)}, not a list of levels")
    if not datasets:
        malformed(where, field, "is an empty list (it must list the level-0 array first)")
    level0 = datasets[0]
    if not isinstance(level0, dict):
        malformed(where, f"{field}[0]", f"is {_json_kind(level0)}, not an object")
    if "path" not in level0:
        malformed(where, f"{field}[0].path", "is missing (it names the level-0 array)")
    path = level0["path"]
    if not isinstance(path, str) or not path.strip("/"):
        malformed(where, f"{field}[0].path", f"is {path!r}, not the path of an array")
    if path.startswith("/") or ".." in path.split("/"):
        malformed(where, f"{field}[0].path", f"is {path!r}, which leaves the image group")
    transforms = level0.get("coordinateTransformations")
    if transforms is not None:
        check_transforms(transforms, f"{field}[0].coordinateTransformations", where)


def check_transforms(transforms: Any, field: str, where: str) -> None:
    """A list of objects with a ``type``; scales positive and translations finite numbers."""
    if not isinstance(transforms, list):
        malformed(where, field, f"is {_json_kind(transforms)}, not a list of transformations")
    for i, t in enumerate(transforms):
        if not isinstance(t, dict):
            malformed(where, f"{field}[{i}]", f"is {_json_kind(t)}, not an object")
        kind = t.get("type")
        if not isinstance(kind, str):
            malformed(where, f"{field}[{i}].type", f"is {kind!r}, not a transformation type")
        if kind not in ("scale", "translation") or kind not in t:
            continue  # other types, or values kept in a file ("path"): nothing read here
        values = t[kind]
        ok = isinstance(values, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        )
        if not ok or (kind == "scale" and any(v <= 0 for v in values)):
            need = "positive numbers" if kind == "scale" else "finite numbers"
            malformed(where, f"{field}[{i}].{kind}", f"is {values!r}, not a list of {need}")


def _check_axes(axes: Any, field: str, where: str) -> None:
    """``axes``, when given, lists bare names or objects with a string ``name``."""
    if axes is None:
        return  # OME-Zarr 0.3 and older: axes by position
    if not isinstance(axes, list) or not axes:
        what = "an empty list" if axes == [] else _json_kind(axes)
        malformed(where, field, f"is {what}, not a list of axis objects")
    names = []
    for i, ax in enumerate(axes):
        if isinstance(ax, str):  # OME-Zarr 0.3 lists bare names
            ax = {"name": ax}
        if not isinstance(ax, dict):
            malformed(where, f"{field}[{i}]", f"is {_json_kind(ax)}, not an axis object")
        if "name" not in ax:
            malformed(where, f"{field}[{i}].name", "is missing")
        for key in ("name", "type", "unit"):
            value = ax.get(key)
            if (key == "name" or value is not None) and not (isinstance(value, str) and value):
                malformed(where, f"{field}[{i}].{key}", f"is {value!r}, not a string")
        names.append(ax["name"])
    if len(set(names)) != len(names):
        malformed(where, field, f"names the same axis twice ({', '.join(names)})")


def _json_kind(value: Any) -> str:
    """What a JSON value is, in words (for the messages).

    >>> _json_kind({}), _json_kind("zyx"), _json_kind(None), _json_kind(3)
    ('an object', 'a string', 'null', 'a number')
    """
    if value is None:
        return "null"
    kinds = ((bool, "a boolean"), (dict, "an object"), (list, "a list"), (str, "a string"))
    return next((w for t, w in kinds if isinstance(value, t)), "a number")
