"""Where a run keeps its bookkeeping: one hidden folder per output container.

The done mask of an output image and the scratch arrays a run removes when it is complete
are not image data, so they live outside every OME-Zarr image, in
``<container>/.stitchsafe/<image path>/<name>``. The ``.stitchsafe`` folder has no
``zarr.json`` and no OME-Zarr metadata: the OME-Zarr readers (ome-zarr-py, napari's
plugins) follow only the metadata of images and ``labels`` groups and never reach it,
napari's builtin zarr reader skips names starting with a dot, and zarr's own listing of
the container finds no node there. The run's lock file lives beside the container
(:class:`stitchsafe.io.OutputLock`).

Outputs of earlier versions kept the done mask inside the image group
(``<image>/stitchsafe-done``); a resume of one still reads it there
(:func:`existing_done_mask`).
"""

from __future__ import annotations

import os

from ._place import place_isfile

__all__ = [
    "BOOKKEEPING",
    "DONE",
    "bookkeeping_path",
    "done_mask_path",
    "existing_done_mask",
]

BOOKKEEPING = ".stitchsafe"
DONE = "done"
# Where stitchsafe before the bookkeeping folder kept the done mask: inside the image.
LEGACY_DONE = "stitchsafe-done"


def bookkeeping_path(group: str | os.PathLike[str], image: str, name: str = "") -> str:
    """The path of ``name`` in the bookkeeping of image ``image`` of container ``group``.

    >>> bookkeeping_path("out.zarr", "embeddings/labels/instances", "done")
    'out.zarr/.stitchsafe/embeddings/labels/instances/done'
    >>> bookkeeping_path("out.zarr", "instances")
    'out.zarr/.stitchsafe/instances'
    """
    parts = [p for p in image.split("/") if p]
    return os.path.join(os.fspath(group), BOOKKEEPING, *parts, *([name] if name else []))


def done_mask_path(group: str | os.PathLike[str], image: str) -> str:
    """The path of the done mask of image ``image`` in container ``group``.

    >>> done_mask_path("out.zarr", "embeddings")
    'out.zarr/.stitchsafe/embeddings/done'
    """
    return bookkeeping_path(group, image, DONE)


def existing_done_mask(group: str | os.PathLike[str], image: str) -> str | None:
    """The done mask's path if one was written: at :func:`done_mask_path`, or inside the
    image group where earlier versions kept it; ``None`` when neither has metadata."""
    legacy = os.path.join(os.fspath(group), *image.split("/"), LEGACY_DONE)
    for path in (done_mask_path(group, image), legacy):
        if place_isfile(os.path.join(path, "zarr.json")):
            return path
    return None
