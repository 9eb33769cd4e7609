"""Axis roles: how a stored array's axes map onto ``(C, *spatial)``.

A stored array may carry a channel axis, a time axis of size 1, leading size-1 axes and
the model's spatial axes, named (OME-Zarr, zarr v3 ``dimension_names``, TIFF axis letters)
or not. :func:`map_axes` decides, once per input, which stored axis is the channel axis,
which are spatial, and which are indexed away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StitchsafeError
from ._selection import InputSelection

__all__ = ["AxesMismatchError"]

# The most voxel values (channels x voxels) an input may declare: 2**53, about 9e15, eight
# times the largest published imaging volumes; a larger shape is a metadata error.
MAX_VALUES = 2**53

# Axis roles used to map a stored array onto (C, *spatial).
CHANNEL, TIME, SPACE, UNKNOWN = "channel", "time", "space", None

# One entry per stored axis: "c" (channel), an int k (spatial axis k) or "drop" (a size-1
# axis indexed away).
Selection = tuple[str | int, ...]


class AxesMismatchError(StitchsafeError):
    """The stored axes cannot be mapped onto the number of spatial axes asked for.

    Only this error depends on the model's dimensionality; every other problem of an input
    is the input's own (:func:`stitchsafe.models.model_for_input` tells them apart).
    ``layout`` says what the input has, without the model's part (e.g. ``"'a.zarr' has
    shape (2, 3, 4, 5)"``).
    """

    def __init__(self, message: str, *, layout: str) -> None:
        super().__init__(message)
        self.layout = layout


@dataclass(frozen=True)
class StoredAxes:
    """The stored array's axes and how they map onto ``(C, *spatial)``.

    Attributes
    ----------
    shape, names
        Size and name (``None`` when unknown) of each stored axis.
    selection
        Per stored axis: ``"c"`` (the channel axis), ``k`` (spatial axis ``k``) or
        ``"drop"`` (a size-1 axis indexed away).
    space
        The stored axis of each spatial axis, in order.
    fixed
        Per stored axis, the index read where ``selection`` says ``"drop"``: the
        ``--timepoint`` on the time axis, 0 elsewhere (empty: 0 everywhere).
    picks
        The channels read (``--channel``), in order; ``None``: all of them.

    Examples
    --------
    >>> a = map_axes((2, 5, 6), [UNKNOWN] * 3, [None] * 3, 2, "x")
    >>> a.selection, a.spatial_shape, a.channels, a.spatial_names
    (('c', 0, 1), (5, 6), 2, ('y', 'x'))
    """

    shape: tuple[int, ...]
    names: tuple[str | None, ...]
    selection: Selection
    space: tuple[int, ...]
    fixed: tuple[int, ...] = ()
    picks: tuple[int, ...] | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Sizes of the spatial axes."""
        return tuple(self.shape[a] for a in self.space)

    @property
    def channel_axis(self) -> int | None:
        """The stored channel axis, ``None`` when there is none."""
        return self.selection.index("c") if "c" in self.selection else None

    @property
    def channels(self) -> int:
        """Number of channels read (the ``picks``, else all); 1 without a channel axis."""
        if self.picks is not None:
            return len(self.picks)
        axis = self.channel_axis
        return self.shape[axis] if axis is not None else 1

    @property
    def spatial_names(self) -> tuple[str, ...]:
        """Lower-case names of the spatial axes; ``z``, ``y``, ``x`` where unnamed."""
        default = _default_axes(len(self.space))
        names = self.names
        return tuple(
            str(names[a]).lower() if names[a] is not None else default[k]
            for k, a in enumerate(self.space)
        )


def map_axes(  # noqa: PLR0913 - the stored axes, what is asked, and whose names they are
    shape: tuple[int, ...],
    roles: Sequence[str | None],
    names: Sequence[str | None],
    spatial_dims: int,
    where: str,
    chosen: InputSelection | None = None,
    *,
    declared: bool = False,
) -> StoredAxes:
    """Map the stored axes onto ``(C, *spatial)`` (see :func:`assign_axes`), reading the
    channels and the timepoint ``chosen`` (``--channel``, ``--timepoint``).

    ``chosen.axes`` (``--axes``) names the axes of an input that does not (or replaces
    the names of a TIFF, HDF5 or zarr array); ``declared`` inputs (OME-Zarr images) say
    their axes themselves, and an ``--axes`` that contradicts them is refused.

    >>> a = map_axes((3, 2, 5, 6), [TIME, CHANNEL, SPACE, SPACE], list("tcyx"), 2, "x",
    ...              InputSelection(channels=1, timepoint=2))
    >>> a.selection, a.fixed, a.picks, a.channels
    (('drop', 'c', 0, 1), (2, 0, 0, 0), (1,), 1)
    >>> map_axes((5, 6, 2), [UNKNOWN] * 3, [None] * 3, 2, "x", InputSelection(axes="yxc")).selection
    (0, 1, 'c')
    """
    check_shape(shape, where)
    chosen = chosen if chosen is not None else InputSelection()
    if chosen.axes is not None:
        roles, names = given_axes(chosen.axes, shape, names if declared else None, where)
    elif all(r is UNKNOWN for r in roles):
        refuse_channel_last(shape, where)
    fixed = _time_index(shape, roles, names, chosen.timepoint, where)
    selection, space = assign_axes(
        shape, roles, names, spatial_dims, where, timepoint=chosen.timepoint
    )
    axes = StoredAxes(shape, tuple(names), selection, space, fixed)
    if chosen.channels is None:
        return axes
    total = axes.channels
    bad = [c for c in chosen.channels if c >= total]
    if bad:
        layout = _axis_list(shape, names)
        has = (
            f"has {total} channels (axes {layout}), numbered 0 to {total - 1}"
            if axes.channel_axis is not None
            else f"has no channel axis (axes {layout}): its one channel is 0"
        )
        raise StitchsafeError(
            f"{where} {has}; --channel {','.join(map(str, chosen.channels))} asks for "
            f"channel {bad[0]}, which it does not have."
        )
    if axes.channel_axis is None:
        return axes  # --channel 0 of a one-channel input: the input itself
    return StoredAxes(shape, tuple(names), selection, space, fixed, chosen.channels)


def given_axes(
    letters: str, shape: tuple[int, ...], declared: Sequence[str | None] | None, where: str
) -> tuple[list[str | None], list[str | None]]:
    """Roles and names of the stored axes from ``--axes`` ``letters``; one letter per
    stored axis, and the same axes as the input's ``declared`` names, if any.

    >>> given_axes("yxc", (5, 6, 2), None, "x")
    (['space', 'space', 'channel'], ['y', 'x', 'c'])
    >>> given_axes("zyxc", (5, 6, 2), None, "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --axes zyxc names 4 axes and x has shape (5, 6, 2)...
    """
    if len(letters) != len(shape):
        raise StitchsafeError(
            f"--axes {letters} names {len(letters)} axes and {where} has shape {shape}: "
            f"{len(shape)} axes. Give one letter per stored axis, in storage order (t, c, z, "
            "y, x; e.g. --axes yxc for a channel-last 2-D image)."
        )
    if declared is not None:
        own = "".join((n or "?").lower()[:1] for n in declared)
        if own != letters:
            raise StitchsafeError(
                f"{where} names its axes itself ({_axis_list(shape, declared)}), and "
                f"--axes {letters} says otherwise. Drop --axes: the image's own metadata "
                "says what its axes are (fix the metadata if it is wrong)."
            )
    return [role_of_name(c) for c in letters], list(letters)


def refuse_channel_last(shape: tuple[int, ...], where: str) -> None:
    """Refuse an input with unnamed axes that looks channel-last (a last axis of at most 4
    after much larger ones, e.g. ``(512, 512, 2)``): read by position its channels would
    be a spatial axis. ``--axes`` says what it is.

    >>> refuse_channel_last((64, 64, 64), "x")
    >>> refuse_channel_last((1, 512, 512, 3), "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: x has shape (1, 512, 512, 3) and does not name its axes...
    """
    first = next((a for a, s in enumerate(shape) if s > 1), len(shape))
    body = shape[first:]
    if not 3 <= len(body) <= 4 or body[-1] > 4 or min(body[:-1]) < max(16, 4 * body[-1]):
        return
    core = "zyx"[-(len(body) - 1) :] + "c"
    spare = [c for c in "tz" if c not in core]
    if first > len(spare):
        return  # more leading axes of size 1 than letters left: not a likely layout
    likely = "".join(spare[:first]) + core
    # A 3-D image read by position has X that thin: say how to keep that reading too.
    also = " (or --axes zyx to read it as it stands)" if shape == body and len(body) == 3 else ""
    raise StitchsafeError(
        f"{where} has shape {shape} and does not name its axes; its last axis, of size "
        f"{body[-1]}, looks like channels stored last (axes {likely}), which stitchsafe would "
        f"read as a spatial axis {body[-1]} voxels wide. Pass --axes {likely} to read it "
        f"channel-last{also}."
    )


def _axis_list(shape: tuple[int, ...], names: Sequence[str | None]) -> str:
    """The stored axes in words: ``t=5, c=2, z=8, y=16, x=16`` (``?`` when unnamed)."""
    return ", ".join(f"{n or '?'}={s}" for n, s in zip(names, shape, strict=True))


def _time_index(
    shape: tuple[int, ...],
    roles: Sequence[str | None],
    names: Sequence[str | None],
    timepoint: int | None,
    where: str,
) -> tuple[int, ...]:
    """Per stored axis the index read when it is indexed away: ``timepoint`` on the time
    axis, 0 elsewhere; refused when there is no time axis or the timepoint is past it."""
    fixed = [0] * len(shape)
    if timepoint is None:
        return tuple(fixed)
    times = [a for a, r in enumerate(roles) if r == TIME]
    if not times:
        named = (
            "unnamed axes, so none is known to be time"
            if all(n is None for n in names)
            else "no time axis"
        )
        raise StitchsafeError(
            f"{where} has {named} (axes {_axis_list(shape, names)}); --timepoint "
            f"{timepoint} applies to inputs with a time axis (t). Drop --timepoint."
        )
    axis = max(times, key=lambda a: shape[a])
    if timepoint >= shape[axis]:
        raise StitchsafeError(
            f"{where} has {shape[axis]} timepoint(s) (axes {_axis_list(shape, names)}); "
            f"--timepoint {timepoint} is past them (use 0 to {shape[axis] - 1})."
        )
    fixed[axis] = timepoint
    return tuple(fixed)


def assign_axes(
    shape: tuple[int, ...],
    roles: Sequence[str | None],
    names: Sequence[str | None],
    spatial_dims: int,
    where: str,
    *,
    timepoint: int | None = None,
) -> tuple[Selection, tuple[int, ...]]:
    """Map stored axes to ``(C, *spatial)``; returns the selection and spatial axis indices.

    A time axis longer than 1 needs a ``timepoint`` (``--timepoint``).

    With unknown roles the layout is positional: ``spatial_dims`` axes, or a leading
    channel axis before them; leading size-1 axes beyond that are squeezed.

    >>> assign_axes((1, 1, 5, 6), [UNKNOWN] * 4, [None] * 4, 2, "x")
    (('drop', 'c', 0, 1), (2, 3))
    >>> assign_axes((3, 5, 6), [SPACE, SPACE, CHANNEL], ["y", "x", "c"], 2, "x")
    ((0, 1, 'c'), (0, 1))
    """
    expected = (
        f"expected {spatial_dims} spatial axes, optionally preceded by one channel axis "
        f"(and leading axes of size 1), because the model is {spatial_dims}-D"
    )
    if all(r is UNKNOWN for r in roles):
        return _positional_axes(shape, spatial_dims, f"{where} has shape {shape}", expected)
    return _axes_by_role(shape, roles, names, spatial_dims, where, expected, timepoint)


def _positional_axes(
    shape: tuple[int, ...], spatial_dims: int, layout: str, expected: str
) -> tuple[Selection, tuple[int, ...]]:
    """Trailing spatial axes, maybe a channel axis before them, size-1 axes before that."""
    sel: list[str | int] = ["drop"] * len(shape)
    n = len(shape)
    first = 0
    while n - first > spatial_dims + 1 and shape[first] == 1:
        first += 1
    rest = n - first
    if rest not in (spatial_dims, spatial_dims + 1):
        raise AxesMismatchError(f"{layout}; {expected}.", layout=layout)
    if rest == spatial_dims + 1:
        sel[first] = "c"
        first += 1
    for k in range(spatial_dims):
        sel[first + k] = k
    return tuple(sel), tuple(range(first, n))


def _axes_by_role(
    shape: tuple[int, ...],
    roles: Sequence[str | None],
    names: Sequence[str | None],
    spatial_dims: int,
    where: str,
    expected: str,
    timepoint: int | None = None,
) -> tuple[Selection, tuple[int, ...]]:
    """At most one channel axis, time of size 1 (or a ``timepoint`` chosen), the last
    ``spatial_dims`` other axes."""
    sel: list[str | int] = ["drop"] * len(shape)
    axis_list = _axis_list(shape, names)
    channel = [a for a, r in enumerate(roles) if r == CHANNEL]
    big_channel = [a for a in channel if shape[a] > 1]
    if len(big_channel) > 1:
        raise StitchsafeError(
            f"{where} has more than one channel axis ({axis_list}); stitchsafe needs at most "
            "one. Merge them into one channel axis first."
        )
    for a, r in enumerate(roles):
        if r == TIME and shape[a] > 1 and timepoint is None:
            raise StitchsafeError(
                f"{where} has a time axis of size {shape[a]} (axes {axis_list}: "
                f"{shape[a]} timepoints); stitchsafe processes one timepoint: choose one "
                f"with --timepoint (0 to {shape[a] - 1})."
            )
    if channel:
        sel[big_channel[0] if big_channel else channel[0]] = "c"
    space = [a for a, r in enumerate(roles) if r not in (CHANNEL, TIME)]
    while len(space) > spatial_dims and shape[space[0]] == 1:
        space.pop(0)
    if len(space) != spatial_dims:
        layout = f"{where} has axes ({axis_list})"
        raise AxesMismatchError(f"{layout}; {expected}.", layout=layout)
    for k, a in enumerate(space):
        sel[a] = k
    return tuple(sel), tuple(space)


def check_shape(shape: tuple[int, ...], where: str) -> None:
    """Refuse shapes that hold no voxels or that no storage could hold.

    >>> check_shape((2, 5, 6), "x")
    >>> check_shape((5, 0), "the array 'a.zarr'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the array 'a.zarr' has shape (5, 0): axis 1 has size 0...
    """
    if not shape:
        raise StitchsafeError(
            f"{where} is a single value (shape ()), not an image; pass an array with 1-3 "
            "spatial axes."
        )
    empty = [a for a, s in enumerate(shape) if s < 1]
    if empty:
        raise StitchsafeError(
            f"{where} has shape {shape}: axis {empty[0]} has size {shape[empty[0]]}, so it "
            "holds no voxels. Pass an image with at least one voxel on every axis."
        )
    total = math.prod(shape)
    if total > MAX_VALUES:
        raise StitchsafeError(
            f"{where} declares shape {shape}, {total:.3g} voxel values, more than any "
            f"storage holds (stitchsafe takes at most 2**53 = {MAX_VALUES:.3g}). The shape in "
            "its metadata looks wrong; check the array's metadata (zarr.json or .zarray "
            "'shape', or the TIFF's image description) or pass the right array."
        )


def role_of_name(name: str | None) -> str | None:
    """The role an axis name implies: ``c``/``channel`` -> channel, ``t`` -> time.

    >>> role_of_name("C"), role_of_name("t"), role_of_name("z"), role_of_name(None)
    ('channel', 'time', 'space', None)
    """
    if name is None:
        return UNKNOWN
    low = name.lower()
    if low in ("c", "ch", "channel", "channels"):
        return CHANNEL
    if low in ("t", "time"):
        return TIME
    return SPACE


def _default_axes(n: int) -> tuple[str, ...]:
    return ("z", "y", "x")[-n:] if n <= 3 else tuple(f"d{i}" for i in range(n))
