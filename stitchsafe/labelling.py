"""Labels for embeddings already on disk: find the image, resolve parameters, write labels.

``predict`` stores with its embeddings image (``attributes["stitchsafe"]``) the model's
``channel_roles`` and ``label_defaults`` (see :func:`stitchsafe.instances.label_defaults`),
so that labels derived later (``stitchsafe segment``) use the same roles and defaults.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any

from .blockwise import LabelStats, label_blocks
from .errors import StitchsafeError
from .instances import (
    FALLBACK_SEED_FOREGROUND_THRESHOLD,
    LABEL_DTYPES,
    LabelParams,
    label_defaults,
)
from .output import OutputSpec, mark_complete, prepare_labels
from .volume import _zarr_node

__all__ = ["EmbeddingsImage", "open_embeddings", "resolve_label_params", "write_labels"]

LABELS_NAME = "instances"
_DEFAULT_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}


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
        Channel count; spatial shape and spatial chunk shape.
    axes, scale, units
        Spatial axis names, voxel size and units (from the OME-Zarr metadata).
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
    scale: tuple[float, ...]
    units: tuple[str | None, ...]
    attributes: dict[str, Any]


def open_embeddings(group: str | os.PathLike[str], *, image: str = "embeddings") -> EmbeddingsImage:
    """Find the embeddings image ``image`` in ``group`` and check it can be labelled.

    Raises
    ------
    StitchsafeError
        The group or image is missing, the array has not 1 channel + 2 or 3 spatial axes,
        or predict did not finish writing it.
    """
    import zarr

    group = os.fspath(group)
    hint = "pass the zarr group that predict wrote (its --output) and the image's path (--image)"
    node = _zarr_node(group) if os.path.isdir(group) else None
    if node is None or node[:2] != ("group", 3):
        what = "does not exist" if not os.path.exists(group) else "is not a zarr v3 group"
        raise StitchsafeError(f"the input {group!r} {what}; {hint}.")
    parts = [p for p in image.strip("/").split("/") if p and p not in (".", "..")]
    image = "/".join(parts)
    img_node = _zarr_node(os.path.join(group, *parts)) if parts else None
    if img_node is None or img_node[0] != "group":
        raise StitchsafeError(
            f"{group!r} holds no embeddings image {image!r} (the embeddings array is "
            f"missing); {hint}."
        )
    attrs = img_node[2]
    ome: dict[str, Any] = attrs["ome"] if isinstance(attrs.get("ome"), dict) else {}
    ms = (ome.get("multiscales") or [{}])[0]
    datasets = ms.get("datasets") or [{"path": "0"}]
    level = str(datasets[0].get("path", "0"))
    array = f"{image}/{level}"
    arr_node = _zarr_node(os.path.join(group, *parts, level))
    if arr_node is None or arr_node[0] != "array":
        raise StitchsafeError(
            f"the embeddings array {array!r} is missing in {group!r}; {hint} (predict may "
            "not have run to the end)."
        )
    arr = zarr.open_array(store=os.path.join(group, *parts, level), mode="r")
    if arr.ndim not in (3, 4):
        raise StitchsafeError(
            f"the embeddings array {array!r} in {group!r} has shape {arr.shape}; labels need "
            "a channel axis followed by 2 or 3 spatial axes, (C, Y, X) or (C, Z, Y, X)."
        )
    stitchsafe_attrs = dict(attrs.get("stitchsafe") or {})
    if stitchsafe_attrs.get("complete") is False:
        raise StitchsafeError(
            f"the embeddings in {group!r} are incomplete (predict stopped before writing "
            "every tile); run predict again (with --overwrite) before deriving labels."
        )
    nd = arr.ndim - 1
    axes_meta = ms.get("axes") or []
    names = tuple(str(a.get("name")) for a in axes_meta[1:]) if len(axes_meta) == nd + 1 else ()
    units = tuple(a.get("unit") for a in axes_meta[1:]) if names else (None,) * nd
    transforms = (datasets[0].get("coordinateTransformations") or [{}])[0]
    scale = transforms.get("scale") if transforms.get("type") == "scale" else None
    return EmbeddingsImage(
        group=group,
        image=image,
        array=array,
        channels=int(arr.shape[0]),
        shape=tuple(int(s) for s in arr.shape[1:]),
        chunks=tuple(int(c) for c in arr.chunks[1:]),
        axes=names or _DEFAULT_AXES[nd],
        scale=tuple(float(s) for s in scale[1:]) if scale and len(scale) == nd + 1 else (1.0,) * nd,
        units=units,
        attributes=stitchsafe_attrs,
    )


def resolve_label_params(
    defaults: dict[str, Any] | None,
    channel_roles: Any,
    *,
    channels: int,
    threshold: float | None = None,
    min_size: int | None = None,
    foreground_threshold: float | None = None,
    seed_threshold: float | None = None,
    seed_foreground_threshold: float | None = None,
    grow: int | None = None,
) -> LabelParams:
    """Flags over stored defaults over fallbacks; checked against ``channels``.

    A ``seed_threshold`` flag switches seeding on even when the defaults have none
    (growth then defaults to 0 steps unless ``grow`` says otherwise).

    >>> p = resolve_label_params(None, ["embedding", "foreground"], channels=2, min_size=3)
    >>> p.threshold, p.min_size, p.channel_roles
    (1.5, 3, ('embedding', 'foreground'))
    """
    base = {**label_defaults(None), **(defaults or {})}
    if channel_roles is not None and not (
        isinstance(channel_roles, list | tuple) and all(isinstance(r, str) for r in channel_roles)
    ):
        raise StitchsafeError(f"channel roles must be a list of strings, got {channel_roles!r}.")
    params = LabelParams(
        threshold=base["threshold"] if threshold is None else threshold,
        min_size=base["min_size"] if min_size is None else min_size,
        foreground_threshold=(
            base["foreground_threshold"] if foreground_threshold is None else foreground_threshold
        ),
        channel_roles=None if channel_roles is None else tuple(channel_roles),
        seed_threshold=base.get("seed_threshold") if seed_threshold is None else seed_threshold,
        seed_foreground_threshold=(
            base.get("seed_foreground_threshold", FALLBACK_SEED_FOREGROUND_THRESHOLD)
            if seed_foreground_threshold is None
            else seed_foreground_threshold
        ),
        grow=base.get("grow", 0) if grow is None else grow,
    )
    params.check_channels(channels)
    return params


SCRATCH = "stitchsafe-local-ids"


def check_label_dtype(label_dtype: str) -> str:
    """``uint32`` or ``uint64``, else StitchsafeError."""
    if label_dtype not in LABEL_DTYPES:
        raise StitchsafeError(
            f"--label-dtype {label_dtype!r} is not one of {', '.join(LABEL_DTYPES)}."
        )
    return label_dtype


def _path(group: str, inner: str) -> str:
    return os.path.join(group, *inner.split("/"))


def _discard(spec: OutputSpec, name: str) -> None:
    import zarr

    shutil.rmtree(_path(spec.group, spec.image), ignore_errors=True)
    labels = zarr.open_group(store=os.path.dirname(_path(spec.group, spec.image)), mode="r+")
    previous: Any = labels.attrs.asdict().get("ome")
    ome: dict[str, Any] = dict(previous) if isinstance(previous, dict) else {}
    ome["labels"] = [n for n in ome.get("labels", []) if n != name]
    labels.attrs["ome"] = ome


def write_labels(
    source: EmbeddingsImage,
    *,
    params: LabelParams,
    label_dtype: str = "uint32",
    name: str = LABELS_NAME,
    overwrite: bool = False,
    progress: bool = True,
    num_workers: int | None = None,
    max_id: int | None = None,
    executor: Any = None,
) -> tuple[OutputSpec, LabelStats]:
    """Label ``source`` blockwise into the image-label ``<image>/labels/<name>``.

    Blocks are the embeddings' spatial chunks (the tile write boxes), and so are the label
    chunks. The label image is marked ``complete`` in its attributes when done. With a
    dask ``executor`` (:func:`stitchsafe.schedulers.open_executor`) the blocks run on its
    workers; a process pool (``--scheduler processes``) labels on threads here instead.
    """
    import zarr

    check_label_dtype(label_dtype)
    params.check_channels(source.channels)
    attrs = {"params": params.to_dict(), "source": source.array, "complete": False}
    spec = prepare_labels(
        source.group,
        image=source.image,
        name=name,
        shape=source.shape,
        chunks=source.chunks,
        dtype=label_dtype,
        axes=source.axes,
        overwrite=overwrite,
        attributes=attrs,
        scale=source.scale,
        units=source.units,
    )
    embeddings = zarr.open_array(store=_path(source.group, source.array), mode="r")
    out = zarr.open_array(store=_path(spec.group, spec.array), mode="r+")
    scratch_path = _path(spec.group, f"{spec.image}/{SCRATCH}")
    scratch = None
    if params.grow:
        # Block-local ids while the growth reads neighbours' halos; removed when done.
        scratch = zarr.create_array(
            store=scratch_path,
            shape=out.shape,
            chunks=out.chunks,
            dtype=out.dtype,
            fill_value=0,
            overwrite=True,
        )
    try:
        stats = label_blocks(
            embeddings,
            out,
            params=params,
            scratch=scratch,
            max_id=max_id,
            num_workers=num_workers,
            progress=progress,
            executor=executor if hasattr(executor, "share") else None,
        )
    except BaseException:
        # Half-written labels hold block-local ids: worse than none. We created this
        # label image a moment ago, so removing it deletes nothing of anyone else's.
        _discard(spec, name)
        raise
    shutil.rmtree(scratch_path, ignore_errors=True)
    mark_complete(
        spec,
        {**attrs, "complete": True, "objects": stats.objects, "seconds": round(stats.seconds, 3)},
    )
    return spec, stats
