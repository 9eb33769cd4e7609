"""OME-Zarr 0.5 label images: beside a source image (``<image>/labels/<name>``) or alone.

Label images are spatial only (no channel axis), of an unsigned integer type, chunked
like the image's spatial axes so that labels are written chunk-aligned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ..errors import StitchsafeError
from ._layout import ImageLayout, OutputSpec
from ._ome_image import (
    create_image,
    create_image_group,
    image_parts,
    inner_path,
    multiscales,
    remove_existing,
)
from ._zarr_meta import zarr_node

__all__ = [
    "LABELS_OF",
    "create_label_image",
    "create_labels",
    "labels_of",
    "prepare_label_image",
    "prepare_labels",
]

LABELS_OF = "labels_of"
"""The embeddings' attribute (inside ``stitchsafe``) naming the image whose ``labels``
group holds their labels: the raw image, for an OME-Zarr input in its own container.
Without it (the root image of a container stitchsafe made; outputs of earlier versions)
the labels go under the embeddings image itself."""


def labels_of(group: str | os.PathLike[str], image: str) -> str:
    """The image (path inside ``group``) whose ``labels/`` holds the labels derived from
    the embeddings image ``image``: its ``stitchsafe.labels_of``, else ``image`` itself.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> _ = zarr.open_group(f"{d}/o.zarr/e", mode="w",
    ...                     attributes={"stitchsafe": {LABELS_OF: "raw"}})
    >>> labels_of(f"{d}/o.zarr", "e"), labels_of(f"{d}/o.zarr", "")
    ('raw', '')
    >>> tmp.cleanup()
    """
    node = zarr_node(os.path.join(os.fspath(group), *image_parts(image)))
    stored = node[2].get("stitchsafe") if node is not None else None
    where = stored.get(LABELS_OF) if isinstance(stored, dict) else None
    return "/".join(image_parts(where)) if isinstance(where, str) else image


def _label_compressor() -> Any:
    # Labels are long runs of equal integers: byte shuffle + zstd packs them far better
    # than lz4 at a cost that is small next to the labelling itself.
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


def _check_label_layout(layout: ImageLayout) -> None:
    """A label image is spatial only and of an unsigned integer type."""
    if np.dtype(layout.dtype).kind != "u":
        raise ValueError(f"labels need an unsigned integer dtype, got {layout.dtype}")
    if layout.channels is not None:
        raise ValueError("a label image has no channel axis; build its layout with channels=None")


def create_labels(
    group: str | os.PathLike[str],
    layout: ImageLayout,
    *,
    image: str = "embeddings",
    name: str = "instances",
    overwrite: bool = False,
) -> OutputSpec:
    """Create an empty OME-Zarr 0.5 image-label ``<image>/labels/<name>`` (level ``"0"``).

    The ``labels`` group of ``image`` is created if needed and lists ``name``; the label
    image's ``image-label`` points back at its source image (``"../../"``) and carries no
    per-id colours. The array ``0`` is ``layout.shape`` (spatial axes only), chunked by
    ``layout.chunks`` (the image's spatial chunks, so labels are written chunk-aligned).

    Parameters
    ----------
    group
        The zarr v3 group that holds ``image``.
    layout
        Spatial shape, chunks, axes, ``uint32`` or ``uint64`` dtype, attributes, and the
        source image's scale and units; no ``channels``.
    image
        Path of the source image inside ``group`` (it must exist).
    name
        Name of the label image inside ``labels``.
    overwrite
        Replace an existing label image ``name`` written by stitchsafe.

    Returns
    -------
    OutputSpec
        ``image`` is ``"<image>/labels/<name>"``, ``array`` that plus ``"/0"``.
    """
    group = os.fspath(group)
    _check_label_layout(layout)
    parts = image_parts(image)
    if "/" in name or name in ("", ".", "..") or name.startswith("__"):
        raise StitchsafeError(f"invalid label image name {name!r}; use e.g. 'instances'.")
    labels_parts = [*parts, "labels"]
    labels = _labels_group(group, labels_parts, name, overwrite=overwrite)
    ome = {
        "version": "0.5",
        "image-label": {"source": {"image": "../../"}},
        "multiscales": multiscales(name, layout),
    }
    create_image(labels, name, layout, ome=ome, compressors=_label_compressor())
    image_path = "/".join(labels_parts + [name])
    return OutputSpec(group=group, image=image_path, array=inner_path(image_path, "0"))


def _labels_group(group: str, labels_parts: list[str], name: str, *, overwrite: bool) -> Any:
    """The open ``labels`` group beside the source image, listing ``name`` in its metadata.

    An existing label image ``name`` is refused or (``overwrite``) deleted first.
    """
    source = zarr_node(os.path.join(group, *labels_parts[:-1]))
    if source is None or source[:2] != ("group", 3):
        raise StitchsafeError(
            f"{'/'.join(labels_parts[:-1]) or 'the root'!r} in {group!r} is not a zarr v3 "
            "image group, so "
            "labels cannot be written beside it."
        )
    node = zarr_node(os.path.join(group, *labels_parts))
    if node is not None and node[:2] != ("group", 3):
        raise StitchsafeError(
            f"{'/'.join(labels_parts)!r} in {group!r} exists but is not a zarr v3 group; "
            "move it away to write labels there."
        )
    remove_existing(group, [*labels_parts, name], overwrite=overwrite)
    labels = zarr.open_group(store=os.path.join(group, *labels_parts), mode="a", zarr_format=3)
    previous: Any = labels.attrs.asdict().get("ome")
    ome_labels: dict[str, Any] = dict(previous) if isinstance(previous, dict) else {}
    names = [n for n in ome_labels.get("labels", []) if n != name]
    labels.attrs["ome"] = {**ome_labels, "version": "0.5", "labels": [*names, name]}
    return labels


def prepare_labels(  # noqa: PLR0913 - the keyword form callers use; builds an ImageLayout
    group: str | os.PathLike[str],
    *,
    image: str = "embeddings",
    name: str = "instances",
    shape: Sequence[int],
    chunks: Sequence[int],
    dtype: str = "uint32",
    axes: Sequence[str],
    overwrite: bool = False,
    attributes: dict[str, Any] | None = None,
    scale: Sequence[float] | None = None,
    units: Sequence[str | None] | None = None,
) -> OutputSpec:
    """:func:`create_labels` with the :class:`ImageLayout` given field by field.

    ``shape``, ``chunks``, ``dtype`` (``uint32`` or ``uint64``), ``axes``, ``attributes``,
    ``scale`` and ``units`` are those of :class:`ImageLayout`; ``group``, ``image``,
    ``name`` and ``overwrite`` those of :func:`create_labels`.
    """
    layout = ImageLayout(
        shape=shape,
        chunks=chunks,
        axes=axes,
        dtype=dtype,
        attributes=attributes,
        scale=scale,
        units=units,
    )
    return create_labels(group, layout, image=image, name=name, overwrite=overwrite)


def create_label_image(
    group: str | os.PathLike[str],
    layout: ImageLayout,
    *,
    image: str = "instances",
    overwrite: bool = False,
) -> OutputSpec:
    """Create an empty stand-alone OME-Zarr 0.5 label image ``image`` (level ``"0"``;
    ``""``: the group's root is the label image).

    For labels-only runs, which have no embeddings image to put labels under: an image
    group with ``multiscales`` (spatial axes only) and ``image-label`` metadata, so OME-Zarr
    readers (napari) open it as labels. The group is created, or opened if it already is a
    zarr v3 group; nothing else in it is touched.

    Examples
    --------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> layout = ImageLayout(shape=(8, 8), chunks=(4, 4), axes=("y", "x"), dtype="uint32")
    >>> create_label_image(f"{d}/out.zarr", layout).array
    'instances/0'

    >>> tmp.cleanup()
    """
    group = os.fspath(group)
    _check_label_layout(layout)
    parts = image_parts(image)
    ome = {
        "version": "0.5",
        "image-label": {},
        "multiscales": multiscales(parts[-1] if parts else "instances", layout),
    }
    create_image_group(
        group, parts, layout, ome=ome, compressors=_label_compressor(), overwrite=overwrite
    )
    image = "/".join(parts)
    return OutputSpec(group=group, image=image, array=inner_path(image, "0"))


def prepare_label_image(
    group: str | os.PathLike[str],
    *,
    image: str = "instances",
    shape: Sequence[int],
    chunks: Sequence[int],
    dtype: str = "uint32",
    axes: Sequence[str],
    overwrite: bool = False,
    attributes: dict[str, Any] | None = None,
) -> OutputSpec:
    """:func:`create_label_image` with the :class:`ImageLayout` given field by field."""
    layout = ImageLayout(shape=shape, chunks=chunks, axes=axes, dtype=dtype, attributes=attributes)
    return create_label_image(group, layout, image=image, overwrite=overwrite)
