"""Tile plans on the period lattice: tile shapes, tiles (read, write, crop) and the plan.

Nothing here imports torch, dask or zarr. All boxes are half-open ``[begin, end)`` in
voxel coordinates of the volume, spatial axes only (``(Z, Y, X)`` or ``(Y, X)``).

The rule this module enforces (Rumberger et al., ICCV 2021): stitched output equals one
whole-volume forward pass iff every tile's *input* origin lies on the period lattice of
the whole-volume pass, and each kept output region is a multiple of the period long.
The whole-volume pass reads from ``-halo_lo``, so its output starts at voxel 0; a tile
whose write box begins at a multiple of the period and whose crop starts at raw-output
voxel 0 therefore sits on that lattice.

Approximate tiling (a same-padded model, tiled with a measured halo wider than its own)
gives the plan the model's own geometry as ``native``: then no tile reads past the input
of the model's own whole-volume pass. A border tile shifts inward, by a multiple of the
period, and its crop moves with it, so the network's own padding acts at the image border
as in one whole-image pass, instead of padding made with the pad mode.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import StitchsafeError
from ._box import Box
from ._model_geometry import ModelGeometry
from ._shape import Shape, as_shape

__all__ = [
    "Plan",
    "Tile",
    "batch_reads",
    "check_tile_shape",
    "clamp_tile_shape",
    "make_plan",
]


def check_tile_shape(tile_shape: Sequence[int], geometry: ModelGeometry) -> Shape:
    """Validate an output write box: a positive multiple of the period on every axis.

    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(2, 2)] * 2)
    >>> check_tile_shape((8, 12), g)
    (8, 12)
    >>> check_tile_shape((8, 10), g)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: ... nearest valid values are 8 and 12.
    """
    shape = as_shape(tile_shape, geometry.dims, "--tile-shape")
    for a, (w, p) in enumerate(zip(shape, geometry.period)):
        if w < 1 or w % p:
            lower = max(p, (w // p) * p)
            upper = max(p, -(-w // p) * p)
            near = f"{lower}" if lower == upper else f"{lower} and {upper}"
            raise StitchsafeError(
                f"--tile-shape {shape} is not a multiple of the period {geometry.period} on axis "
                f"{a}: {w} is not a multiple of {p}; nearest valid values are {near}."
            )
    return shape


def clamp_tile_shape(tile_shape: Shape, volume_shape: Sequence[int], period: Shape) -> Shape:
    """A tile no larger than the volume needs: per axis the smallest period multiple covering it.

    A larger tile only reads and computes padding (and may not fit in memory); the stitched
    result is the same, since every tile stays on the period lattice.

    >>> clamp_tile_shape((1024, 64), (500, 300), (4, 4))
    (500, 64)
    >>> clamp_tile_shape((1024, 64), (501, 300), (4, 4))
    (504, 64)
    """
    return tuple(
        min(w, max(p, -(-v // p) * p)) for w, v, p in zip(tile_shape, volume_shape, period)
    )


@dataclass(frozen=True)
class Tile:
    """One unit of work.

    ``read`` is the input box (volume coordinates; parts outside the volume are padding),
    ``write`` the output voxels kept (inside the volume), and ``crop`` the box inside the
    tile's raw output that lands on ``write`` (it starts at 0 unless the tile was shifted
    inward: approximate tiling's border tiles). ``least_read``, for a tile of an exact
    plan clipped at the volume's far edge, is the smallest valid box from the same begin
    whose raw output still covers ``crop`` (the same lattice, so the same values); None
    where that is ``read``. :func:`batch_reads` says what a batch reads.
    """

    index: Shape
    read: Box
    write: Box
    crop: Box
    least_read: Box | None = None


def batch_reads(tiles: Sequence[Tile]) -> list[Box]:
    """The boxes a batch of tiles reads: each tile's read, trimmed at its far end to the
    largest ``least_read`` of the batch (a batch stacks into one array of one shape).

    An edge tile run alone, or with other edge tiles, computes only what its write needs;
    with full tiles it reads their box.

    >>> from stitchsafe.geometry import unet_geometry
    >>> p = make_plan((10,), unet_geometry([(2,)]), tile_shape=8)
    >>> [t.read.shape for t in p], [b.shape for b in batch_reads([p.tile(1)])]
    ([(24,), (24,)], [(18,)])
    >>> [b.shape for b in batch_reads(list(p))]
    [(24,), (24,)]
    """
    extent = tuple(max(axis) for axis in zip(*((t.least_read or t.read).shape for t in tiles)))
    return [Box.from_shape(extent, t.read.begin) for t in tiles]


@dataclass(frozen=True)
class Plan:
    """Volume shape + model geometry + tile shape -> ordered tiles and output chunking.

    Tiles are generated lazily (``len(plan)``, ``plan.tile(i)``, iteration) so that plans
    of millions of tiles cost no memory.

    ``native`` (approximate tiling only) is the model's own geometry when ``geometry`` is
    wider: reads then stay inside ``canvas``, the input of the model's own whole-volume
    pass (from ``-native.halo_lo``), border tiles shift inward, and the raw output is the
    model's own (:attr:`model_geometry`).

    Examples
    --------
    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(2, 2)] * 2)
    >>> p = make_plan((10, 9), g, tile_shape=(4, 8))
    >>> len(p), p.grid_shape, p.read_shape, p.pad
    (6, (3, 2), (44, 48), ((20, 22), (20, 27)))
    >>> t = p.tile(5)
    >>> t.index, t.read, t.write, t.crop.shape
    ((2, 1), Box(begin=(-12, -12), end=(32, 36)), Box(begin=(8, 8), end=(10, 9)), (2, 1))
    """

    volume_shape: Shape
    geometry: ModelGeometry
    tile_shape: Shape
    read_shape: Shape
    raw_output_shape: Shape
    exact: bool = True
    native: ModelGeometry | None = None
    grid_shape: Shape = field(init=False)
    canvas: Shape = field(init=False)

    def __post_init__(self) -> None:
        grid = tuple(-(-v // w) for v, w in zip(self.volume_shape, self.tile_shape))
        object.__setattr__(self, "grid_shape", grid)
        canvas = self.model_geometry.input_for_output(self.volume_shape)
        object.__setattr__(self, "canvas", canvas)

    @property
    def model_geometry(self) -> ModelGeometry:
        """The geometry of the model the tiles run: ``native`` if given, else ``geometry``."""
        return self.native if self.native is not None else self.geometry

    @property
    def dims(self) -> int:
        return len(self.volume_shape)

    @property
    def chunks(self) -> Shape:
        """Output shard shape: the tile's write box, so no two tiles share a stored object.

        Inside it, the stored images cut bounded inner chunks (``stitchsafe.io.ChunkPolicy``).
        """
        return self.tile_shape

    def __len__(self) -> int:
        return math.prod(self.grid_shape)

    def tile_at(self, index: Sequence[int]) -> Tile:
        """The tile at grid position ``index``."""
        wb = tuple(i * w for i, w in zip(index, self.tile_shape))
        we = tuple(min(b + w, v) for b, w, v in zip(wb, self.tile_shape, self.volume_shape))
        write = Box(wb, we)
        begin = tuple(self._read_begin(a, b, e) for a, (b, e) in enumerate(zip(wb, we)))
        lo = self.model_geometry.halo_lo
        crop = Box.from_shape(write.shape, tuple(w - r - h for w, r, h in zip(wb, begin, lo)))
        return Tile(
            tuple(index),
            Box.from_shape(self.read_shape, begin),
            write,
            crop,
            self._least(write, begin),
        )

    def _least(self, write: Box, begin: Shape) -> Box | None:
        """An exact plan's clipped edge tile: the smallest valid read covering its write."""
        if not self.exact or self.native is not None or write.shape == self.tile_shape:
            return None
        need = self.geometry.input_for_output(write.shape)
        least = tuple(min(n, r) for n, r in zip(need, self.read_shape))
        return None if least == self.read_shape else Box.from_shape(least, begin)

    def _read_begin(self, axis: int, write_begin: int, write_end: int) -> int:
        """Where a tile writing ``[write_begin, write_end)`` on ``axis`` starts reading.

        ``write_begin - halo_lo``; with ``native``, shifted inward to stay inside the canvas
        (by a multiple of the period, so that the tile stays on the lattice) when the
        shifted tile's raw output still covers its write box.
        """
        begin = write_begin - self.geometry.halo_lo[axis]
        if self.native is None:
            return begin
        lo, p = self.native.halo_lo[axis], self.geometry.period[axis]
        last = -lo + (self.canvas[axis] - self.read_shape[axis]) // p * p
        shifted = max(-lo, min(begin, last))
        out_begin = shifted + lo
        if out_begin <= write_begin and out_begin + self.raw_output_shape[axis] >= write_end:
            return shifted
        return begin

    def tile(self, i: int) -> Tile:
        """The ``i``-th tile in C order of the grid."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        index = []
        for g in reversed(self.grid_shape):
            index.append(i % g)
            i //= g
        return self.tile_at(tuple(reversed(index)))

    def __iter__(self) -> Iterator[Tile]:
        for index in itertools.product(*(range(g) for g in self.grid_shape)):
            yield self.tile_at(index)

    @property
    def pad(self) -> tuple[tuple[int, int], ...]:
        """Padded extents ``(before, after)`` per axis: how far reads leave the volume."""
        out = []
        for a, (w, v) in enumerate(zip(self.tile_shape, self.volume_shape)):
            first = self._read_begin(a, 0, min(w, v))
            last_write = (self.grid_shape[a] - 1) * w
            last = self._read_begin(a, last_write, min(last_write + w, v)) + self.read_shape[a]
            out.append((max(0, -first), max(0, last - v)))
        return tuple(out)

    @property
    def padded_shape(self) -> Shape:
        return tuple(v + lo + hi for v, (lo, hi) in zip(self.volume_shape, self.pad))

    @property
    def halo_overhead(self) -> float:
        """Input voxels read per output voxel written (1.0 would be no overhead)."""
        return len(self) * math.prod(self.read_shape) / math.prod(self.volume_shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (used by ``--json`` and stored with outputs)."""
        g = self.geometry
        return {
            "volume_shape": list(self.volume_shape),
            "period": list(g.period),
            "halo": [list(h) for h in g.halo],
            "remainder": list(g.remainder),
            "valid_input": {"min": list(g.min_input), "step": list(g.step)},
            "tile_shape": list(self.tile_shape),
            "read_shape": list(self.read_shape),
            "raw_output_shape": list(self.raw_output_shape),
            "grid_shape": list(self.grid_shape),
            "tiles": len(self),
            "chunks": list(self.chunks),
            "pad": [list(p) for p in self.pad],
            "padded_shape": list(self.padded_shape),
            "halo_overhead": round(self.halo_overhead, 4),
            "distinguishable_objects": g.distinguishable_objects,
            "exact": self.exact,
            # How tiles meet the image border: reads past it are padded with the pad mode,
            # or (approximate tiling) border tiles shift inside the model's own input.
            "border": "padded" if self.native is None else "inside",
        }


def make_plan(
    volume_shape: Sequence[int],
    geometry: ModelGeometry,
    *,
    tile_shape: Sequence[int] | int,
    exact: bool = True,
    native: ModelGeometry | None = None,
) -> Plan:
    """Tile plan on the global lattice anchored at the volume origin.

    Parameters
    ----------
    volume_shape
        Spatial shape of the volume, ``(Z, Y, X)`` or ``(Y, X)``.
    geometry
        The model's geometry.
    tile_shape
        Output write box per tile; must be a multiple of the period unless ``exact`` is
        false (only for negative controls and naive-tiling comparisons).
    native
        Approximate tiling: the model's own geometry, when ``geometry`` is the same with a
        wider halo (``approximate.widen``). Reads then stay inside the model's own
        whole-volume input (border tiles shift inward), as :class:`Plan` explains.

    Examples
    --------
    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(2,)])
    >>> p = make_plan((7,), g, tile_shape=4)
    >>> [(t.read.begin[0], t.write.begin[0], t.write.end[0]) for t in p]
    [(-8, 0, 4), (-4, 4, 7)]
    """
    vshape = tuple(int(v) for v in volume_shape)
    if len(vshape) != geometry.dims:
        raise StitchsafeError(
            f"the volume has {len(vshape)} spatial axes {vshape} but the model expects "
            f"{geometry.dims}."
        )
    if any(v < 1 for v in vshape):
        raise StitchsafeError(f"the volume shape {vshape} is empty.")
    if exact:
        tshape = check_tile_shape(as_shape(tile_shape, geometry.dims, "--tile-shape"), geometry)
    else:
        tshape = as_shape(tile_shape, geometry.dims, "--tile-shape")
    read = geometry.input_for_output(tshape)
    model = geometry
    if native is not None:
        _check_native(native, geometry)
        # No read larger than the model's own whole-volume pass (a valid size too).
        read = tuple(min(r, c) for r, c in zip(read, native.input_for_output(vshape)))
        model = native
    return Plan(
        volume_shape=vshape,
        geometry=geometry,
        tile_shape=tshape,
        read_shape=read,
        raw_output_shape=model.output_shape(read),
        exact=exact,
        native=native,
    )


def _check_native(native: ModelGeometry, geometry: ModelGeometry) -> None:
    """Refuse a ``native`` geometry that ``geometry`` does not widen (a programming error)."""
    wider = all(
        glo >= nlo and ghi >= nhi
        for (glo, ghi), (nlo, nhi) in zip(geometry.halo, native.halo, strict=True)
    )
    if native.period != geometry.period or native.step != geometry.step or not wider:
        raise ValueError(f"{geometry} does not widen the model's own geometry {native}")
