"""Which part of an input a run reads: channels, one timepoint, one resolution level.

:class:`InputSelection` holds ``--channel``, ``--timepoint``, ``--level`` and ``--axes``
(what the input's axes are, for files that do not say), checked for form once;
:func:`stitchsafe.io.open_volume` hands it to the reader, which checks it against the
axes and levels the input really has (:func:`map_axes` for the axes, channels and time,
the same for every format; the readers for the level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..errors import StitchsafeError

__all__ = ["InputSelection"]


def _indices(value: Any, flag: str) -> tuple[int, ...] | None:
    """``0``, ``"0,2"`` or ``[0, 2]`` as a tuple of whole numbers >= 0 (``None`` stays)."""
    if value is None:
        return None
    items: Sequence[Any] = (
        [v for v in value.split(",") if v.strip()]
        if isinstance(value, str)
        else value
        if isinstance(value, Sequence)
        else [value]
    )
    try:
        found = tuple(_index(v) for v in items)
    except (TypeError, ValueError):
        found = ()
    if not found or len(set(found)) != len(found):
        raise StitchsafeError(
            f"{flag} {value!r} is not one channel index or several different ones (whole "
            "numbers from 0, e.g. --channel 1 or --channel 0,2)."
        )
    return found


def _index(value: Any) -> int:
    """A whole number >= 0 from an int or its text; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    number = int(str(value).strip()) if isinstance(value, str) else int(value)
    if number != value and str(number) != str(value).strip() or number < 0:
        raise ValueError(value)
    return number


# The axis letters --axes takes: time, channel and the spatial axes.
AXIS_LETTERS = "tczyx"


def _axes(value: Any) -> str | None:
    """``"YXC"``, ``"c,y,x"`` or ``"cyx"`` as lower-case letters, each once (``None`` stays)."""
    if value is None:
        return None
    letters = "".join(str(value).lower().replace(",", "").split())
    unknown = sorted({c for c in letters if c not in AXIS_LETTERS})
    twice = sorted({c for c in letters if letters.count(c) > 1})
    problem = (
        "it is empty"
        if not letters
        else f"{', '.join(map(repr, unknown))} is no axis letter"
        if unknown
        else f"{', '.join(map(repr, twice))} appears more than once"
        if twice
        else None
        if any(c in "zyx" for c in letters)
        else "it names no spatial axis (z, y, x)"
    )
    if problem is not None:
        raise StitchsafeError(
            f"--axes {value!r} is not a list of the input's axes: {problem}. Give one letter "
            "per stored axis, in storage order, each once: t (time), c (channel), z, y, x "
            "(e.g. --axes yxc for a channel-last 2-D image, --axes czyx, --axes tzyx)."
        )
    return letters


@dataclass(frozen=True)
class InputSelection:
    """``--channel``, ``--timepoint`` and ``--level``: the part of the input a run reads.

    Attributes
    ----------
    channels
        The input channels to read, in this order (``"0,2"``, ``1`` or ``(0, 2)`` are
        read too); ``None``: all of them.
    timepoint
        The timepoint of an input with a time axis (``t``); ``None``: the input has none
        (or one of size 1).
    level
        The resolution level of a multiscale OME-Zarr image or a pyramidal TIFF, with that
        level's own voxel size and translation; ``None``: level 0.
    axes
        The stored axes, one letter each in storage order (``t``, ``c``, ``z``, ``y``,
        ``x``; e.g. ``"yxc"``), for inputs that do not name them (TIFF, HDF5, bare zarr
        arrays, arrays in memory); ``None``: the input's own names, else by position.

    Examples
    --------
    >>> s = InputSelection(channels="0,2", timepoint=3, level=1)
    >>> s.channels, s.describe()
    ((0, 2), 'channels 0, 2; timepoint 3; level 1')
    >>> InputSelection().is_default, InputSelection().describe()
    (True, 'all channels')
    >>> InputSelection(level=-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --level -1 is not a resolution level...
    >>> InputSelection(axes="YXC").axes
    'yxc'
    """

    channels: tuple[int, ...] | None = None
    timepoint: int | None = None
    level: int | None = None
    axes: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", _indices(self.channels, "--channel"))
        object.__setattr__(self, "axes", _axes(self.axes))
        for name, flag, what in (
            ("timepoint", "--timepoint", "a timepoint"),
            ("level", "--level", "a resolution level"),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                object.__setattr__(self, name, _index(value))
            except (TypeError, ValueError):
                raise StitchsafeError(
                    f"{flag} {value!r} is not {what}: give a whole number from 0 (0 is the first)."
                ) from None

    @classmethod
    def parse(
        cls,
        channels: int | str | Sequence[int] | None = None,
        timepoint: int | str | None = None,
        level: int | str | None = None,
        axes: str | None = None,
    ) -> InputSelection:
        """The selection of the values as users give them (``"0,2"``, ``1``, ``"3"``...).

        >>> InputSelection.parse("2,0", "1").to_dict()
        {'channels': [2, 0], 'timepoint': 1, 'level': None}
        >>> InputSelection.parse(axes="yxc").to_dict()["axes"]
        'yxc'
        """
        return cls(cast(Any, channels), cast(Any, timepoint), cast(Any, level), axes)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> InputSelection:
        """The selection :meth:`to_dict` wrote (``None``: the default one)."""
        d = d or {}
        return cls(d.get("channels"), d.get("timepoint"), d.get("level"), d.get("axes"))

    @property
    def is_default(self) -> bool:
        """Whether nothing is selected: every channel, no timepoint, level 0, own axes."""
        return (
            self.channels is None
            and self.timepoint is None
            and self.level is None
            and self.axes is None
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON values: ``{"channels": [...] or null, "timepoint": ..., "level": ...}``,
        and ``"axes"`` when given (so that records written before it existed still match)."""
        channels = None if self.channels is None else list(self.channels)
        d: dict[str, Any] = {"channels": channels, "timepoint": self.timepoint, "level": self.level}
        if self.axes is not None:
            d["axes"] = self.axes
        return d

    def describe(self) -> str:
        """In words, e.g. ``channels 0, 2; timepoint 3; level 1``."""
        parts = []
        if self.channels is None:
            parts.append("all channels")
        else:
            word = "channel" if len(self.channels) == 1 else "channels"
            parts.append(f"{word} {', '.join(map(str, self.channels))}")
        if self.timepoint is not None:
            parts.append(f"timepoint {self.timepoint}")
        if self.level is not None:
            parts.append(f"level {self.level}")
        if self.axes is not None:
            parts.append(f"axes {self.axes}")
        return "; ".join(parts)

    def refuse_level(self, where: str, what: str) -> None:
        """Refuse ``--level`` for an input with one resolution level only (``what`` it is)."""
        if self.level is not None:
            raise StitchsafeError(
                f"--level {self.level} selects a resolution level of a multiscale OME-Zarr "
                f"image or a pyramidal TIFF, but {where} is {what} with one level only. Drop "
                "--level, or pass the array of the level you want as the input."
            )
