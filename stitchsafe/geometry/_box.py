"""Half-open boxes ``[begin, end)`` in voxel coordinates: the value every tile is made of."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._shape import Shape

__all__ = ["Box"]


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
