"""Pure tile-and-stitch arithmetic: period, halo, valid sizes, lattice and tile plans.

Nothing here imports torch, dask or zarr. All boxes are half-open ``[begin, end)`` in
voxel coordinates of the volume, spatial axes only (``(Z, Y, X)`` or ``(Y, X)``).

The rule this module enforces (Rumberger et al., ICCV 2021): stitched output equals one
whole-volume forward pass iff every tile's *input* origin lies on the period lattice of
the whole-volume pass, and each kept output region is a multiple of the period long.
The whole-volume pass reads from ``-halo_lo``, so its output starts at voxel 0; a tile
whose write box begins at a multiple of the period and whose crop starts at raw-output
voxel 0 therefore sits on that lattice.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import StitchsafeError

Shape = tuple[int, ...]


def _as_tuple(value: int | Sequence[int], ndim: int, name: str) -> Shape:
    """Normalise an int or a sequence to a tuple of ``ndim`` ints.

    >>> _as_tuple(4, 3, "x")
    (4, 4, 4)
    >>> _as_tuple([1, 2], 2, "x")
    (1, 2)
    """
    if isinstance(value, int):
        return (int(value),) * ndim
    out = tuple(int(v) for v in value)
    if len(out) != ndim:
        raise StitchsafeError(
            f"{name} has {len(out)} values {out}; expected {ndim} (one per axis)."
        )
    return out


@dataclass(frozen=True)
class Box:
    """A half-open box ``[begin, end)`` in voxel coordinates.

    >>> b = Box((0, 2), (4, 6))
    >>> b.shape, b.size
    ((4, 4), 16)
    >>> b.intersect(Box((2, 0), (10, 3)))
    Box(begin=(2, 2), end=(4, 3))
    >>> b.grow((1, 1), (2, 0)).shift((-1, 0))
    Box(begin=(-2, 1), end=(5, 6))
    """

    begin: Shape
    end: Shape

    def __post_init__(self) -> None:
        if len(self.begin) != len(self.end):
            raise ValueError(f"begin {self.begin} and end {self.end} differ in length")

    @classmethod
    def from_shape(cls, shape: Sequence[int], begin: Sequence[int] | None = None) -> Box:
        """Box of ``shape`` starting at ``begin`` (default: the origin).

        >>> Box.from_shape((2, 3), (1, 1))
        Box(begin=(1, 1), end=(3, 4))
        """
        b = tuple(begin) if begin is not None else (0,) * len(shape)
        return cls(tuple(int(v) for v in b), tuple(int(v) + int(s) for v, s in zip(b, shape)))

    @property
    def ndim(self) -> int:
        return len(self.begin)

    @property
    def shape(self) -> Shape:
        return tuple(max(0, e - b) for b, e in zip(self.begin, self.end))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def empty(self) -> bool:
        return self.size == 0

    def intersect(self, other: Box) -> Box:
        begin = tuple(max(a, b) for a, b in zip(self.begin, other.begin))
        end = tuple(max(lo, min(a, b)) for lo, a, b in zip(begin, self.end, other.end))
        return Box(begin, end)

    def contains(self, other: Box) -> bool:
        """Whether ``other`` lies inside this box.

        >>> Box((0,), (4,)).contains(Box((1,), (4,)))
        True
        """
        return all(a <= b for a, b in zip(self.begin, other.begin)) and all(
            a >= b for a, b in zip(self.end, other.end)
        )

    def grow(self, lo: Sequence[int], hi: Sequence[int]) -> Box:
        return Box(
            tuple(b - g for b, g in zip(self.begin, lo)),
            tuple(e + g for e, g in zip(self.end, hi)),
        )

    def shift(self, offset: Sequence[int]) -> Box:
        return Box(
            tuple(b + o for b, o in zip(self.begin, offset)),
            tuple(e + o for e, o in zip(self.end, offset)),
        )

    def to_slices(self) -> tuple[slice, ...]:
        """Slices for indexing an array that starts at the origin.

        >>> Box((1, 0), (3, 2)).to_slices()
        (slice(1, 3, None), slice(0, 2, None))
        """
        return tuple(slice(b, e) for b, e in zip(self.begin, self.end))


@dataclass(frozen=True)
class ModelGeometry:
    """How a network maps input sizes to output sizes, per spatial axis.

    Parameters
    ----------
    period
        Shift-equivariance period ``P`` per axis (product of the pooling factors).
    halo
        ``(lo, hi)`` input voxels needed before/after an output region, per axis.
    min_input
        Smallest valid input size per axis.
    step
        Valid input sizes are ``min_input + k * step``; ``step`` is a multiple of ``period``.
    channels_in, channels_out
        Channel counts of the network's input and output.

    Examples
    --------
    A 2-D valid U-Net of depth 4, factor 2, two 3x3 convolutions per level (the paper's
    example): output sizes 4, 20, 36, ... so ``r = 4``.

    >>> g = unet_geometry([(2, 2)] * 4)
    >>> g.period, g.min_input, g.min_output, g.remainder
    ((16, 16), (188, 188), (4, 4), (4, 4))
    >>> g.output_shape((204, 220))
    (20, 36)
    """

    period: Shape
    halo: tuple[tuple[int, int], ...]
    min_input: Shape
    step: Shape
    channels_in: int = 1
    channels_out: int = 1

    def __post_init__(self) -> None:
        n = len(self.period)
        if not (len(self.halo) == len(self.min_input) == len(self.step) == n) or n == 0:
            raise StitchsafeError(
                f"model geometry has inconsistent axis counts: period {self.period}, halo "
                f"{self.halo}, min_input {self.min_input}, step {self.step}."
            )
        for a in range(n):
            p, s, (lo, hi), m = self.period[a], self.step[a], self.halo[a], self.min_input[a]
            if p < 1 or s < 1 or s % p:
                raise StitchsafeError(
                    f"axis {a}: valid-size step {s} must be a positive multiple of the period {p}."
                )
            if lo < 0 or hi < 0:
                raise StitchsafeError(f"axis {a}: halo {(lo, hi)} must not be negative.")
            if m - lo - hi < 1:
                raise StitchsafeError(
                    f"axis {a}: smallest valid input {m} leaves no output after the halo "
                    f"{(lo, hi)}."
                )

    @property
    def dims(self) -> int:
        return len(self.period)

    @property
    def context(self) -> Shape:
        """Input voxels lost per axis: ``input - output`` for valid sizes."""
        return tuple(lo + hi for lo, hi in self.halo)

    @property
    def halo_lo(self) -> Shape:
        return tuple(lo for lo, _ in self.halo)

    @property
    def halo_hi(self) -> Shape:
        return tuple(hi for _, hi in self.halo)

    @property
    def min_output(self) -> Shape:
        return tuple(m - c for m, c in zip(self.min_input, self.context))

    @property
    def remainder(self) -> Shape:
        """``r`` per axis: raw output sizes are ``n * period + r``; ``r`` is never stitched."""
        return tuple(o % p for o, p in zip(self.min_output, self.period))

    @property
    def distinguishable_objects(self) -> int:
        """Most same-looking objects the network can tell apart: ``prod(period)``."""
        return math.prod(self.period)

    def is_valid_input(self, shape: Sequence[int]) -> bool:
        """Whether ``shape`` is a valid input size on every axis.

        >>> unet_geometry([(2,)]).is_valid_input((18,)), unet_geometry([(2,)]).is_valid_input((19,))
        (True, False)
        """
        return all(n >= m and (n - m) % s == 0 for n, m, s in zip(shape, self.min_input, self.step))

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        """Raw output shape for a valid input shape.

        >>> unet_geometry([(2,)]).output_shape((20,))
        (4,)
        """
        if not self.is_valid_input(input_shape):
            raise StitchsafeError(
                f"input shape {tuple(input_shape)} is not valid for this model; valid sizes per "
                f"axis are {self.describe_valid_sizes()}."
            )
        return tuple(n - c for n, c in zip(input_shape, self.context))

    def input_for_output(self, output_shape: Sequence[int]) -> Shape:
        """Smallest valid input shape whose raw output covers ``output_shape``.

        >>> unet_geometry([(2,)]).input_for_output((5,))
        (22,)
        """
        out = []
        for o, m, s, c in zip(output_shape, self.min_input, self.step, self.context):
            need = max(int(o) + c, m)
            out.append(m + -(-(need - m) // s) * s)
        return tuple(out)

    def describe_valid_sizes(self) -> str:
        """Human-readable valid input sizes, e.g. ``'12 + k*2'`` per axis.

        >>> unet_geometry([(1, 2)]).describe_valid_sizes()
        '(13 + k*1, 18 + k*2)'
        """
        parts = [f"{m} + k*{s}" for m, s in zip(self.min_input, self.step)]
        return "(" + ", ".join(parts) + ")"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (the schema used in model metadata and ``--json``)."""
        return {
            "dims": self.dims,
            "channels_in": self.channels_in,
            "channels_out": self.channels_out,
            "period": list(self.period),
            "halo": [list(h) for h in self.halo],
            "valid_input": {"min": list(self.min_input), "step": list(self.step)},
            "remainder": list(self.remainder),
            "distinguishable_objects": self.distinguishable_objects,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelGeometry:
        """Inverse of :meth:`to_dict` (extra keys are ignored).

        >>> g = unet_geometry([(2, 2)])
        >>> ModelGeometry.from_dict(g.to_dict()) == g
        True
        """
        return cls(
            period=tuple(int(v) for v in d["period"]),
            halo=tuple((int(lo), int(hi)) for lo, hi in d["halo"]),
            min_input=tuple(int(v) for v in d["valid_input"]["min"]),
            step=tuple(int(v) for v in d["valid_input"]["step"]),
            channels_in=int(d.get("channels_in", 1)),
            channels_out=int(d.get("channels_out", 1)),
        )


def normalize_pooling_factors(
    factors: Sequence[Sequence[int]] | Sequence[int] | int, *, dims: int, depth: int | None = None
) -> tuple[Shape, ...]:
    """Pooling factors as one tuple per level, one factor per axis.

    Accepts one int (all levels and axes), one per level, or per level and axis.

    >>> normalize_pooling_factors(2, dims=3, depth=2)
    ((2, 2, 2), (2, 2, 2))
    >>> normalize_pooling_factors([(1, 2, 2), 2], dims=3)
    ((1, 2, 2), (2, 2, 2))
    """
    if isinstance(factors, int):
        if depth is None:
            raise StitchsafeError("a single pooling factor needs a depth (number of levels).")
        levels: list[Any] = [factors] * depth
    else:
        levels = list(factors)
        if depth is not None and len(levels) == 1 and depth != 1:
            levels = levels * depth
    out = tuple(_as_tuple(level, dims, "pooling factor") for level in levels)
    if depth is not None and len(out) != depth:
        raise StitchsafeError(f"{len(out)} pooling levels given but depth is {depth}.")
    if any(f < 1 for level in out for f in level):
        raise StitchsafeError(f"pooling factors must be >= 1, got {out}.")
    return out


def unet_output_size(
    n: int, factors: Sequence[int], *, convs_per_level: int = 2, kernel_size: int = 3
) -> int | None:
    """Output size of one axis of a valid U-Net, or ``None`` when ``n`` is not valid.

    ``factors`` are this axis's pooling factors, one per level.

    >>> unet_output_size(188, [2, 2, 2, 2]), unet_output_size(189, [2, 2, 2, 2])
    (4, None)
    """
    loss = convs_per_level * (kernel_size - 1)
    for f in factors:
        n -= loss
        if n < 1 or n % f:
            return None
        n //= f
    n -= loss
    if n < 1:
        return None
    for f in reversed(factors):
        n = n * f - loss
        if n < 1:
            return None
    return n


def unet_geometry(
    pooling_factors: Sequence[Sequence[int]],
    *,
    convs_per_level: int = 2,
    kernel_size: int = 3,
    channels_in: int = 1,
    channels_out: int = 1,
) -> ModelGeometry:
    """Geometry of the valid-convolution U-Net with these per-level, per-axis factors.

    >>> g = unet_geometry([(1, 2, 2), (1, 2, 2), (2, 2, 2)])
    >>> g.period, g.halo[0], g.min_input
    ((2, 8, 8), (16, 16), (34, 92, 92))
    >>> unet_geometry([(3, 3)]).period
    (3, 3)
    """
    if kernel_size % 2 != 1:
        raise StitchsafeError(f"kernel size must be odd for a centred U-Net, got {kernel_size}.")
    levels = [tuple(level) for level in pooling_factors]
    dims = len(levels[0]) if levels else 0
    if not levels or any(len(level) != dims for level in levels):
        raise StitchsafeError(f"pooling factors {levels} must give one factor per axis per level.")
    period, halo, min_input = [], [], []
    for a in range(dims):
        fa = [level[a] for level in levels]
        p = math.prod(fa)
        n = 1
        while (
            unet_output_size(n, fa, convs_per_level=convs_per_level, kernel_size=kernel_size)
            is None
        ):
            n += 1
        out = unet_output_size(n, fa, convs_per_level=convs_per_level, kernel_size=kernel_size)
        assert out is not None
        ctx = n - out
        period.append(p)
        halo.append((ctx // 2, ctx - ctx // 2))
        min_input.append(n)
    return ModelGeometry(
        period=tuple(period),
        halo=tuple(halo),
        min_input=tuple(min_input),
        step=tuple(period),
        channels_in=channels_in,
        channels_out=channels_out,
    )


def check_tile_shape(tile_shape: Sequence[int], geometry: ModelGeometry) -> Shape:
    """Validate an output write box: a positive multiple of the period on every axis.

    >>> g = unet_geometry([(2, 2)] * 2)
    >>> check_tile_shape((8, 12), g)
    (8, 12)
    >>> check_tile_shape((8, 10), g)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: ... nearest valid values are 8 and 12.
    """
    shape = _as_tuple(tile_shape, geometry.dims, "--tile-shape")
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


def parse_ints(text: str, name: str, *, example: str = "32,128,128") -> Shape:
    """Parse a comma-separated list of positive integers given on the command line.

    >>> parse_ints("32, 128,128", "--tile-shape")
    (32, 128, 128)
    >>> parse_ints("64", "--tile-shape")
    (64,)
    >>> parse_ints("a,b", "--tile-shape")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --tile-shape 'a,b' is not a comma-separated list ...
    """
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise StitchsafeError(
            f"{name} {text!r} is not a comma-separated list of positive integers (e.g. {example})."
        )
    return values


@dataclass(frozen=True)
class Tile:
    """One unit of work.

    ``read`` is the input box (volume coordinates; parts outside the volume are padding),
    ``write`` the output voxels kept (inside the volume), and ``crop`` the box inside the
    tile's raw output that lands on ``write``.
    """

    index: Shape
    read: Box
    write: Box
    crop: Box


@dataclass(frozen=True)
class Plan:
    """Volume shape + model geometry + tile shape -> ordered tiles and output chunking.

    Tiles are generated lazily (``len(plan)``, ``plan.tile(i)``, iteration) so that plans
    of millions of tiles cost no memory.

    Examples
    --------
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
    grid_shape: Shape = field(init=False)

    def __post_init__(self) -> None:
        grid = tuple(-(-v // w) for v, w in zip(self.volume_shape, self.tile_shape))
        object.__setattr__(self, "grid_shape", grid)

    @property
    def dims(self) -> int:
        return len(self.volume_shape)

    @property
    def chunks(self) -> Shape:
        """Output chunk shape: the tile's write box, so no two tiles share a chunk."""
        return self.tile_shape

    def __len__(self) -> int:
        return math.prod(self.grid_shape)

    def tile_at(self, index: Sequence[int]) -> Tile:
        """The tile at grid position ``index``."""
        wb = tuple(i * w for i, w in zip(index, self.tile_shape))
        we = tuple(min(b + w, v) for b, w, v in zip(wb, self.tile_shape, self.volume_shape))
        write = Box(wb, we)
        read = Box.from_shape(
            self.read_shape, tuple(b - lo for b, lo in zip(wb, self.geometry.halo_lo))
        )
        crop = Box.from_shape(write.shape)
        return Tile(tuple(index), read, write, crop)

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
        for a in range(self.dims):
            last_begin = (self.grid_shape[a] - 1) * self.tile_shape[a] - self.geometry.halo_lo[a]
            after = last_begin + self.read_shape[a] - self.volume_shape[a]
            out.append((self.geometry.halo_lo[a], max(0, after)))
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
        }


def make_plan(
    volume_shape: Sequence[int],
    geometry: ModelGeometry,
    *,
    tile_shape: Sequence[int] | int,
    exact: bool = True,
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

    Examples
    --------
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
        tshape = check_tile_shape(_as_tuple(tile_shape, geometry.dims, "--tile-shape"), geometry)
    else:
        tshape = _as_tuple(tile_shape, geometry.dims, "--tile-shape")
    read = geometry.input_for_output(tshape)
    return Plan(
        volume_shape=vshape,
        geometry=geometry,
        tile_shape=tshape,
        read_shape=read,
        raw_output_shape=geometry.output_shape(read),
        exact=exact,
    )


def default_tile_shape(
    volume_shape: Sequence[int], geometry: ModelGeometry, *, max_input_voxels: int
) -> Shape:
    """Largest period-multiple write box whose tile input fits ``max_input_voxels``.

    Larger tiles waste less on the halo. The box never exceeds the volume rounded up to
    the period. It shrinks the axis with the largest write size first.

    >>> g = unet_geometry([(2, 2)] * 2)
    >>> default_tile_shape((1000, 1000), g, max_input_voxels=200 * 200)  # 7 x 7 tiles
    (144, 144)
    >>> default_tile_shape((5, 1000), g, max_input_voxels=200 * 200)
    (8, 500)
    """
    shape = [max(p, -(-v // p) * p) for v, p in zip(volume_shape, geometry.period)]
    while math.prod(geometry.input_for_output(shape)) > max_input_voxels:
        candidates = [a for a in range(len(shape)) if shape[a] > geometry.period[a]]
        if not candidates:
            break
        a = max(candidates, key=lambda i: shape[i])
        shape[a] -= geometry.period[a]
    # Same tile count, but tiles as equal as the period allows: the last tile of a row
    # then wastes least of its (fixed-size) forward pass on voxels outside the volume.
    for a, (w, v, p) in enumerate(zip(shape, volume_shape, geometry.period)):
        per_tile = -(-v // -(-v // w))
        shape[a] = min(w, max(p, -(-per_tile // p) * p))
    return tuple(shape)
