"""Shapes: tuples of ints per spatial axis, from an int, a sequence or command-line text."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import StitchsafeError

__all__ = ["Shape", "parse_ints"]

Shape = tuple[int, ...]


def as_shape(value: int | Sequence[int], ndim: int, name: str) -> Shape:
    """Normalise an int or a sequence to a tuple of ``ndim`` ints.

    >>> as_shape(4, 3, "x")
    (4, 4, 4)
    >>> as_shape([1, 2], 2, "x")
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
