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
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..errors import StitchsafeError
from ..geometry import Box
from ..progress import progress_bar
from ._arrays import storage_shape
from ._downsample import PYRAMID_METHODS, downsample, piece_shape, pyramid_factors
from ._layout import ImageLayout, OutputSpec
from ._levels import Pyramid, level_transform, pyramid_of, read_pyramid
from ._ome_image import multiscales
from ._place import place_exists, place_isdir, place_listdir, place_remove
from ._zarr_meta import zarr_node

__all__ = ["write_pyramid"]

# Blocks in memory at once, in bytes: a thread holds about three (the block, its encoded
# chunks, the stored shard), so GPU-sized tiles (1 GiB shards) get one thread.
BLOCKS_BYTES = 3 << 30


@dataclass(frozen=True)
class _Image:
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
    image = _open_image(spec)
    if method is None:
        method = "stride" if "image-label" in image.attrs["ome"] else "mean"
    if method not in PYRAMID_METHODS:
        raise ValueError(f"unknown pyramid method {method!r}; use one of {PYRAMID_METHODS}")
    steps = _steps(spec.group, image, like)
    start = _first_to_write(image, steps, method)
    if start == 1:
        image = _record(image, steps, method, written=1)
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


def _steps(group: str, image: _Image, like: str | None) -> list[tuple[int, ...]]:
    """Each level's factors: those of the image ``like``, else until one chunk holds all."""
    steps = _steps_like(group, like, image.layout.shape)
    if steps is None:
        steps = pyramid_factors(
            image.layout.shape, image.layout.scale, image.level0.chunks[image.lead :]
        )
    return steps


def _steps_like(group: str, like: str | None, shape: Sequence[int]) -> list[tuple[int, ...]] | None:
    """The factors of each level of the image ``like`` over the level before it (from
    the spatial shapes it lists), when its level 0 has ``shape``; else ``None``.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> layout = ImageLayout(shape=(40, 50), chunks=(16, 16), axes=("y", "x"), channels=1)
    >>> from ._output import create_output
    >>> spec = create_output(f"{tmp.name}/o.zarr", layout, image="raw")
    >>> _ = write_pyramid(spec)
    >>> _steps_like(spec.group, "raw", (40, 50)), _steps_like(spec.group, "raw", (4, 5))
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


def _open_image(spec: OutputSpec) -> _Image:
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
    return _Image(path, attrs, level0, lead, layout)


def _shapes(shape: Sequence[int], steps: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Every level's spatial shape, level 0 first (ceil at each step)."""
    shapes = [tuple(shape)]
    for step in steps:
        shapes.append(tuple(-(-n // f) for n, f in zip(shapes[-1], step)))
    return shapes


def _first_to_write(image: _Image, steps: list[tuple[int, ...]], method: str) -> int:
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
    shapes = _shapes(image.layout.shape, steps)
    for k in range(1, written):
        node = zarr_node(os.path.join(image.path, str(k)))
        if datasets[k].get("path") != str(k) or node is None or node[0] != "array":
            return 1
        if (
            zarr.open_array(store=os.path.join(image.path, str(k)), mode="r").shape[image.lead :]
            != shapes[k]
        ):
            return 1
    return written


def _record(image: _Image, steps: list[tuple[int, ...]], method: str, *, written: int) -> _Image:
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
    return _Image(image.path, attrs, image.level0, image.lead, image.layout)


def _create_level(image: _Image, k: int, shape: Sequence[int], method: str) -> Any:
    """An empty level array ``k``, stored like level 0 (dtype, codecs, chunks, shards).

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
        chunks=src.chunks,
        shards=src.shards,
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


def _write_level(
    image: _Image,
    k: int,
    step: tuple[int, ...],
    method: str,
    progress: bool,
    workers: int | None,
) -> None:
    """Level ``k`` from level ``k - 1``, one stored object (block) at a time."""
    src = zarr.open_array(store=os.path.join(image.path, str(k - 1)), mode="r")
    shape = tuple(-(-n // f) for n, f in zip(src.shape[image.lead :], step))
    dst = _create_level(image, k, shape, method)
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
