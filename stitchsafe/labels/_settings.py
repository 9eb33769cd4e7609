"""The user's labelling choices, over the model's stored defaults, checked once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from ..errors import StitchsafeError
from ._params import LabelParams, check_label_dtype, label_defaults, resolve_label_params
from ._roles import RoleChoice, choose_roles, parse_channel_roles

__all__ = ["LabelSettings"]


@dataclass(frozen=True)
class LabelSettings:
    """Labelling flags; ``None`` means "from the model's metadata, else the fallback".

    Each given value is checked at once (a bad ``--threshold`` fails before any model is
    loaded); :meth:`resolve` merges them over the defaults stored with a model or its
    embeddings. ``channel_roles`` (``--channel-roles``, the syntax of
    :func:`~stitchsafe.labels.parse_channel_roles`) replaces the roles stored with them
    (:meth:`roles`).

    Examples
    --------
    >>> s = LabelSettings(min_size=3)
    >>> s.resolve(None, ["embedding", "foreground"], channels=2).min_size
    3
    >>> LabelSettings(channel_roles="e:2,f").channel_roles
    ('embedding', 'embedding', 'foreground')
    >>> LabelSettings(threshold=-1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --threshold must be a positive number ..., got -1.0.
    """

    threshold: float | None = None
    min_size: int | None = None
    foreground_threshold: float | None = None
    seed_threshold: float | None = None
    seed_foreground_threshold: float | None = None
    grow: int | None = None
    label_dtype: str = "uint32"
    channel_roles: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        check_label_dtype(self.label_dtype)
        if self.channel_roles is not None:
            object.__setattr__(self, "channel_roles", parse_channel_roles(self.channel_roles))
        # Each flag over the fallbacks: LabelParams says what is wrong with a bad value.
        # (--grow alone may rely on a seed threshold from the metadata: a stand-in here.)
        given = self.overrides()
        if "grow" in given:
            given.setdefault("seed_threshold", 1.0)
        fallbacks = {k: v for k, v in label_defaults(None).items() if k != "source"}
        LabelParams(**{**fallbacks, **given})

    def overrides(self) -> dict[str, Any]:
        """The labelling flags that were given (not ``None``), by name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("label_dtype", "channel_roles") and getattr(self, f.name) is not None
        }

    def roles(self, stored: Any, *, channels: int, where: str = "the model") -> RoleChoice:
        """``channel_roles`` over the ``stored`` roles, for ``channels`` output channels."""
        if stored is not None and not (
            isinstance(stored, list | tuple) and all(isinstance(r, str) for r in stored)
        ):
            raise StitchsafeError(f"channel roles must be a list of strings, got {stored!r}.")
        flag = self.channel_roles
        assert flag is None or isinstance(flag, tuple)
        return choose_roles(flag, stored, channels=channels, where=where)

    def resolve(self, defaults: dict[str, Any] | None, roles: Any, *, channels: int) -> LabelParams:
        """Flags over ``defaults`` over fallbacks, checked against ``channels``;
        ``channel_roles`` over ``roles``."""
        if self.channel_roles is not None:
            roles = self.channel_roles
        return resolve_label_params(defaults, roles, channels=channels, **self.overrides())
