"""Zarr metadata read from disk: node type, format and attributes, without opening zarr.

Reading the ``zarr.json`` / ``.zarray`` / ``.zgroup`` / ``.zattrs`` files directly is
cheap and tells zarr v2 from v3, arrays from groups, and finds the container around an
array; the OME-Zarr ``multiscales`` are read from the attributes found here.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import StitchsafeError

__all__ = ["zarr_node"]


def _read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in ``path``, ``None`` when there is no such file."""
    if not os.path.isfile(path):
        return None
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
    meta = _read_json(os.path.join(path, "zarr.json"))
    if meta is not None:
        node_type = meta.get("node_type")
        if node_type not in ("array", "group"):
            raise StitchsafeError(
                f"{path!r} has a zarr.json without a valid node_type; the zarr store looks corrupt."
            )
        return node_type, 3, dict(meta.get("attributes") or {})
    for name, node_type in ((".zarray", "array"), (".zgroup", "group")):
        if _read_json(os.path.join(path, name)) is not None:
            attrs = _read_json(os.path.join(path, ".zattrs")) or {}
            return node_type, 2, attrs
    return None


def container_of(array_dir: str) -> tuple[str | None, str | None]:
    """The outermost zarr group above ``array_dir`` and the array's path inside it."""
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


def ome_multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The OME-Zarr ``multiscales`` list of a group's attributes (0.4 or 0.5), or None.

    >>> ome_multiscales({"ome": {"multiscales": [{"datasets": []}]}})
    [{'datasets': []}]
    >>> ome_multiscales({"multiscales": []}) is None
    True
    """
    ms = attrs.get("ome", {}).get("multiscales") if "ome" in attrs else attrs.get("multiscales")
    if isinstance(ms, list) and ms and isinstance(ms[0], dict):
        return ms
    return None


def list_arrays(group: str, limit: int = 20) -> list[str]:
    """Paths of the first ``limit`` arrays inside ``group`` (for error messages)."""
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
