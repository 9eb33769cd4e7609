"""What stitchsafe takes from a package description, as plain values (no torch, no files).

:func:`parse_description` fills a :class:`PackageSpec`; its :meth:`PackageSpec.metadata`
turns it into stitchsafe metadata (schema of :mod:`stitchsafe.models`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._pointwise import PointwiseOp

__all__ = ["WEIGHT_FORMATS", "ArchitectureSpec", "PackageSpec", "WeightsSpec"]

WEIGHT_FORMATS = ("torchscript", "pytorch_state_dict")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ArchitectureSpec:
    """The Python callable that builds a ``pytorch_state_dict`` network."""

    callable: str
    kwargs: dict[str, Any]
    source: str | None = None  # a file in the package (or a URL, refused when loading)
    import_from: str | None = None  # an importable module
    sha256: str | None = None


@dataclass(frozen=True)
class WeightsSpec:
    """The weights entry stitchsafe loads (``kind`` is one of :data:`WEIGHT_FORMATS`)."""

    kind: str
    source: str
    sha256: str | None = None
    architecture: ArchitectureSpec | None = None
    strict: bool = True


@dataclass(frozen=True)
class PackageSpec:
    """What stitchsafe takes from a package description.

    Axis lists name each tensor axis in the package's order: ``"batch"``, ``"channel"``
    or a space axis id; ``space`` holds the space axis ids in stitchsafe's order
    (``z, y, x``). ``min_input``/``step``/``context`` are ``None`` when the package does
    not declare them as a parameterised size and an output offset.
    """

    name: str
    id: str | None
    input_axes: tuple[str, ...]
    output_axes: tuple[str, ...]
    space: tuple[str, ...]
    batch_one: bool
    input_channel_names: tuple[str, ...]
    output_channel_names: tuple[str, ...]
    min_input: Shape | None
    step: Shape | None
    context: Shape | None
    output_halo: Shape
    normalization: dict[str, Any]
    preprocessing: tuple[PointwiseOp, ...]
    postprocessing: tuple[PointwiseOp, ...]
    weights: WeightsSpec
    notes: tuple[str, ...] = ()
    steps: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        """The number of space axes."""
        return len(self.space)

    @property
    def channels_in(self) -> int:
        """The number of input channels."""
        return len(self.input_channel_names)

    @property
    def channels_out(self) -> int:
        """The number of output channels."""
        return len(self.output_channel_names)

    def metadata(self, geometry: dict[str, Any] | None = None) -> dict[str, Any]:
        """stitchsafe metadata (schema of :mod:`stitchsafe.models`), ``geometry`` added.

        ``geometry`` holds ``period``, ``halo`` and ``valid_input`` when they are known.
        """
        meta: dict[str, Any] = {
            "stitchsafe_metadata": 1,
            "dims": self.dims,
            "channels_in": self.channels_in,
            "channels_out": self.channels_out,
            **(geometry or {}),
            "normalization": dict(self.normalization),
            "architecture": {
                "name": "bioimage.io package",
                "package": self.name,
                "weights": self.weights.kind,
            },
            "bioimageio": {
                "name": self.name,
                "id": self.id,
                "input_channels": list(self.input_channel_names),
                "output_channels": list(self.output_channel_names),
                "input_axes": list(self.input_axes),
                "output_axes": list(self.output_axes),
                "output_halo": list(self.output_halo),
                **{k: list(v) for k, v in self.steps.items()},
            },
        }
        roles = _channel_roles(self.output_channel_names)
        if roles is not None:
            meta["channel_roles"] = roles
        return meta


def _channel_roles(names: Sequence[str]) -> list[str] | None:
    """Roles from names in stitchsafe's own vocabulary; None for any other naming.

    >>> _channel_roles(["embedding0", "embedding1", "foreground"])
    ['embedding', 'embedding', 'foreground']
    >>> _channel_roles(["boundaries", "foreground"]) is None
    True
    """
    roles = []
    for name in names:
        if name.lower() == "foreground":
            roles.append("foreground")
        elif name.lower().startswith("embedding"):
            roles.append("embedding")
        else:
            return None
    return roles
