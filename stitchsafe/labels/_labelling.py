"""Labels for embeddings already on disk: find the embeddings image, write its labels.

``predict`` stores with its embeddings image (``attributes["stitchsafe"]``) the model's
``channel_roles`` and ``label_defaults`` (see :func:`stitchsafe.labels.label_defaults`),
so that labels derived later (``stitchsafe segment``) use the same roles and defaults.

New labels are built beside the old ones and swapped in when complete (:mod:`._swap`):
an interrupted or failed labelling never leaves old labels deleted or half-overwritten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import zarr

from ..errors import StitchsafeError
from ..io import (
    ImageLayout,
    OutputSpec,
    PhysicalScale,
    create_labels,
    image_axes,
    inner_path,
    mark_complete,
    place_exists,
    place_isdir,
    storage_shape,
    write_pyramid,
    zarr_node,
)
from ._blocks import BlockRunner, block_runner
from ._blockwise import LabelStats, label_blocks
from ._params import LabelParams, check_label_dtype
from ._swap import LabelPlace

__all__ = [
    "LABELS_NAME",
    "SCRATCH",
    "EmbeddingsImage",
    "open_embeddings",
    "write_labels",
]

LABELS_NAME = "instances"
SCRATCH = "stitchsafe-local-ids"
_HINT = (
    "pass segment the zarr group that predict wrote (its --output) as --input, and the "
    "image's path inside it as --input-key"
)


@dataclass(frozen=True)
class EmbeddingsImage:
    """An embeddings image (``(C, *spatial)``, OME-Zarr 0.5) found in a zarr v3 group.

    Attributes
    ----------
    group
        Path of the zarr v3 group (e.g. predict's output).
    image
        Image group path inside ``group`` (``"embeddings"``).
    array
        Level-0 array path inside ``group`` (``"embeddings/0"``).
    channels, shape, chunks
        Channel count; spatial shape and the spatial shape each tile wrote (the shards,
        or the chunks of an unsharded array).
    axes, physical
        Spatial axis names; voxel size, units and translation (from the OME-Zarr
        metadata, read by :func:`stitchsafe.io.image_axes`).
    attributes
        The image's ``attributes["stitchsafe"]`` (plan, channel roles, label defaults...).
    """

    group: str
    image: str
    array: str
    channels: int
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    axes: tuple[str, ...]
    physical: PhysicalScale
    attributes: dict[str, Any]


def open_embeddings(group: str | os.PathLike[str], *, image: str = "embeddings") -> EmbeddingsImage:
    """Find the embeddings image ``image`` in ``group`` and check it can be labelled.

    Raises
    ------
    StitchsafeError
        The group or image is missing, the array has not 1 channel + 2 or 3 spatial axes,
        or predict did not finish writing it.
    """
    group = os.fspath(group)
    parts, attrs = _image_group(group, image)
    image = "/".join(parts)
    ome: dict[str, Any] = attrs["ome"] if isinstance(attrs.get("ome"), dict) else {}
    multiscale = (ome.get("multiscales") or [{}])[0]
    datasets = multiscale.get("datasets") or [{"path": "0"}]
    level = str(datasets[0].get("path", "0"))
    arr = _level_array(group, parts, level)
    stitchsafe_attrs = dict(attrs.get("stitchsafe") or {})
    if stitchsafe_attrs.get("complete") is False:
        raise StitchsafeError(
            f"the embeddings in {group!r} are incomplete (predict stopped before writing "
            "every tile); finish them first: rerun the predict command that wrote them, "
            "with --resume (it computes only the missing tiles, then the labels)."
        )
    where = f"the embeddings image {image!r} in {group!r}"
    axes, physical = image_axes(attrs, where, ndim=arr.ndim, spatial=arr.ndim - 1)
    return EmbeddingsImage(
        group=group,
        image=image,
        array=inner_path(image, level),
        channels=int(arr.shape[0]),
        shape=tuple(int(s) for s in arr.shape[1:]),
        chunks=(storage_shape(arr) or arr.shape)[1:],
        axes=axes,
        physical=physical,
        attributes=stitchsafe_attrs,
    )


def _image_group(group: str, image: str) -> tuple[list[str], dict[str, Any]]:
    """The path parts of the image group ``image`` in the zarr v3 ``group``, and its
    attributes; StitchsafeError if either is missing."""
    node = zarr_node(group) if place_isdir(group) else None
    if node is None or node[:2] != ("group", 3):
        what = "does not exist" if not place_exists(group) else "is not a zarr v3 group"
        raise StitchsafeError(f"the input {group!r} {what}; {_HINT}.")
    parts = [p for p in image.strip("/").split("/") if p and p not in (".", "..")]
    img_node = zarr_node(os.path.join(group, *parts)) if parts else node  # "": the root
    if img_node is None or img_node[0] != "group":
        raise StitchsafeError(
            f"{group!r} holds no embeddings image {'/'.join(parts)!r} (the embeddings array "
            f"is missing); {_HINT}."
        )
    return parts, img_node[2]


def _level_array(group: str, parts: list[str], level: str) -> Any:
    """The image's level array, opened read-only, checked to be ``(C, *spatial)``."""
    array = "/".join([*parts, level])
    path = os.path.join(group, *parts, level)
    node = zarr_node(path)
    if node is None or node[0] != "array":
        raise StitchsafeError(
            f"the embeddings array {array!r} is missing in {group!r}; {_HINT} (predict may "
            "not have run to the end)."
        )
    arr = zarr.open_array(store=path, mode="r")
    if arr.ndim not in (3, 4):
        raise StitchsafeError(
            f"the embeddings array {array!r} in {group!r} has shape {arr.shape}; labels need "
            "a channel axis followed by 2 or 3 spatial axes, (C, Y, X) or (C, Z, Y, X)."
        )
    return arr


def write_labels(
    source: EmbeddingsImage,
    *,
    params: LabelParams,
    label_dtype: str = "uint32",
    name: str = LABELS_NAME,
    overwrite: bool = False,
    max_id: int | None = None,
    runner: BlockRunner | None = None,
    pyramid: bool = False,
    **run: Any,
) -> tuple[OutputSpec, LabelStats]:
    """Label ``source`` blockwise into the image-label ``<image>/labels/<name>``.

    Blocks are the embeddings' spatial shards or chunks (the tile write boxes), and so are
    the label shards (or chunks). ``runner`` and the keywords ``num_workers``, ``progress``
    and ``executor`` say where the blocks run (:class:`~stitchsafe.labels.BlockRunner`):
    with a dask ``executor`` (:func:`stitchsafe.engine.open_executor`) on its workers; a
    process pool (``--scheduler processes``) labels on threads here instead.

    The new label image is built in ``.stitchsafe/<image>/new-labels``, marked ``complete``
    there, and then swapped in (:class:`~stitchsafe.labels.LabelPlace`): existing labels
    (replaced only with ``overwrite``) stay untouched until the new ones are complete. A
    failure removes the new labels; Ctrl-C (``KeyboardInterrupt``) leaves them for the
    next run to clear, and says so in a note on the exception. Either way the labelling's
    threads are joined first. With ``pyramid`` the label image's resolution levels
    (:func:`stitchsafe.io.write_pyramid`, strided) are written there too, before the swap:
    labels and levels appear together.
    """
    runner = block_runner(runner, run, "write_labels")
    check_label_dtype(label_dtype)
    params.check_channels(source.channels)
    place = LabelPlace(source.group, source.image, name)
    place.prepare(overwrite=overwrite)
    attrs = {"params": params.to_dict(), "source": source.array, "complete": False}
    layout = ImageLayout(
        shape=source.shape,
        chunks=source.chunks,
        axes=source.axes,
        dtype=label_dtype,
        attributes=attrs,
        scale=source.physical.scale,
        units=source.physical.units,
        translation=source.physical.translation,
    )
    try:
        spec = create_labels(source.group, layout, image=place.scratch, name=name)
        stats = _label_into(spec, source, place, params, max_id=max_id, runner=runner)
        mark_complete(spec, {**attrs, **stats.done_record()})
        if pyramid:  # as many levels as the image the labels belong to
            write_pyramid(spec, progress=runner.progress, like=place.home)
    except KeyboardInterrupt as stop:
        # Ctrl-C or SIGTERM: leave at once; the next run clears the scratch group.
        stop.add_note(place.interrupted())
        raise
    except BaseException:
        place.discard()  # half-written labels hold block-local ids: worse than none
        raise
    return place.swap_in(), stats


def _label_into(
    spec: OutputSpec,
    source: EmbeddingsImage,
    place: LabelPlace,
    params: LabelParams,
    *,
    max_id: int | None,
    runner: BlockRunner,
) -> LabelStats:
    """Label ``source`` into the new label image ``spec`` (with growth, the block-local ids
    go to an array in the scratch group, removed with it)."""
    embeddings = zarr.open_array(store=_path(source.group, source.array), mode="r")
    out = zarr.open_array(store=_path(spec.group, spec.array), mode="r+")
    scratch_path = place.path(f"{place.scratch}/{SCRATCH}")
    # Block-local ids while the growth reads neighbours' halos.
    scratch = _scratch_like(out, scratch_path) if params.grow else None
    return label_blocks(
        embeddings, out, params=params, scratch=scratch, max_id=max_id, runner=runner
    )


def _path(group: str, inner: str) -> str:
    return os.path.join(group, *inner.split("/"))


def _scratch_like(out: Any, path: str) -> Any:
    """An empty array at ``path`` with ``out``'s shape, chunks, shards and dtype."""
    return zarr.create_array(
        store=path,
        shape=out.shape,
        chunks=out.chunks,
        shards=out.shards,
        dtype=out.dtype,
        fill_value=0,
        overwrite=True,
    )
