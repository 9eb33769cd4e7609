"""A description's tensor axes as stitchsafe sees them: batch, channel, 1-3 space axes.

Each axis gets a label: ``"batch"``, ``"channel"`` or its space axis id; ``time`` and
``index`` axes are refused (they cannot be tiled). Space axes are put in stitchsafe's
order (``z, y, x``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import UnusablePackage

__all__: list[str] = []


def axis_label(axis: Any) -> str:
    """``"batch"``, ``"channel"`` or the space axis id; refuse any other kind of axis."""
    kind = str(axis.type)
    if kind in ("batch", "channel"):
        return kind
    if kind == "space":
        return str(axis.id)
    raise UnusablePackage(
        f"it has a {kind!r} axis ({str(axis.id)!r}); stitchsafe runs networks on batch, "
        "channel and 1-3 space axes only, so time series and index axes cannot be tiled. Use "
        "a package whose tensors have axes such as (batch, channel, z, y, x)"
    )


def space_order(ids: Sequence[str]) -> tuple[str, ...]:
    """Space axis ids in stitchsafe's order: ``z, y, x`` when they are those, else as given.

    >>> space_order(["x", "y"]), space_order(["y", "x", "z"]), space_order(["u", "v"])
    (('y', 'x'), ('z', 'y', 'x'), ('u', 'v'))
    """
    if set(ids) <= {"z", "y", "x"}:
        return tuple(sorted(ids, key="zyx".index))
    return tuple(ids)


@dataclass(frozen=True)
class TensorAxes:
    """A tensor's axis ids -> labels (``"batch"``, ``"channel"`` or the space id)."""

    labels: dict[str, str]
    channels: int

    @classmethod
    def of(cls, tensor: Any, channels: int) -> TensorAxes:
        """The axes of a description's tensor, which has ``channels`` channels."""
        return cls({str(a.id): axis_label(a) for a in tensor.axes}, channels)

    def label(self, axis_id: Any) -> str:
        """The label of the axis ``axis_id`` (the id itself when unknown)."""
        return self.labels.get(str(axis_id), str(axis_id))
