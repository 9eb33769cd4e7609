"""OME-Zarr 0.5 image groups on zarr v3: where they may go, their metadata, their creation.

An image group holds the ``ome`` metadata, stitchsafe's own ``stitchsafe`` attributes and
one level-0 array ``"0"``. Existing images are replaced only when stitchsafe wrote them,
and never when they hold a file that the run reads (:func:`refuse_replacing_reads`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import zarr

from ..errors import StitchsafeError
from ._arrays import forget_arrays
from ._layout import ImageLayout
from ._place import place_exists, place_isdir, place_listdir, place_remove
from ._stores import check_remote_output, is_url
from ._zarr_meta import zarr_node

__all__ = [
    "check_output_group",
    "clear_partial_writes",
    "inner_path",
    "refuse_replacing_reads",
]


def image_parts(image: str) -> list[str]:
    """The path of an image inside its group, split and checked; ``[]`` for the group's
    root (``""``: the container is the image itself).

    >>> image_parts("/labels/instances/"), image_parts("")
    (['labels', 'instances'], [])
    """
    parts = [p for p in image.strip("/").split("/") if p]
    if any(p in (".", "..") or p.startswith("__") for p in parts):
        raise StitchsafeError(
            f"invalid output image name {image!r}; use a plain name such as 'embeddings'."
        )
    return parts


def inner_path(*names: str) -> str:
    """A path inside a zarr group, from parts of which some may be the root (``""``).

    >>> inner_path("", "0"), inner_path("embeddings", "labels/instances", "0")
    ('0', 'embeddings/labels/instances/0')
    """
    return "/".join(p for name in names for p in name.split("/") if p)


def check_output_group(group: str) -> None:
    """Refuse an output path that exists and is not a zarr v3 group (or an empty folder).

    A folder holding nothing but zarr's partial writes (``*.partial``: its creation was
    stopped, e.g. by a full disk, before any metadata was written) holds nobody's data:
    they are removed and the folder counts as empty. An output URL is checked first
    (a bucket that exists, credentials that may list it).
    """
    check_remote_output(group)
    if not place_exists(group):
        return
    what = None
    if not place_isdir(group):
        what = "a file"
    else:
        node = zarr_node(group)
        if node is None:
            if not clear_partial_writes(group):
                what = "a non-empty directory that is not a zarr group"
        elif node[1] != 3:
            what = f"a zarr v2 {node[0]}, which cannot hold OME-Zarr 0.5 (zarr v3) output"
        elif node[0] != "group":
            what = "a zarr array, not a group"
    if what is not None:
        raise StitchsafeError(
            f"the output {group!r} already exists and is {what}. Choose a new output path "
            "(a new .zarr directory) or an existing zarr v3 group."
        )


def clear_partial_writes(folder: str) -> bool:
    """Whether ``folder`` holds nothing but zarr's partial writes (``*.partial`` files) or
    nothing at all; if so, they are removed (the folder itself is kept).

    A group's creation stopped (e.g. by a full disk) before its ``zarr.json`` was written
    leaves such a folder: nobody's data. zarr writes a group's metadata before anything
    below it, so a folder with subfolders was not left that way. An object store has no
    partial writes (an object is written whole) and no empty folders: there ``folder``
    qualifies when nothing is below it.
    """
    if is_url(folder):
        return not place_isdir(folder)
    if os.path.islink(folder):
        return False
    with os.scandir(folder) as entries:
        found = [(e.path, e.is_file(follow_symlinks=False)) for e in entries]
    if not all(is_file and path.endswith(".partial") for path, is_file in found):
        return False
    for path, _ in found:
        os.remove(path)
    return True


def remove_existing(group: str, parts: Sequence[str], *, overwrite: bool) -> None:
    """Refuse an existing image, or (``overwrite``) delete it if stitchsafe wrote it.

    The root image (``parts`` empty) exists once the group has OME-Zarr or stitchsafe
    attributes; deleting it empties the container (its labels and bookkeeping too).
    """
    image = "/".join(parts) or "the root image"
    image_dir = os.path.join(group, *parts)
    if not place_exists(image_dir):
        return
    existing = zarr_node(image_dir)
    if not parts and (existing is None or not {"ome", "stitchsafe"} & set(existing[2])):
        return  # a plain group (or an empty folder): no image at the root yet
    if not overwrite:
        raise StitchsafeError(
            f"the output {group!r} already holds {image!r}. Pass --overwrite to replace "
            "it, or choose another output path or image name."
        )
    if existing is None or "stitchsafe" not in existing[2]:
        raise StitchsafeError(
            f"{image!r} in {group!r} was not written by stitchsafe, so --overwrite will "
            "not delete it. Choose another output image name."
        )
    forget_arrays(group)
    if parts:
        place_remove(image_dir)
        return
    if is_url(group):
        for name in place_listdir(group):
            place_remove(f"{group.rstrip('/')}/{name}")
        return
    for entry in os.scandir(group):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.remove(entry.path)


def refuse_replacing_reads(
    group: str, image: str, reads: Mapping[str, str | None], *, overwrite: bool
) -> None:
    """Refuse to write (or, ``overwrite``, replace) ``image`` in ``group`` when it holds a
    file that the run reads; call it before anything is deleted.

    ``reads`` maps what each path is (``"the input"``, ``"the model"``) to the path; paths
    are compared after resolving symbolic links. Deleting the image would leave the run
    reading an emptied array (zeros) or a missing file.

    >>> refuse_replacing_reads("out.zarr", "embeddings", {"the input": "vol.zarr/0"},
    ...                        overwrite=True)
    >>> refuse_replacing_reads("out.zarr", "embeddings",
    ...                        {"the input": "out.zarr/embeddings/raw"}, overwrite=True)
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the input 'out.zarr/embeddings/raw' lies inside ...
    """
    image_dir = os.path.join(group, *image_parts(image))
    image = image or "the root image"
    real_image = _resolved(image_dir)
    for what, path in reads.items():
        if path is None:
            continue
        real = _resolved(os.fspath(path))
        if not _inside(real, real_image):
            continue
        action = (
            "which --overwrite would delete before the run reads it"
            if overwrite
            else "which this run would write into while it reads it"
        )
        raise StitchsafeError(
            f"{what} {os.fspath(path)!r} lies inside the output image {image!r} of "
            f"{group!r}, {action}. Nothing was deleted. Write the output elsewhere (predict: "
            f"another --output), or move {what} out of {image_dir!r} first."
        )


def _resolved(path: str) -> str:
    """``path`` with symbolic links resolved; a URL as it is, without a trailing slash."""
    return path.rstrip("/") if is_url(path) else os.path.realpath(path)


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (both resolved, or both URLs).

    >>> _inside("s3://b/out.zarr/embeddings/raw", "s3://b/out.zarr"), _inside("a/b", "a/bc")
    (True, False)
    """
    if is_url(path) or is_url(folder):
        return path == folder or path.startswith(folder + "/")
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def multiscales(
    name: str,
    layout: ImageLayout,
    factors: Sequence[Sequence[float]] | None = None,
    *,
    centred: bool = False,
) -> list[dict[str, Any]]:
    """OME-Zarr 0.5 ``multiscales``: one dataset per level (``"0"``, ``"1"``...), with a
    ``c`` axis or not.

    ``factors`` are each level's downsampling factors per spatial axis, level 0 first (all
    1); default: level 0 alone. A level's voxel size is ``layout.scale`` times its factors;
    its translation is ``layout.translation``, moved by ``(factor - 1) / 2`` level-0 voxels
    when ``centred`` (a level voxel then stands for the centre of the block it averages, as
    in mean downsampling; a strided level keeps level 0's). The translation is written when
    it is not zero; the channel axis has scale 1, no unit and no translation.

    >>> layout = ImageLayout(shape=(4,), chunks=(4,), axes=("x",), units=("nanometer",))
    >>> multiscales("instances", layout)[0]["axes"]
    [{'name': 'x', 'type': 'space', 'unit': 'nanometer'}]
    >>> layout = ImageLayout(shape=(8, 8), chunks=(4, 4), axes=("y", "x"), channels=2,
    ...                      scale=(2, 0.5), translation=(10, 0))
    >>> for d in multiscales("e", layout, [(1, 1), (1, 2)], centred=True)[0]["datasets"]:
    ...     print(d["path"], *(list(t.values())[1] for t in d["coordinateTransformations"]))
    0 [1.0, 2.0, 0.5] [0.0, 10.0, 0.0]
    1 [1.0, 2.0, 1.0] [0.0, 10.0, 0.25]
    """
    channel = layout.channels is not None
    scale = tuple(layout.scale or ())  # never None once the layout is built
    units = tuple(layout.units or ())
    origin = tuple(layout.translation or ())
    axis_meta: list[dict[str, Any]] = [{"name": "c", "type": "channel"}] if channel else []
    for axis, unit in zip(layout.axes, units, strict=True):
        entry: dict[str, Any] = {"name": axis, "type": "space"}
        if unit is not None:
            entry["unit"] = unit
        axis_meta.append(entry)
    lead = [1.0] if channel else []
    datasets = []
    for level, level_factors in enumerate(factors or [(1,) * len(scale)]):
        f = [float(v) for v in level_factors]
        if len(f) != len(scale):
            raise ValueError(f"level {level}: factors {tuple(f)} for {len(scale)} axes")
        shift = [(v - 1) / 2 * s if centred else 0.0 for v, s in zip(f, scale)]
        translation = [o + d for o, d in zip(origin, shift)]
        transforms: list[dict[str, Any]] = [
            {"type": "scale", "scale": [*lead, *(s * v for s, v in zip(scale, f))]}
        ]
        if any(translation):
            lead_t = [0.0] if channel else []
            transforms.append({"type": "translation", "translation": [*lead_t, *translation]})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    return [{"name": name, "axes": axis_meta, "datasets": datasets}]


def create_image_group(
    group: str,
    parts: Sequence[str],
    layout: ImageLayout,
    *,
    ome: dict[str, Any],
    compressors: Any,
    overwrite: bool,
) -> None:
    """Create the image group ``parts`` in ``group`` (a zarr v3 group, made if missing)
    with ``ome`` and ``stitchsafe`` attributes and an empty level-0 array ``0``."""
    check_output_group(group)
    remove_existing(group, parts, overwrite=overwrite)
    if not parts:  # the container is the image: its root holds the metadata and levels
        attributes = {"ome": ome, "stitchsafe": dict(layout.attributes or {})}
        if zarr_node(group) is None:  # metadata and attributes in one write
            root = zarr.create_group(store=group, attributes=attributes, zarr_format=3)
        else:
            root = zarr.open_group(store=group, mode="r+", zarr_format=3)
            root.attrs.update(attributes)
        _create_level0(root, layout, compressors)
        return
    root = zarr.open_group(store=group, mode="a", zarr_format=3)
    parent = root
    for p in parts[:-1]:
        parent = parent.require_group(p)
    create_image(parent, parts[-1], layout, ome=ome, compressors=compressors)


def create_image(
    parent: Any, name: str, layout: ImageLayout, *, ome: dict[str, Any], compressors: Any
) -> None:
    """Create the image group ``name`` in the open zarr group ``parent``, with its array."""
    img = parent.create_group(
        name, attributes={"ome": ome, "stitchsafe": dict(layout.attributes or {})}
    )
    _create_level0(img, layout, compressors)


def _create_level0(img: Any, layout: ImageLayout, compressors: Any) -> None:
    """The empty level-0 array ``0`` of the open image group ``img``."""
    img.create_array(
        "0",
        shape=layout.array_shape,
        chunks=layout.array_chunks,
        shards=layout.array_shards,
        dtype=layout.dtype,
        fill_value=0,
        compressors=compressors,
        dimension_names=layout.dimension_names,
    )
