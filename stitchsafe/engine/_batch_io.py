"""Batches of tiles: grouped lazily, read as one padded array, written back as cropped chunks."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# write_block is looked up on the package at call time, so that a replacement (a test's
# failing disk) reaches every writer.
from .. import io as stitchsafe_io
from ..geometry import Tile, batch_reads
from ..io import OutputSpec, Volume, output_array, read_padded

__all__ = [
    "CountingSink",
    "Sink",
    "Transform",
    "iter_batches",
    "output_writer",
    "read_batch",
    "write_batch",
]

Transform = Callable[[np.ndarray], np.ndarray]
"""An intensity mapping applied to every tile before padding (a :class:`Normalization`)."""

Sink = Callable[[list[Tile], np.ndarray], None]
"""Where a batch's raw float32 outputs ``(N, C, *raw)`` go: written crops, or labels."""


def iter_batches(tiles: Iterable[Tile], batch_size: int) -> Iterator[list[Tile]]:
    """Group tiles into batches of ``batch_size``, keeping plan order (lazily: a plan of
    millions of tiles is never held in memory at once).

    >>> list(iter_batches(range(7), 3))
    [[0, 1, 2], [3, 4, 5], [6]]
    """
    it = iter(tiles)
    while batch := list(itertools.islice(it, batch_size)):
        yield batch


def read_batch(
    volume: Volume,
    tiles: Sequence[Tile],
    *,
    pad_mode: str,
    transform: Transform | None,
) -> np.ndarray:
    """The tiles' padded, normalised input boxes stacked as one ``(N, C, *read)`` batch
    (edge tiles' reads trimmed to what the batch's writes need: :func:`batch_reads`)."""
    return np.stack(
        [read_padded(volume, box, mode=pad_mode, transform=transform) for box in batch_reads(tiles)]
    )


def write_batch(output: OutputSpec, tiles: Sequence[Tile], y: np.ndarray, dtype: Any) -> None:
    """Crop each tile's raw output ``y[i]`` and write it, cast to ``dtype``, as whole chunks."""
    for t, yt in zip(tiles, y):
        crop = yt[(slice(None), *t.crop.to_slices())]
        stitchsafe_io.write_block(output, t.write, crop.astype(dtype, copy=False))


def output_writer(output: OutputSpec | None) -> Sink:
    """The sink that writes crops to ``output``, cast to its array's dtype.

    Raises
    ------
    ValueError
        Without an output (a run then needs a sink of its own).
    """
    if output is None:
        raise ValueError("run_plan needs an output or a sink")
    dtype = np.dtype(output_array(output).dtype)
    return functools.partial(write_batch, output, dtype=dtype)


@dataclass
class CountingSink:
    """A sink that counts the NaN or infinite values in each tile's kept crop, then hands
    the batch to ``sink``: the warning of a run whose model computed no number somewhere.

    >>> from stitchsafe.geometry import Box, Tile
    >>> seen = []
    >>> counting = CountingSink(lambda tiles, y: seen.append(len(tiles)))
    >>> tile = Tile((0,), read=Box((0,), (4,)), write=Box((0,), (2,)), crop=Box((1,), (3,)))
    >>> counting([tile], np.array([[[np.nan, 1.0, np.inf, 2.0]]]))
    >>> counting.total, seen  # the NaN lies outside the kept crop
    (1, [1])
    """

    sink: Sink
    counts: list[int] = field(default_factory=list)

    def __call__(self, tiles: list[Tile], y: np.ndarray) -> None:
        kept = [yt[(slice(None), *t.crop.to_slices())] for t, yt in zip(tiles, y)]
        self.counts.append(sum(int(k.size - np.count_nonzero(np.isfinite(k))) for k in kept))
        self.sink(tiles, y)  # list.append above: safe from several writer threads

    @property
    def total(self) -> int:
        """NaN or infinite values counted so far, all batches together."""
        return sum(self.counts)
