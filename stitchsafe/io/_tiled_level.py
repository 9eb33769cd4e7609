"""Level 1 of an embeddings pyramid written with each tile, so it is never read back.

The pyramid pass (:mod:`._pyramid`) makes level ``k`` from level ``k - 1`` once level 0 is
complete; for level 1 that means reading and decoding all of level 0 again, the largest
part of the pass. When the pyramid's first factors divide the write box, each write box
of level 0 covers whole level-1 voxels, so :func:`stitchsafe.io.write_block` writes the
block's mean into level 1 too, from the data it already holds, as one level-1 shard (the
write box over the factors). The values are those the pass computes (the same
:func:`stitchsafe.io.downsample` over the same voxels).

The image records it (``attributes["stitchsafe"]["level1"] = {"factors": [...]}``) before
any tile runs, and a tile is marked done only after both writes, so level 1 is whole
whenever level 0 is: :func:`stitchsafe.io.write_pyramid` then starts from level 2. An
interrupted run's ``--resume`` keeps writing level 1 (:func:`level_one_of` reads the
record back). Inner chunks of level 1 are level 0's, shrunk to divide its smaller shards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import zarr

from ._layout import OutputSpec
from ._pyramid_image import (
    PyramidImage,
    create_level,
    level_shapes,
    level_steps,
    open_pyramid_image,
)

__all__ = ["level_one_of", "tiled_level_one"]

RECORD = "level1"
"""The key of ``attributes["stitchsafe"]`` that says tiles write level 1."""


def tiled_level_one(spec: OutputSpec) -> OutputSpec:
    """Create level 1 of the new image ``spec`` for its tiles to write, when they can.

    They can when the image gets a pyramid at all and its first factors divide the write
    box (level 0's shard, or chunk when unsharded) on every axis. Returns ``spec`` with
    :attr:`OutputSpec.level1_factors` set, or ``spec`` unchanged.
    """
    image = open_pyramid_image(spec)
    steps = level_steps(spec.group, image, None)
    if not steps:
        return spec
    factors = steps[0]
    box = image.layout.chunks
    if any(b % f for b, f in zip(box, factors, strict=True)):
        return spec
    shape = level_shapes(image.layout.shape, steps)[1]
    chunks, shards = _level_one_storage(image, factors)
    create_level(image, 1, shape, "mean", chunks=chunks, shards=shards)
    group = zarr.open_group(store=image.path, mode="r+")
    group.attrs.update({"stitchsafe": {**image.record, RECORD: {"factors": list(factors)}}})
    return dataclasses.replace(spec, level1_factors=tuple(factors))


def level_one_of(spec: OutputSpec, record: Mapping[str, Any]) -> OutputSpec:
    """``spec`` with the level-1 factors that ``record`` (the image's
    ``attributes["stitchsafe"]``) says its tiles write; ``spec`` when it says none."""
    factors = tiled_factors(record)
    return spec if factors is None else dataclasses.replace(spec, level1_factors=factors)


def tiled_factors(record: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The factors of a level 1 that tiles write, from an image's ``stitchsafe`` record."""
    entry = record.get(RECORD)
    factors = entry.get("factors") if isinstance(entry, Mapping) else None
    if not isinstance(factors, list) or not all(isinstance(f, int) for f in factors):
        return None
    return tuple(factors)


def _level_one_storage(
    image: PyramidImage, factors: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Level 1's chunks and shards: one shard per write box, inner chunks no larger than
    level 0's (per axis the largest divisor of the shard that is not)."""
    level0, lead = image.level0, image.lead
    box = tuple(b // f for b, f in zip(image.layout.chunks, factors, strict=True))
    if level0.shards is None:
        return (*level0.chunks[:lead], *box), None
    inner = tuple(_divisor_at_most(s, c) for s, c in zip(box, level0.chunks[lead:], strict=True))
    return (*level0.chunks[:lead], *inner), (*level0.shards[:lead], *box)


def _divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is at most ``limit`` (1 at least).

    >>> _divisor_at_most(44, 32), _divisor_at_most(32, 32), _divisor_at_most(7, 4)
    (22, 32, 1)
    """
    return max(d for d in range(1, min(n, max(1, limit)) + 1) if n % d == 0)
