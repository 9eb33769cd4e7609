"""Multiscale pyramids: levels ``1``, ``2``... of an OME-Zarr image, written blockwise.

A 200 GB result opened as one full-resolution level cannot be browsed (napari and
neuroglancer load the coarsest level first and finer ones as you zoom), so every output
image gets a pyramid after it is complete (:func:`write_pyramid`). Level ``k`` is level
``k - 1`` downsampled (:mod:`._downsample`: the factors' rule, ``mean`` for embeddings,
``stride`` for labels) block by block:

- a **block** is one stored object of level ``k`` (a shard, or a chunk when unsharded:
  the same chunks and shards as level 0, with its dtype and codecs), so no two writes
  share a stored object; it is computed in **pieces** whose source is whole chunks of
  level ``k - 1`` (each read once), at most :data:`PIECE_ITEMS` elements. Memory is a few
  blocks and pieces (one per thread), whatever the volume's size.
- the OME-Zarr ``multiscales`` list a level only once it is whole, with its ``scale``
  (level 0's times the factors) and ``translation`` (moved to the block centre for
  ``mean``), and ``attributes["stitchsafe"]["pyramid"]`` records ``{"levels": n,
  "written": k, "method": ..., "complete": ...}``. An interrupted pass (Ctrl-C, a crash)
  is finished by the next :func:`write_pyramid` (``predict --resume``), from the first
  level not yet whole.
- an embeddings image whose tiles wrote level 1 with level 0 (:mod:`._tiled_level`: one
  shard per write box) starts from level 2, never reading level 0 back.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np
import zarr

from ..geometry import Box
from ..progress import progress_bar
from ._arrays import storage_shape
from ._downsample import PYRAMID_METHODS, downsample, piece_shape
from ._layout import OutputSpec
from ._levels import Pyramid, pyramid_of
from ._ome_image import multiscales
from ._place import place_listdir, place_remove
from ._pyramid_image import (
    PyramidImage,
    create_level,
    level_shapes,
    level_steps,
    open_pyramid_image,
)
from ._tiled_level import tiled_factors
from ._zarr_meta import zarr_node

__all__ = ["write_pyramid"]

# Blocks in memory at once, in bytes: a thread holds about three (the block, its encoded
# chunks, the stored shard), so GPU-sized tiles (1 GiB shards) get one thread.
BLOCKS_BYTES = 3 << 30


def write_pyramid(
    spec: OutputSpec,
    *,
    method: str | None = None,
    progress: bool = False,
    workers: int | None = None,
    like: str | None = None,
) -> Pyramid:
    """Write the levels ``1``, ``2``... of the complete image ``spec``, or finish them.

    Parameters
    ----------
    spec
        The image (its level 0 complete), as :func:`stitchsafe.io.create_output` and
        friends return it.
    method
        ``mean`` or ``stride``; default: ``stride`` for a label image (``image-label``
        metadata), ``mean`` otherwise.
    progress
        Show a progress bar per level on stderr.
    workers
        Threads computing blocks; default: the CPU count, at most 4, and at most as many
        as hold three blocks each in :data:`BLOCKS_BYTES` (3 GiB). Memory grows with them:
        about three blocks and a piece each.
    like
        The path (in ``spec.group``) of the image a label image belongs to: its levels
        follow that image's, as many (as OME-Zarr asks) and halved alike. Default: levels
        until the coarsest fits one chunk (:func:`stitchsafe.io.pyramid_factors`).

    Returns
    -------
    Pyramid
        The levels now listed. A pass already complete is not redone.

    Raises
    ------
    StitchsafeError
        The image group holds something at a level's path that is not a zarr array.
    """
    image = open_pyramid_image(spec)
    if method is None:
        method = "stride" if "image-label" in image.attrs["ome"] else "mean"
    if method not in PYRAMID_METHODS:
        raise ValueError(f"unknown pyramid method {method!r}; use one of {PYRAMID_METHODS}")
    steps = level_steps(spec.group, image, like)
    image, start = _begin(image, steps, method)
    for k in range(start, len(steps) + 1):
        try:
            _write_level(image, k, steps[k - 1], method, progress, workers)
        except KeyboardInterrupt as stop:
            stop.add_note(
                f"The pyramid of {spec.image} stopped at level {k} (levels 0-{k - 1} are "
                "whole and listed)."
            )
            raise
        image = _record(image, steps, method, written=k + 1)
    _remove_stale_levels(image.path, len(steps) + 1)
    return pyramid_of(spec.image, image.path, image.attrs)


def _first_to_write(image: PyramidImage, steps: list[tuple[int, ...]], method: str) -> int:
    """The first level the pass must write: after those an interrupted pass left whole
    (its record, its metadata and its arrays agree), else 1."""
    record = image.record.get("pyramid")
    n = len(steps) + 1
    if not isinstance(record, dict) or record.get("levels") != n or record.get("method") != method:
        return 1
    written = record.get("written")
    datasets = image.multiscale.get("datasets") or []
    if not isinstance(written, int) or not 1 <= written <= n or len(datasets) != written:
        return 1
    shapes = level_shapes(image.layout.shape, steps)
    for k in range(1, written):
        if datasets[k].get("path") != str(k) or not _level_has_shape(image, k, shapes[k]):
            return 1
    return written


def _level_has_shape(image: PyramidImage, k: int, shape: tuple[int, ...]) -> bool:
    """Whether the image holds a level-``k`` array of the spatial ``shape``."""
    path = os.path.join(image.path, str(k))
    node = zarr_node(path)
    if node is None or node[0] != "array":
        return False
    return zarr.open_array(store=path, mode="r").shape[image.lead :] == shape


def _begin(
    image: PyramidImage, steps: list[tuple[int, ...]], method: str
) -> tuple[PyramidImage, int]:
    """The image and the first level to write: where an interrupted pass stopped, else a
    new pass, recorded, from level 2 when the tiles wrote level 1 (else from level 1)."""
    start = _first_to_write(image, steps, method)
    if start == 1:
        start = 2 if _tiles_wrote_level_one(image, steps, method) else 1
        image = _record(image, steps, method, written=start)
    return image, start


def _tiles_wrote_level_one(image: PyramidImage, steps: list[tuple[int, ...]], method: str) -> bool:
    """Whether level 1 is whole already: the image's tiles wrote it with level 0
    (:mod:`._tiled_level`), by this pass's first factors, and its array has its shape."""
    if method != "mean" or not steps or tiled_factors(image.record) != steps[0]:
        return False
    return _level_has_shape(image, 1, level_shapes(image.layout.shape, steps)[1])


def _record(
    image: PyramidImage, steps: list[tuple[int, ...]], method: str, *, written: int
) -> PyramidImage:
    """List levels ``0..written-1`` in the ``multiscales`` and record the pass, at once."""
    total = [
        tuple(math.prod(s[a] for s in steps[:k]) for a in range(len(image.layout.shape)))
        for k in range(written)
    ]
    built = multiscales("levels", image.layout, total, centred=method == "mean")[0]["datasets"]
    multiscale = image.multiscale
    multiscale["datasets"] = [multiscale["datasets"][0], *built[1:written]]
    ome = dict(image.attrs["ome"])
    ome["multiscales"] = [multiscale, *ome["multiscales"][1:]]
    n = len(steps) + 1
    pyramid = {"levels": n, "written": written, "method": method, "complete": written == n}
    stitchsafe = {**image.record, "pyramid": pyramid}
    group = zarr.open_group(store=image.path, mode="r+")
    group.attrs.update({"ome": ome, "stitchsafe": stitchsafe})
    attrs = {**image.attrs, "ome": ome, "stitchsafe": stitchsafe}
    return PyramidImage(image.path, attrs, image.level0, image.lead, image.layout)


def _write_level(
    image: PyramidImage,
    k: int,
    step: tuple[int, ...],
    method: str,
    progress: bool,
    workers: int | None,
) -> None:
    """Level ``k`` from level ``k - 1``, one stored object (block) at a time."""
    src = zarr.open_array(store=os.path.join(image.path, str(k - 1)), mode="r")
    shape = tuple(-(-n // f) for n, f in zip(src.shape[image.lead :], step))
    dst = create_level(image, k, shape, method)
    factors = (1,) * image.lead + tuple(step)
    block = storage_shape(dst) or dst.shape
    piece = piece_shape(block, src.chunks, factors)
    count = math.prod(-(-n // b) for n, b in zip(dst.shape, block))
    bar = progress_bar(count, desc=f"pyramid level {k}", unit="block", enabled=progress)
    with bar:

        def one(box: Box) -> None:
            out = np.empty(box.shape, dst.dtype)
            for p in _grid(box.shape, piece):
                part = p.shift(box.begin)
                source = Box(
                    tuple(b * f for b, f in zip(part.begin, factors)),
                    tuple(min(e * f, n) for e, f, n in zip(part.end, factors, src.shape)),
                )
                data = np.asarray(src[source.to_slices()])
                out[p.to_slices()] = downsample(data, factors, method, dst.dtype)
            dst[box.to_slices()] = out
            bar.update()

        block_bytes = math.prod(block) * dst.dtype.itemsize
        threads = workers or min(4, os.cpu_count() or 1, BLOCKS_BYTES // (3 * block_bytes))
        _bounded_map(one, _grid(dst.shape, block), max(1, threads))


def _grid(shape: Sequence[int], step: Sequence[int]) -> Iterator[Box]:
    """The boxes of ``step`` that tile ``shape`` (clipped at its end), in C order.

    >>> [b.end for b in _grid((3, 4), (2, 4))]
    [(2, 4), (3, 4)]
    """
    ranges = [range(0, n, s) for n, s in zip(shape, step)]
    for begin in itertools.product(*ranges):
        end = tuple(min(b + s, n) for b, s, n in zip(begin, step, shape))
        yield Box(tuple(begin), end)


def _bounded_map(fn: Callable[[Box], None], items: Iterable[Box], workers: int) -> None:
    """``fn`` over ``items`` on ``workers`` threads, at most ``workers`` in flight.

    The first failure (or Ctrl-C) cancels what has not started, and the running calls are
    joined before it propagates.
    """
    if workers <= 1:
        for item in items:
            fn(item)
        return
    pending: set[Future[None]] = set()
    with ThreadPoolExecutor(workers, thread_name_prefix="stitchsafe-pyramid") as pool:
        try:
            for item in items:
                if len(pending) >= workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
                pending.add(pool.submit(fn, item))
            for f in pending:
                f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def _remove_stale_levels(path: str, levels: int) -> None:
    """Remove level arrays past the last one (left by an older pass); nothing else."""
    for name in place_listdir(path):
        if name.isdigit() and int(name) >= levels:
            node = zarr_node(os.path.join(path, name))
            if node is not None and node[0] == "array":
                place_remove(os.path.join(path, name))
