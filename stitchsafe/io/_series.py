"""The images of a container listed at its root, so that a viewer opening the root shows them.

An OME-Zarr input's own container (``vol.zarr`` holding ``raw`` and stitchsafe's
``embeddings``) has no OME-Zarr metadata at its root: opening ``vol.zarr`` itself shows
nothing. OME-Zarr 0.5 lists the images of such a container with the bioformats2raw layout:
``"ome": {"bioformats2raw.layout": 3}`` at the root, the image paths in the ``series`` of
the group ``OME``, and ``OME/METADATA.ome.xml``, whose ``Image`` elements (IDs
``Image:<path>``) napari-ome-zarr follows. :func:`list_images` writes them, and only where
the root has no metadata of its own (or has the listing stitchsafe wrote): a root that
already says what it is is never touched. ome-zarr-py (0.18) does not read this layout;
open the images themselves there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import zarr

from ._ome_image import image_parts
from ._place import place_isdir, place_write
from ._zarr_meta import zarr_node

__all__ = ["OME_GROUP", "list_images"]

OME_GROUP = "OME"
_MARK = "images of this container, listed by stitchsafe for viewers that open its root"
_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">\n{images}</OME>\n'
)


def _listed_by_us(group: str) -> list[str] | None:
    """The series stitchsafe listed at ``group``'s root before (``[]``: none yet, the
    root has no metadata); ``None`` when the root's metadata is not stitchsafe's."""
    root = zarr_node(group)
    if root is None or root[:2] != ("group", 3):
        return None
    if not root[2]:
        return []
    ome = zarr_node(os.path.join(group, OME_GROUP))
    attrs: dict[str, Any] = ome[2] if ome is not None else {}
    series = (attrs.get("ome") or {}).get("series") if isinstance(attrs.get("ome"), dict) else None
    if set(root[2]) != {"ome"} or attrs.get("stitchsafe") != _MARK or not isinstance(series, list):
        return None
    return [str(s) for s in series]


def list_images(group: str | os.PathLike[str], images: Sequence[str]) -> bool:
    """List ``images`` (OME-Zarr image paths inside ``group``) at the root of ``group``.

    Adds them after those listed before; images that are not there (or are the root
    itself) are left out. Returns whether the root lists them: ``False`` when the root
    has metadata that stitchsafe did not write (it is not changed then).

    Examples
    --------
    >>> import tempfile
    >>> from stitchsafe.io import ImageLayout, create_output
    >>> tmp = tempfile.TemporaryDirectory(); d = f"{tmp.name}/vol.zarr"
    >>> layout = ImageLayout(shape=(4, 4), chunks=(4, 4), axes=("y", "x"), channels=1)
    >>> for name in ("raw", "embeddings"):
    ...     _ = create_output(d, layout, image=name)
    >>> list_images(d, ["raw", "embeddings", "missing"])
    True
    >>> zarr.open_group(f"{d}/OME", mode="r").attrs["ome"]["series"]
    ['raw', 'embeddings']
    >>> list_images(f"{d}/raw", ["0"])  # an image's own root: never touched
    False
    >>> tmp.cleanup()
    """
    group = os.fspath(group)
    before = _listed_by_us(group)
    if before is None:
        return False
    found = [
        "/".join(image_parts(i))
        for i in images
        if image_parts(i) and _is_image(os.path.join(group, *image_parts(i)))
    ]
    series = list(dict.fromkeys([*before, *found]))
    if not series:
        return False
    ome = zarr.open_group(store=os.path.join(group, OME_GROUP), mode="a", zarr_format=3)
    ome.attrs.update({"ome": {"version": "0.5", "series": series}, "stitchsafe": _MARK})
    entries = "".join(
        f"  <Image ID={quoteattr('Image:' + s)} Name={quoteattr(s)}/>\n" for s in series
    )
    xml = _XML.format(images=entries).encode("utf-8")
    place_write(os.path.join(group, OME_GROUP, "METADATA.ome.xml"), xml)
    root = zarr.open_group(store=group, mode="r+", zarr_format=3)
    root.attrs["ome"] = {"version": "0.5", "bioformats2raw.layout": 3}
    return True


def _is_image(path: str) -> bool:
    """Whether ``path`` is an OME-Zarr image group (it lists multiscales)."""
    node = zarr_node(path) if place_isdir(path) else None
    ome = node[2].get("ome") if node is not None and node[0] == "group" else None
    return isinstance(ome, dict) and bool(ome.get("multiscales"))
