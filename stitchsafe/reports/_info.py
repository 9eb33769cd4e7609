"""``stitchsafe info``: what an output written by ``predict`` (and ``segment``) holds.

Everything comes from the output itself: the image group's ``attributes["stitchsafe"]``
(plan, model, normalisation, run fingerprint, ``complete``), the per-tile done mask
(``.stitchsafe/<image>/done``: :func:`stitchsafe.io.done_mask_path`), the label images'
attributes and the arrays' metadata and files. Nothing is recomputed and no model is
loaded. The values returned are those of :mod:`._output_info`.
"""

from __future__ import annotations

import math
import os
import posixpath
from typing import Any

import numpy as np
import zarr

from ..errors import StitchsafeError
from ..io import (
    BOOKKEEPING,
    PhysicalScale,
    Pyramid,
    done_mask_path,
    existing_done_mask,
    image_axes,
    inner_path,
    is_url,
    labels_of,
    place_exists,
    place_isdir,
    place_listdir,
    place_size,
    read_pyramid,
    zarr_node,
)
from ._output_info import ArrayInfo, LabelsInfo, OutputInfo

__all__ = ["find_images", "read_info"]

_HINT = "pass the zarr group that stitchsafe predict wrote into (its --output)"
_MAX_DEPTH = 4  # how deep below PATH output images are looked for
# What the stored plan record holds besides the plan (reported on their own).
_NOT_PLAN = ("model", "input", "geometry_source", "physical")


def _is_output_image(attrs: dict[str, Any]) -> bool:
    """The attributes are those of an image group that ``predict`` wrote."""
    s = attrs.get("stitchsafe")
    return isinstance(s, dict) and isinstance(s.get("plan"), dict)


def find_images(group: str | os.PathLike[str]) -> list[str]:
    """Paths (inside ``group``) of the image groups that ``predict`` wrote, sorted: ``""``
    first when the group's root is one (a container that predict made).

    Arrays and non-zarr directories are not descended into, nor are the images found
    (below the root image too, only its ``labels`` are).
    """
    root = os.fspath(group)
    node = zarr_node(root) if place_isdir(root) else None
    found: list[str] = [""] if node is not None and _is_output_image(node[2]) else []
    if is_url(root):
        return sorted([*found, *_find_remote(root.rstrip("/"), "", 0)])
    for here, dirs, _files in os.walk(root):
        depth = 0 if here == root else os.path.relpath(here, root).count(os.sep) + 1
        keep = []
        for d in sorted(dirs):
            node = zarr_node(os.path.join(here, d))
            if node is None or node[0] != "group":
                continue
            if _is_output_image(node[2]):
                found.append(os.path.relpath(os.path.join(here, d), root).replace(os.sep, "/"))
            elif depth + 1 < _MAX_DEPTH:
                keep.append(d)
        dirs[:] = keep
    return sorted(found)


def _find_remote(root: str, inner: str, depth: int) -> list[str]:
    """:func:`find_images` below ``inner`` in a group at a URL (one listing per group)."""
    found = []
    for name in place_listdir(f"{root}/{inner}" if inner else root):
        path = f"{inner}/{name}" if inner else name
        node = zarr_node(f"{root}/{path}") if not name.startswith(".") else None
        if node is None or node[0] != "group":
            continue
        if _is_output_image(node[2]):
            found.append(path)
        elif depth + 1 < _MAX_DEPTH:
            found.extend(_find_remote(root, path, depth + 1))
    return found


def _locate(path: str, image: str | None) -> tuple[str, str]:
    """``(group, image)`` of the output image that ``path`` (and ``image``) name."""
    path = path.rstrip("/") if is_url(path) else path
    if not place_exists(path):
        raise StitchsafeError(f"{path!r} does not exist; {_HINT}.")
    node = zarr_node(path) if place_isdir(path) else None
    if node is None or node[0] != "group":
        what = "a zarr array" if node is not None else "not a zarr group"
        raise StitchsafeError(f"{path!r} is {what}; {_HINT}.")
    if image is not None:
        return path, _named_image(path, image)
    if _is_output_image(node[2]):
        parent, name = (posixpath if is_url(path) else os.path).split(_normal(path))
        above = zarr_node(parent or ".")
        made = place_isdir(os.path.join(path, BOOKKEEPING))  # its own bookkeeping
        if made or above is None or above[0] != "group":  # the container is the image
            return path, ""
        return parent or ".", name
    return path, _only_image(path)


def _named_image(path: str, image: str) -> str:
    """``image`` (``--input-key``) cleaned up, if it is an output image inside ``path``."""
    parts = [p for p in image.strip("/").split("/") if p and p not in (".", "..")]
    inner = zarr_node(os.path.join(path, *parts))
    if inner is None or not _is_output_image(inner[2]):
        others = find_images(path)
        listed = f" It holds: {', '.join(others)}." if others else ""
        raise StitchsafeError(
            f"{path!r} holds no output image {image!r} written by stitchsafe predict."
            f"{listed} Pass one of those as --input-key, or leave --input-key out."
        )
    return "/".join(parts)


def _only_image(path: str) -> str:
    """The output image inside ``path``: the only one, or ``embeddings`` among several."""
    images = find_images(path)
    if not images:
        raise StitchsafeError(
            f"{path!r} holds no output written by stitchsafe predict (no image group with a "
            f"stitchsafe plan in its attributes); {_HINT}."
        )
    if len(images) == 1:
        return images[0]
    for preferred in ("", "embeddings"):  # the root image, else predict's default name
        if preferred in images:
            return preferred
    raise StitchsafeError(
        f"{path!r} holds several stitchsafe outputs ({', '.join(images)}); choose one with "
        "--input-key."
    )


def _array_info(group: str, inner: str) -> ArrayInfo | None:
    """The array at ``inner`` inside ``group`` (``None`` if there is none)."""
    where = os.path.join(group, *inner.split("/"))
    node = zarr_node(where) if place_isdir(where) else None
    if node is None or node[0] != "array":
        return None
    arr = zarr.open_array(store=where, mode="r")
    stored = place_size(where)
    shards = getattr(arr, "shards", None)
    dtype = np.dtype(arr.dtype)
    return ArrayInfo(
        path=inner,
        shape=tuple(int(s) for s in arr.shape),
        dtype=str(dtype),
        chunks=tuple(int(c) for c in arr.chunks),
        shards=None if shards is None else tuple(int(s) for s in shards),
        stored_bytes=stored,
        nbytes=math.prod(arr.shape) * dtype.itemsize,
    )


def _normal(path: str) -> str:
    """``path`` normalised; a URL without a trailing slash (its ``//`` kept)."""
    return path.rstrip("/") if is_url(path) else os.path.normpath(path)


def _level0(attrs: dict[str, Any]) -> str:
    """Path of the full-resolution array of an OME-Zarr image (default ``0``)."""
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else {}
    ms = (ome.get("multiscales") or [{}])[0] if isinstance(ome, dict) else {}
    datasets = ms.get("datasets") or [{"path": "0"}]
    return str(datasets[0].get("path", "0"))


def _labels(group: str, image: str) -> list[LabelsInfo]:
    """The label images listed in the ``labels`` group of the image they belong to
    (:func:`stitchsafe.io.labels_of`: the raw image's, or ``image``'s own)."""
    home = inner_path(labels_of(group, image), "labels")
    labels_dir = os.path.join(group, *home.split("/"))
    node = zarr_node(labels_dir) if place_isdir(labels_dir) else None
    if node is None or node[0] != "group":
        return []
    ome = node[2].get("ome") if isinstance(node[2].get("ome"), dict) else {}
    names = [str(n) for n in (ome or {}).get("labels", [])]
    out = []
    for name in names:
        label_node = zarr_node(os.path.join(labels_dir, name))
        if label_node is None or label_node[0] != "group":
            continue
        attrs = label_node[2]
        if home != inner_path(image, "labels") and "stitchsafe" not in attrs:
            continue  # the raw image's own labels, not derived from these embeddings
        s: dict[str, Any] = attrs["stitchsafe"] if isinstance(attrs.get("stitchsafe"), dict) else {}
        array = inner_path(home, name, _level0(attrs))
        physical = _physical(attrs, array, _ndim(group, array), 0)
        out.append(LabelsInfo.from_record(name, array, s, physical))
    return out


def _ndim(group: str, inner: str) -> int | None:
    """Number of axes of the array at ``inner`` inside ``group`` (``None``: no array)."""
    try:
        return zarr.open_array(store=os.path.join(group, *inner.split("/")), mode="r").ndim
    except Exception:  # noqa: BLE001 - missing or unreadable: nothing to describe
        return None


def _physical(
    attrs: dict[str, Any], where: str, ndim: int | None, channels: int
) -> PhysicalScale | None:
    """Voxel size, units and translation of an image's spatial axes, as its OME-Zarr
    metadata says (what viewers show); ``None`` when that metadata is unreadable."""
    if ndim is None or ndim <= channels:
        return None
    try:
        return image_axes(attrs, where, ndim=ndim, spatial=ndim - channels)[1]
    except (StitchsafeError, ValueError, TypeError, KeyError):
        return None


def _done_mask(group: str, image: str) -> str:
    """The done mask's path inside ``group`` (where a run keeps it, or kept it)."""
    path = existing_done_mask(group, image) or done_mask_path(group, image)
    return os.path.relpath(path, group).replace(os.sep, "/")


def _tiles(group: str, image: str, planned: Any) -> tuple[int | None, int | None]:
    """``(done, total)`` tiles from the done mask; without one, ``(None, planned)``."""
    done_dir = os.path.join(group, *_done_mask(group, image).split("/"))
    if place_isdir(done_dir) and zarr_node(done_dir) is not None:
        mask = np.asarray(zarr.open_array(store=done_dir, mode="r")[...])
        return int(np.count_nonzero(mask)), int(mask.size)
    return None, (None if planned is None else int(planned))


def _settings(s: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """Pad mode, precision and embeddings dtype of the run."""
    settings = {
        "pad_mode": s.get("pad_mode", run.get("pad_mode")),
        "precision": run.get("precision"),
        "embeddings_dtype": run.get("embeddings_dtype"),
    }
    if s.get("labels_only"):
        settings["embeddings_dtype"] = "none written (labels only)"
    return settings


def _model(stored_plan: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The stored model record, with its checksum and where its geometry came from."""
    model = dict(stored_plan.get("model") or {})
    model["sha256"] = run.get("model_sha256")
    model["geometry_source"] = stored_plan.get("geometry_source")
    return model


def read_info(path: str | os.PathLike[str], *, image: str | None = None) -> OutputInfo:
    """Describe the output image that ``predict`` wrote under ``path``.

    Parameters
    ----------
    path
        The zarr v3 group predict wrote into (its ``--output``, or the input's own
        container), or the output image group itself.
    image
        Path of the image inside ``path``. Default: the only output image found (at most
        four levels deep), or ``embeddings`` when there are several.

    Returns
    -------
    OutputInfo

    Raises
    ------
    StitchsafeError
        ``path`` is missing, not a zarr group, or holds no output written by stitchsafe.
    """
    group, image = _locate(os.fspath(path), image)
    image_dir = os.path.join(group, *image.split("/"))
    node = zarr_node(image_dir)
    assert node is not None
    attrs = node[2]
    s: dict[str, Any] = attrs["stitchsafe"]
    stored_plan = dict(s.get("plan") or {})
    run: dict[str, Any] = s["run"] if isinstance(s.get("run"), dict) else {}
    labels = _labels(group, image)
    level0 = inner_path(image, _level0(attrs))
    inner = [level0, _done_mask(group, image), *(lab.array for lab in labels)]
    arrays = [_array_info(group, a) for a in inner]
    ndim = None if arrays[0] is None else len(arrays[0].shape)
    physical = _physical(attrs, image, ndim, 0 if s.get("labels_only") else 1)
    if s.get("labels_only"):
        # A labels-only run (predict --no-embeddings): the image is the labels themselves.
        record = LabelsInfo.from_record(image or "instances", level0, s, physical)
        labels = [record, *labels]
    tiles_done, tiles_total = _tiles(group, image, stored_plan.get("tiles"))
    seconds, complete = s.get("seconds"), s.get("complete")
    return OutputInfo(
        group=group,
        image=image,
        arrays=tuple(a for a in arrays if a is not None),
        plan={k: v for k, v in stored_plan.items() if k not in _NOT_PLAN},
        model=_model(stored_plan, run),
        input=dict(stored_plan.get("input") or {}),
        normalization=s.get("normalization"),
        settings=_settings(s, run),
        complete=None if complete is None else bool(complete),
        tiles_done=tiles_done,
        tiles_total=tiles_total,
        seconds=None if seconds is None else float(seconds),
        labels=tuple(labels),
        approximate=s.get("approximate"),
        physical=physical,
        pyramids=_pyramids(group, [image, *(lab.array.rpartition("/")[0] for lab in labels)]),
        nonfinite=_count(s.get("nonfinite")),
    )


def _count(value: Any) -> int | None:
    """A stored count, or ``None`` when absent or not a whole number."""
    return value if type(value) is int else None


def _pyramids(group: str, images: list[str]) -> tuple[Pyramid, ...]:
    """The resolution levels each of ``images`` lists (once each, in order)."""
    found = (read_pyramid(group, image) for image in dict.fromkeys(images))
    return tuple(p for p in found if p is not None)
