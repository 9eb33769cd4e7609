"""The image a pyramid pass works on: level 0, its metadata, each level's factors and arrays.

Shared by the pyramid pass (:mod:`._pyramid`) and by level 1 written tile by tile
(:mod:`._tiled_level`), so that both derive the same factors from the same image.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zarr

from ..errors import StitchsafeError
from ._arrays import storage_shape
from ._downsample import pyramid_factors
from ._layout import ImageLayout, OutputSpec
from ._levels import level_transform, read_pyramid
from ._place import place_exists, place_isdir, place_listdir, place_remove
from ._zarr_meta import zarr_node

__all__: list[str] = []


@dataclass(frozen=True)
class PyramidImage:
    """What a pyramid pass reads from an image group: level 0 and its metadata."""

    path: str
    attrs: dict[str, Any]
    level0: Any
    lead: int  # leading non-spatial axes (the channel axis)
    layout: ImageLayout

    @property
    def multiscale(self) -> dict[str, Any]:
        return dict(self.attrs["ome"]["multiscales"][0])

    @property
    def record(self) -> dict[str, Any]:
        stored = self.attrs.get("stitchsafe")
        return dict(stored) if isinstance(stored, dict) else {}


def level_steps(group: str, image: PyramidImage, like: str | None) -> list[tuple[int, ...]]:
    """Each level's factors: those of the image ``like``, else until one chunk holds all."""
    steps = steps_like(group, like, image.layout.shape)
    if steps is None:
        steps = pyramid_factors(
            image.layout.shape, image.layout.scale, image.level0.chunks[image.lead :]
        )
    return steps


def steps_like(group: str, like: str | None, shape: Sequence[int]) -> list[tuple[int, ...]] | None:
    """The factors of each level of the image ``like`` over the level before it (from
    the spatial shapes it lists), when its level 0 has ``shape``; else ``None``.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> layout = ImageLayout(shape=(40, 50), chunks=(16, 16), axes=("y", "x"), channels=1)
    >>> from ._output import create_output
    >>> from ._pyramid import write_pyramid
    >>> spec = create_output(f"{tmp.name}/o.zarr", layout, image="raw")
    >>> _ = write_pyramid(spec)
    >>> steps_like(spec.group, "raw", (40, 50)), steps_like(spec.group, "raw", (4, 5))
    ([(2, 2), (2, 2)], None)
    >>> tmp.cleanup()
    """
    pyramid = read_pyramid(group, like) if like is not None else None
    if pyramid is None or not pyramid.levels or pyramid.levels[0].shape != tuple(shape):
        return None
    shapes = [level.shape for level in pyramid.levels]
    return [
        tuple(max(1, round(a / b)) for a, b in zip(finer, coarser, strict=True))
        for finer, coarser in itertools.pairwise(shapes)
    ]


def open_pyramid_image(spec: OutputSpec) -> PyramidImage:
    """The image group of ``spec``, its attributes and level 0, as a pass needs them."""
    path = os.path.join(spec.group, *spec.image.split("/"))
    node = zarr_node(path)
    attrs = node[2] if node is not None and node[0] == "group" else {}
    ome = attrs.get("ome")
    if not isinstance(ome, dict) or not ome.get("multiscales"):
        raise StitchsafeError(f"{spec.image!r} in {spec.group!r} is not an OME-Zarr image.")
    multiscale = ome["multiscales"][0]
    datasets = multiscale["datasets"]
    level0 = zarr.open_array(store=os.path.join(path, datasets[0]["path"]), mode="r")
    axes = multiscale.get("axes") or []
    spatial = [a for a in axes if a.get("type") == "space"]
    lead = level0.ndim - len(spatial)
    nd = len(spatial)
    layout = ImageLayout(
        shape=level0.shape[lead:],
        chunks=(storage_shape(level0) or level0.shape)[lead:],
        axes=[a["name"] for a in spatial],
        dtype=str(level0.dtype),
        channels=level0.shape[0] if lead else None,
        scale=level_transform(datasets[0], "scale", lead, nd),
        units=[a.get("unit") for a in spatial],
        translation=level_transform(datasets[0], "translation", lead, nd),
    )
    return PyramidImage(path, attrs, level0, lead, layout)


def level_shapes(shape: Sequence[int], steps: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Every level's spatial shape, level 0 first (ceil at each step)."""
    shapes = [tuple(shape)]
    for step in steps:
        shapes.append(tuple(-(-n // f) for n, f in zip(shapes[-1], step)))
    return shapes


def create_level(
    image: PyramidImage,
    k: int,
    shape: Sequence[int],
    method: str,
    *,
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None = None,
) -> Any:
    """An empty level array ``k``, stored like level 0 (dtype, codecs, chunks, shards;
    ``chunks`` given: those chunks and ``shards`` instead).

    Means (of embeddings, intensities) are almost never constant over a chunk, so every
    chunk is stored without comparing it with the fill value first (as level 0 is); a
    strided labels level keeps zarr's default, which leaves background chunks out.
    """
    path = os.path.join(image.path, str(k))
    there = place_exists(path, links=True)
    node = zarr_node(path) if there else None
    if there and node is None and _half_made(path):
        place_remove(path)  # a killed run was creating this level
    elif there and (node is None or node[0] != "array"):
        raise StitchsafeError(
            f"{path!r} exists and is not a zarr array, so the pyramid's level {k} cannot be "
            "written there; move it away and rerun with --resume (nothing was deleted)."
        )
    src = image.level0
    return zarr.create_array(
        store=path,
        shape=(*src.shape[: image.lead], *shape),
        chunks=src.chunks if chunks is None else tuple(chunks),
        shards=src.shards if chunks is None else (None if shards is None else tuple(shards)),
        dtype=src.dtype,
        fill_value=src.fill_value,
        compressors=src.compressors,
        filters=src.filters,
        serializer=src.serializer,
        dimension_names=src.metadata.dimension_names,
        config={"write_empty_chunks": method == "mean"},
        overwrite=True,
    )


def _half_made(path: str) -> bool:
    """A folder that a run killed while it created a level left: no ``zarr.json``, nothing
    but zarr's unfinished writes (``*.partial``) in it, if anything."""
    return place_isdir(path) and all(n.endswith(".partial") for n in place_listdir(path))
