"""The resolution levels an OME-Zarr image lists: :class:`Pyramid`, :class:`PyramidLevel`.

Read from the image's metadata and arrays (:func:`read_pyramid`), as ``stitchsafe info``
shows them, and returned by :func:`stitchsafe.io.write_pyramid`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import zarr

from ._place import place_isdir
from ._zarr_meta import zarr_node

__all__ = ["Pyramid", "PyramidLevel", "read_pyramid"]


@dataclass(frozen=True)
class PyramidLevel:
    """One resolution level as the OME-Zarr metadata lists it (spatial axes only)."""

    path: str
    shape: tuple[int, ...]
    scale: tuple[float, ...]
    translation: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "shape": list(self.shape),
            "scale": list(self.scale),
            "translation": list(self.translation),
        }


@dataclass(frozen=True)
class Pyramid:
    """The resolution levels of an image: those listed, and the record of the pass.

    Attributes
    ----------
    image
        The image group's path inside its zarr group.
    levels
        The levels the ``multiscales`` list (level 0 first); each is whole.
    method
        ``mean`` or ``stride``; ``None`` when no pyramid pass ran.
    planned
        How many levels the pass makes (level 0 included); ``None`` when none ran.
    complete
        Whether the pass finished; ``None`` when none ran (``--no-pyramid``).
    """

    image: str
    levels: tuple[PyramidLevel, ...]
    method: str | None
    planned: int | None
    complete: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "levels": [level.to_dict() for level in self.levels],
            "method": self.method,
            "planned": self.planned,
            "complete": self.complete,
        }

    def describe(self) -> str:
        """In words: the levels' shapes, the method and whether the pass finished.

        >>> level = PyramidLevel("0", (8, 8), (1.0, 1.0), (0.0, 0.0))
        >>> Pyramid("e", (level,), None, None, None).describe()
        'level 0 only (no pyramid written)'
        """
        shapes = ", ".join(" x ".join(map(str, level.shape)) for level in self.levels)
        if self.complete is None:
            return "level 0 only (no pyramid written)"
        n = len(self.levels)
        text = f"{n} level{'s' if n > 1 else ''} ({self.method}): {shapes}"
        if not self.complete:
            text += (
                f"; INCOMPLETE ({n} of {self.planned} levels written): predict --resume "
                "finishes it (segment: --overwrite)"
            )
        return text


def read_pyramid(group: str | os.PathLike[str], image: str) -> Pyramid | None:
    """The levels the OME-Zarr image ``image`` in ``group`` lists; ``None`` if it is none."""
    path = os.path.join(os.fspath(group), *image.split("/"))
    node = zarr_node(path) if place_isdir(path) else None
    if node is None or node[0] != "group":
        return None
    ome = node[2].get("ome")
    if not isinstance(ome, dict) or not ome.get("multiscales"):
        return None
    return pyramid_of(image, path, node[2])


def pyramid_of(image: str, path: str, attrs: dict[str, Any]) -> Pyramid:
    multiscale = attrs["ome"]["multiscales"][0]
    axes = multiscale.get("axes") or []
    lead = sum(1 for a in axes if isinstance(a, dict) and a.get("type") != "space")
    levels = []
    for dataset in multiscale.get("datasets") or []:
        where = os.path.join(path, *str(dataset.get("path", "")).split("/"))
        node = zarr_node(where) if isinstance(dataset, dict) else None
        if node is None or node[0] != "array":
            continue
        shape = zarr.open_array(store=where, mode="r").shape
        nd = len(shape) - lead
        scale = level_transform(dataset, "scale", lead, nd) or (1.0,) * nd
        translation = level_transform(dataset, "translation", lead, nd) or (0.0,) * nd
        levels.append(PyramidLevel(str(dataset["path"]), tuple(shape[lead:]), scale, translation))
    stitchsafe = attrs.get("stitchsafe")
    record = stitchsafe.get("pyramid") if isinstance(stitchsafe, dict) else None
    record = record if isinstance(record, dict) else {}
    return Pyramid(
        image=image,
        levels=tuple(levels),
        method=record.get("method"),
        planned=record.get("levels"),
        complete=record.get("complete"),
    )


def level_transform(
    dataset: dict[str, Any], kind: str, lead: int, nd: int
) -> tuple[float, ...] | None:
    """The spatial values of the dataset's ``kind`` transformation, if it has one.

    >>> level_transform({"coordinateTransformations": [{"type": "scale", "scale": [1, 2, 3]}]},
    ...            "scale", 1, 2)
    (2.0, 3.0)
    """
    for t in dataset.get("coordinateTransformations") or []:
        values = t.get(kind) if isinstance(t, dict) and t.get("type") == kind else None
        if isinstance(values, list) and len(values) == lead + nd:
            return tuple(float(v) for v in values[lead:])
    return None
