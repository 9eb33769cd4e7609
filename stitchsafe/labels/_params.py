"""The labelling's parameters: :class:`LabelParams`, the defaults a model declares, the flags.

Channels
--------
``channel_roles`` (from the model metadata or ``--channel-roles``) names each output
channel ``"embedding"``, ``"foreground"`` or ``"probability"``; other roles are ignored
(:mod:`stitchsafe.labels._roles`). A foreground channel holds logits: a voxel is
foreground when ``logit > log(p / (1 - p))`` for ``foreground_threshold = p``; a
probability channel holds probabilities: foreground is ``value > p``. Without
roles every channel is an embedding; without a foreground channel *every voxel is
foreground*, so the background forms its own component(s) like any other region of
similar embeddings. That is the honest answer for embedding-only models, not a
background model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StitchsafeError

__all__ = [
    "EMBEDDING",
    "FALLBACK_FOREGROUND_THRESHOLD",
    "FALLBACK_MIN_SIZE",
    "FALLBACK_SEED_FOREGROUND_THRESHOLD",
    "FALLBACK_THRESHOLD",
    "FOREGROUND",
    "LABEL_DTYPES",
    "PROBABILITY",
    "LabelParams",
    "check_label_dtype",
    "label_defaults",
    "max_label",
    "resolve_label_params",
]

EMBEDDING = "embedding"
FOREGROUND = "foreground"
PROBABILITY = "probability"
LABEL_DTYPES = ("uint32", "uint64")

# Fallbacks when neither the flags nor the model metadata say otherwise. The threshold is
# delta_d of the discriminative loss with its common margins (delta_v = 0.5, delta_d = 1.5):
# delta_d is the middle of the interval [2 delta_v, 2 delta_d - 2 delta_v] that separates
# same-object from different-object voxel pairs once the loss is zero.
FALLBACK_THRESHOLD = 1.5
FALLBACK_MIN_SIZE = 0
FALLBACK_FOREGROUND_THRESHOLD = 0.5
FALLBACK_SEED_FOREGROUND_THRESHOLD = 0.9


@dataclass(frozen=True)
class LabelParams:
    """Parameters of the labelling.

    Attributes
    ----------
    threshold
        Neighbours are linked when their embedding distance is ``< threshold`` (> 0).
    min_size
        Objects with fewer voxels become background (>= 0; 0 and 1 keep everything).
    foreground_threshold
        Foreground probability cut ``p`` in (0, 1); foreground is ``logit > log(p/(1-p))``.
    channel_roles
        One role per channel (``"embedding"``, ``"foreground"`` logits,
        ``"probability"``, anything else is ignored), or ``None``: all channels are
        embeddings and every voxel is foreground.
    seed_threshold
        ``None``: every foreground voxel is linked. Otherwise only seed voxels are (their
        embedding differs from every foreground face-neighbour's by ``< seed_threshold``)
        and the labels then grow into the rest of the foreground (module docstring).
    seed_foreground_threshold
        Seeds also need a foreground probability above this (in (0, 1)); ignored without
        a foreground channel.
    grow
        Growth steps from the seeds (>= 0; only with ``seed_threshold``).

    Examples
    --------
    >>> p = LabelParams(1.0, channel_roles=("embedding", "embedding", "foreground"))
    >>> p.embedding_channels(3), p.foreground_channel(3), p.foreground_logit
    ((0, 1), 2, 0.0)
    >>> LabelParams(0.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --threshold must be a positive number ..., got 0.0.
    """

    threshold: float
    min_size: int = FALLBACK_MIN_SIZE
    foreground_threshold: float = FALLBACK_FOREGROUND_THRESHOLD
    channel_roles: tuple[str, ...] | None = None
    seed_threshold: float | None = None
    seed_foreground_threshold: float = FALLBACK_SEED_FOREGROUND_THRESHOLD
    grow: int = 0

    def __post_init__(self) -> None:
        t, m, p = self.threshold, self.min_size, self.foreground_threshold
        st, sp, g = self.seed_threshold, self.seed_foreground_threshold, self.grow
        if st is not None and (
            isinstance(st, bool) or not isinstance(st, int | float) or not (0 < st < math.inf)
        ):
            raise StitchsafeError(
                "--seed-threshold must be a positive number (the largest embedding distance "
                f"from a seed voxel to its foreground neighbours), got {st!r}."
            )
        if isinstance(sp, bool) or not isinstance(sp, int | float) or not (0 < sp < 1):
            raise StitchsafeError(
                "--seed-foreground-threshold must be a probability strictly between 0 and 1, "
                f"got {sp!r}."
            )
        if isinstance(g, bool) or not isinstance(g, int | np.integer) or g < 0:
            raise StitchsafeError(
                f"--grow must be a non-negative whole number of steps, got {g!r}."
            )
        if g and st is None:
            raise StitchsafeError(
                "--grow needs --seed-threshold: without seeds every foreground voxel is "
                "labelled already and there is nothing to grow into."
            )
        if st is not None:
            object.__setattr__(self, "seed_threshold", float(st))
        object.__setattr__(self, "seed_foreground_threshold", float(sp))
        object.__setattr__(self, "grow", int(g))
        if isinstance(t, bool) or not isinstance(t, int | float) or not (0 < t < math.inf):
            raise StitchsafeError(
                "--threshold must be a positive number (the embedding distance below which "
                f"neighbouring voxels join one object), got {t!r}."
            )
        if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 0:
            raise StitchsafeError(
                "--min-size must be a non-negative whole number of voxels (0 keeps every "
                f"object), got {m!r}."
            )
        if isinstance(p, bool) or not isinstance(p, int | float) or not (0 < p < 1):
            raise StitchsafeError(
                f"--foreground-threshold must be a probability strictly between 0 and 1, got {p!r}."
            )
        if self.channel_roles is not None:
            roles = tuple(str(r) for r in self.channel_roles)
            if roles.count(FOREGROUND) + roles.count(PROBABILITY) > 1:
                raise StitchsafeError(
                    f"the channel roles {list(roles)} name more than one foreground (or "
                    "probability) channel; stitchsafe needs at most one."
                )
            object.__setattr__(self, "channel_roles", roles)
        object.__setattr__(self, "threshold", float(t))
        object.__setattr__(self, "min_size", int(m))
        object.__setattr__(self, "foreground_threshold", float(p))

    @property
    def foreground_logit(self) -> float:
        """The logit cut ``log(p / (1 - p))``."""
        p = self.foreground_threshold
        return math.log(p / (1.0 - p))

    @property
    def seeded(self) -> bool:
        """Whether only seed voxels are linked (``seed_threshold`` is set)."""
        return self.seed_threshold is not None

    @property
    def halo(self) -> int:
        """Voxels beyond a block that its seeds (1) and its growth (``grow``) look at."""
        return max(1 if self.seeded else 0, self.grow)

    def cut(self, p: float) -> float:
        """The foreground channel's value above which a voxel's probability exceeds ``p``:
        ``p`` itself for a ``probability`` channel, the logit ``log(p / (1 - p))`` else.

        >>> LabelParams(1.0, channel_roles=("probability",)).cut(0.5)
        0.5
        """
        if self.channel_roles is not None and PROBABILITY in self.channel_roles:
            return float(p)
        return math.log(p / (1.0 - p))

    def check_channels(self, channels: int) -> None:
        """Raise StitchsafeError unless the roles fit ``channels`` channels."""
        if self.channel_roles is not None and len(self.channel_roles) != channels:
            raise StitchsafeError(
                f"the channel roles {list(self.channel_roles)} name {len(self.channel_roles)} "
                f"channel(s) but the embeddings have {channels}; the model metadata's "
                "'channel_roles' must list one role per output channel."
            )

    def embedding_channels(self, channels: int) -> tuple[int, ...]:
        """Indices of the embedding channels among ``channels``."""
        self.check_channels(channels)
        if self.channel_roles is None:
            return tuple(range(channels))
        return tuple(i for i, r in enumerate(self.channel_roles) if r == EMBEDDING)

    def foreground_channel(self, channels: int) -> int | None:
        """Index of the foreground channel, or None (every voxel is foreground)."""
        self.check_channels(channels)
        for role in (FOREGROUND, PROBABILITY):
            if self.channel_roles is not None and role in self.channel_roles:
                return self.channel_roles.index(role)
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with the labels)."""
        return {
            "threshold": self.threshold,
            "min_size": self.min_size,
            "foreground_threshold": self.foreground_threshold,
            "channel_roles": None if self.channel_roles is None else list(self.channel_roles),
            "seed_threshold": self.seed_threshold,
            "seed_foreground_threshold": self.seed_foreground_threshold,
            "grow": self.grow,
        }


def label_defaults(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Default labelling parameters declared by model metadata, else the fallbacks.

    In order: ``metadata["labels"]`` (``threshold``, ``min_size``,
    ``foreground_threshold``, and for the seeded variant ``seed_threshold``,
    ``seed_foreground_threshold``, ``grow``), then the discriminative-loss margin
    ``metadata["loss"]["delta_d"]`` as threshold, then :data:`FALLBACK_THRESHOLD` (1.5),
    ``min_size`` 0 and ``foreground_threshold`` 0.5. ``source`` says where the threshold
    came from.

    >>> label_defaults({"loss": {"delta_v": 0.5, "delta_d": 2.0}})["threshold"]
    2.0
    >>> label_defaults(None)
    {'threshold': 1.5, 'min_size': 0, 'foreground_threshold': 0.5, 'source': 'fallback'}
    """
    meta = metadata or {}
    labels: dict[str, Any] = meta["labels"] if isinstance(meta.get("labels"), dict) else {}
    loss: dict[str, Any] = meta["loss"] if isinstance(meta.get("loss"), dict) else {}
    out: dict[str, Any] = {
        "threshold": FALLBACK_THRESHOLD,
        "min_size": FALLBACK_MIN_SIZE,
        "foreground_threshold": FALLBACK_FOREGROUND_THRESHOLD,
        "source": "fallback",
    }
    if "threshold" in labels:
        out.update(threshold=float(labels["threshold"]), source="metadata labels.threshold")
    elif "delta_d" in loss:
        out.update(threshold=float(loss["delta_d"]), source="metadata loss.delta_d")
    if "min_size" in labels:
        out["min_size"] = int(labels["min_size"])
    if "foreground_threshold" in labels:
        out["foreground_threshold"] = float(labels["foreground_threshold"])
    if labels.get("seed_threshold") is not None:
        out["seed_threshold"] = float(labels["seed_threshold"])
        out["grow"] = int(labels.get("grow", 0))
        if "seed_foreground_threshold" in labels:
            out["seed_foreground_threshold"] = float(labels["seed_foreground_threshold"])
    return out


def resolve_label_params(  # noqa: PLR0913 - one keyword per labelling flag, as segment()
    defaults: dict[str, Any] | None,
    channel_roles: Any,
    *,
    channels: int,
    threshold: float | None = None,
    min_size: int | None = None,
    foreground_threshold: float | None = None,
    seed_threshold: float | None = None,
    seed_foreground_threshold: float | None = None,
    grow: int | None = None,
) -> LabelParams:
    """Flags over stored defaults over fallbacks; checked against ``channels``.

    A ``seed_threshold`` flag switches seeding on even when the defaults have none
    (growth then defaults to 0 steps unless ``grow`` says otherwise). The keyword form of
    :class:`~stitchsafe.labels.LabelSettings` (which calls it), for scripts.

    >>> p = resolve_label_params(None, ["embedding", "foreground"], channels=2, min_size=3)
    >>> p.threshold, p.min_size, p.channel_roles
    (1.5, 3, ('embedding', 'foreground'))
    """
    base = {**label_defaults(None), **(defaults or {})}
    if channel_roles is not None and not (
        isinstance(channel_roles, list | tuple) and all(isinstance(r, str) for r in channel_roles)
    ):
        raise StitchsafeError(f"channel roles must be a list of strings, got {channel_roles!r}.")
    params = LabelParams(
        threshold=base["threshold"] if threshold is None else threshold,
        min_size=base["min_size"] if min_size is None else min_size,
        foreground_threshold=(
            base["foreground_threshold"] if foreground_threshold is None else foreground_threshold
        ),
        channel_roles=None if channel_roles is None else tuple(channel_roles),
        seed_threshold=base.get("seed_threshold") if seed_threshold is None else seed_threshold,
        seed_foreground_threshold=(
            base.get("seed_foreground_threshold", FALLBACK_SEED_FOREGROUND_THRESHOLD)
            if seed_foreground_threshold is None
            else seed_foreground_threshold
        ),
        grow=base.get("grow", 0) if grow is None else grow,
    )
    params.check_channels(channels)
    return params


def check_label_dtype(label_dtype: str) -> str:
    """``uint32`` or ``uint64``, else StitchsafeError."""
    if label_dtype not in LABEL_DTYPES:
        raise StitchsafeError(
            f"--label-dtype {label_dtype!r} is not one of {', '.join(LABEL_DTYPES)}."
        )
    return label_dtype


def max_label(dtype: Any, max_id: int | None = None) -> int:
    """The largest id an unsigned integer ``dtype`` (or a smaller ``max_id``) allows.

    >>> max_label("uint32"), max_label("uint64", 5)
    (4294967295, 5)
    """
    dt = np.dtype(dtype)
    if dt.kind != "u":
        raise StitchsafeError(
            f"labels must be an unsigned integer type ({', '.join(LABEL_DTYPES)}), got {dt}."
        )
    limit = int(np.iinfo(dt).max)
    return limit if max_id is None else min(limit, int(max_id))
