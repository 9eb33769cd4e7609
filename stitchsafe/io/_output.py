"""OME-Zarr 0.5 output images on zarr v3: where results go and how the image is created.

Outputs are written chunk by chunk (:func:`stitchsafe.io.write_block`); each chunk is one
tile's write box, so concurrent writers never share a chunk. Instance labels go under the
image they belong to (:func:`stitchsafe.io.create_labels`, :func:`stitchsafe.io.labels_of`).

Where: a container that stitchsafe makes is the image itself (its root, image path ``""``:
:func:`output_image`), so that opening the path the user is given shows the results; in
the input's own zarr v3 container (or a group of the user's) the image is ``embeddings``
beside the raw image (:func:`default_output_location`), and an OME-Zarr input's labels go
under the raw image (:func:`input_image_path`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from typing import Any

from zarr.codecs import BloscCodec

from ..errors import StitchsafeError
from ._layout import ImageLayout, OutputSpec
from ._ome_image import create_image_group, image_parts, inner_path, multiscales
from ._place import place_isdir, place_listdir
from ._stores import check_remote_output, is_url
from ._volume import Volume
from ._zarr_meta import zarr_node

__all__ = [
    "EMBEDDINGS",
    "create_output",
    "default_output_location",
    "fallback_note",
    "input_image_path",
    "output_image",
    "prepare_output",
]

EMBEDDINGS = "embeddings"
"""The embeddings image's name in a container that holds other images (the input's own)."""


def _stem(path: str) -> str:
    name = os.path.basename(os.path.normpath(path))
    for suffix in (".zarr", ".tiff", ".tif", ".ome", ".n5"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def _writable(folder: str) -> bool:
    """Whether files can be made in ``folder`` (a read-only mount or permissions say no)."""
    return os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)


def default_output_location(volume: Volume, default: str = EMBEDDINGS) -> tuple[str, str]:
    """``(group_path, image_path)`` where results go by default.

    Into the input's own zarr v3 container, as the image ``default`` beside the raw image,
    when that container (and the folder holding it, where the run's lock file goes) is
    writable; otherwise (TIFF, a bare array, a zarr v2 container, a read-only container)
    into a new ``<stem>.stitchsafe.zarr`` beside the input, whose root is the image
    (:func:`output_image`: ``""``).

    Raises
    ------
    StitchsafeError
        That new container cannot be made either: the input's folder is read-only. The
        message says to choose a place with ``--output``.

    Examples
    --------
    >>> import tempfile, tifffile
    >>> import numpy as np
    >>> from stitchsafe.io import open_volume
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> tifffile.imwrite(f"{d}/vol.tif", np.zeros((4, 4), "uint8"))
    >>> g, image = default_output_location(open_volume(f"{d}/vol.tif", spatial_dims=2))
    >>> os.path.basename(g), image
    ('vol.stitchsafe.zarr', '')

    >>> tmp.cleanup()
    """
    if volume.kind == "array" or is_url(volume.path):
        what = "an array in memory" if volume.kind == "array" else "in a remote store"
        raise StitchsafeError(
            f"the input is {what}, so there is no folder beside it for the results: give "
            "the output's place (--output, or output= in Python): a local zarr group, or "
            "one in an object store (e.g. --output s3://bucket/out.zarr)."
        )
    base = os.path.abspath(volume.container or volume.path)
    folder = os.path.dirname(base)
    if volume.container is not None:
        node = zarr_node(volume.container)
        if node is not None and node[:2] == ("group", 3) and _writable(base) and _writable(folder):
            return volume.container, default
    beside = os.path.join(folder, _stem(base) + ".stitchsafe.zarr")
    if not _writable(folder):
        raise StitchsafeError(
            f"the results cannot go beside the input: {folder!r} is read-only (or not "
            f"yours to write), so neither {base!r} nor a new {os.path.basename(beside)!r} "
            "can hold them. Choose a writable place with --output, e.g. --output "
            f"{os.path.join('<writable folder>', os.path.basename(beside))}."
        )
    return beside, output_image(beside, default)


def output_image(group: str | os.PathLike[str], default: str = EMBEDDINGS) -> str:
    """Where in the output ``group`` a run puts its image: ``""`` (the root) in a container
    that stitchsafe makes, else ``default``.

    The root when ``group`` does not exist yet, is an empty folder or a group without
    metadata or members, or its root already is an image that stitchsafe wrote: opening
    the container then opens the results. ``default`` (``"embeddings"``; a labels-only
    run's ``"instances"``) in any other group (the input's own container, a group of the
    user's, or an output of an earlier version that kept its image there).

    >>> import tempfile, zarr
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> output_image(f"{d}/new.zarr")
    ''
    >>> g = zarr.open_group(f"{d}/old.zarr", mode="w"); _ = g.create_group("embeddings")
    >>> output_image(f"{d}/old.zarr")
    'embeddings'
    >>> tmp.cleanup()
    """
    group = os.fspath(group)
    check_remote_output(group)  # a missing bucket is named before it is looked into
    if not place_isdir(group):
        return ""
    node = zarr_node(group)
    if node is None:  # empty, or holding only zarr's partial writes of a stopped creation
        return "" if all(n.endswith(".partial") for n in place_listdir(group)) else default
    if "stitchsafe" in node[2]:
        return ""
    members = [e for e in place_listdir(group) if e != "zarr.json" and not e.startswith(".")]
    return "" if not members and not node[2] else default


def input_image_path(volume: Volume, group: str | os.PathLike[str]) -> str | None:
    """The path of the input's OME-Zarr image inside ``group``, when ``group`` is the
    input's own container (its labels then go under that image's ``labels/``); else
    ``None``.

    >>> import tempfile, numpy as np
    >>> from stitchsafe.io import open_volume
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> layout = ImageLayout(shape=(4, 4), chunks=(4, 4), axes=("y", "x"), channels=1)
    >>> _ = create_output(f"{d}/vol.zarr", layout, image="raw")
    >>> volume = open_volume(f"{d}/vol.zarr", key="raw", spatial_dims=2)
    >>> input_image_path(volume, f"{d}/vol.zarr"), input_image_path(volume, f"{d}/o.zarr")
    ('raw', None)
    >>> tmp.cleanup()
    """
    if volume.kind != "ome-zarr" or volume.container is None or volume.array_path is None:
        return None
    if os.path.abspath(os.fspath(group)) != os.path.abspath(volume.container):
        return None
    return posixpath.dirname(volume.array_path.strip("/"))


def fallback_note(volume: Volume, group: str) -> str | None:
    """What to tell the user when the results do not go into the input's own zarr v3
    container although they would by default (it is read-only): ``None`` otherwise."""
    if volume.container is None or os.path.abspath(group) == os.path.abspath(volume.container):
        return None
    node = zarr_node(volume.container)
    if node is None or node[:2] != ("group", 3):
        return None
    return (
        f"the input's container {volume.container} is read-only, so the results go to "
        f"{group} instead (choose another place with --output)."
    )


def _default_compressor() -> Any:
    # Measured on smooth float32 embeddings (16 channels, 32x128x128 chunks): blosc-lz4
    # with byte shuffle encodes ~1.2 GB/s at ratio 1.15, zstd level 1 ~0.39 GB/s at 1.08.
    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def create_output(
    group: str | os.PathLike[str],
    layout: ImageLayout,
    *,
    image: str = "embeddings",
    overwrite: bool = False,
) -> OutputSpec:
    """Create an empty OME-Zarr 0.5 image ``image`` (level ``"0"``) inside a zarr v3 group.

    The group is created, or opened if it already is a zarr v3 group (e.g. the input's own
    container); nothing else in it is touched.

    Parameters
    ----------
    group
        Path of the zarr v3 group.
    layout
        What the image holds; it must have ``channels`` (a leading ``c`` axis).
    image
        Name (path) of the image group inside ``group``.
    overwrite
        Replace an existing ``image`` written by stitchsafe. Images that stitchsafe did
        not write are never deleted.

    Returns
    -------
    OutputSpec

    Examples
    --------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> layout = ImageLayout(shape=(8, 8), chunks=(4, 4), axes=("y", "x"), channels=2)
    >>> create_output(f"{d}/out.zarr", layout).array
    'embeddings/0'

    >>> tmp.cleanup()
    """
    if layout.channels is None:
        raise ValueError("an output image needs channels; build its layout with channels=...")
    group = os.fspath(group)
    parts = image_parts(image)
    image = "/".join(parts)
    name = parts[-1] if parts else EMBEDDINGS
    ome = {"version": "0.5", "multiscales": multiscales(name, layout)}
    create_image_group(
        group, parts, layout, ome=ome, compressors=_default_compressor(), overwrite=overwrite
    )
    return OutputSpec(group=group, image=image, array=inner_path(image, "0"))


def prepare_output(  # noqa: PLR0913 - the keyword form callers use; builds an ImageLayout
    group: str | os.PathLike[str],
    *,
    image: str = "embeddings",
    shape: Sequence[int],
    channels: int,
    chunks: Sequence[int],
    dtype: str = "float32",
    axes: Sequence[str],
    overwrite: bool = False,
    attributes: dict[str, Any] | None = None,
    scale: Sequence[float] | None = None,
    units: Sequence[str | None] | None = None,
    translation: Sequence[float] | None = None,
) -> OutputSpec:
    """:func:`create_output` with the :class:`ImageLayout` given field by field.

    ``shape``, ``channels``, ``chunks``, ``dtype``, ``axes``, ``attributes``, ``scale``,
    ``units`` and ``translation`` are those of :class:`ImageLayout`; ``group``, ``image``
    and ``overwrite`` those of :func:`create_output`.
    """
    layout = ImageLayout(
        shape=shape,
        chunks=chunks,
        axes=axes,
        dtype=dtype,
        channels=channels,
        attributes=attributes,
        scale=scale,
        units=units,
        translation=translation,
    )
    return create_output(group, layout, image=image, overwrite=overwrite)
