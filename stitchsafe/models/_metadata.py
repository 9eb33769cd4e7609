"""The metadata schema stored with a model: validation, and the geometry it declares.

Every format stores one JSON entry named :data:`METADATA_KEY` (``"stitchsafe.json"``): in
the checkpoint dict, in TorchScript ``_extra_files``, in ``.pt2`` ``extra_files``. Schema
version 1 (every key but ``stitchsafe_metadata`` is optional; unknown keys are kept)::

    {"stitchsafe_metadata": 1,              # schema version
     "dims": 3,                             # spatial axes
     "channels_in": 1, "channels_out": 17,
     "pooling_factors": [[1, 2, 2], [2, 2, 2]],   # per level, per axis
     "period": [2, 4, 4],                   # product of the pooling factors per axis
     "halo": [[lo, hi], ...],               # input voxels before/after an output region
     "valid_input": {"min": [...], "step": [...]},  # valid sizes: min + k * step
     "channel_roles": ["embedding", ..., "foreground"],   # one per output channel
     "normalization": {"method": "percentile", "percentiles": [1.0, 99.8]},
     "labels": {"threshold": 1.5,           # instance labels: embedding distance < this
                "min_size": 20,             #   joins neighbours; smaller objects -> 0;
                "foreground_threshold": 0.5,    # foreground probability cut;
                "seed_threshold": 0.5,      #   optional seeded variant: seeds' neighbours
                "seed_foreground_threshold": 0.9,   # all closer than this, and
                "grow": 6},                 #   growth steps from the seeds
     "loss": {"name": "discriminative", "delta_v": 0.5, "delta_d": 1.5},
     "training": {"command": "stitchsafe train ...",   # free-form, by stitchsafe.training:
                  "iterations": 1000, "window": [12, 32, 32], "seed": 0,
                  "torch": "2.13.0", "final_loss": 0.41, ...},
     "architecture": {...}}                 # free-form, e.g. the UNetConfig dict

``channel_roles``: ``"embedding"`` channels feed the instance labelling, one optional
``"foreground"`` channel holds foreground logits (or ``"probability"``: probabilities),
any other role is ignored; ``--channel-roles`` replaces them (:mod:`stitchsafe.labels`).
Without roles every channel is an embedding and every voxel foreground.
``labels`` gives the labelling defaults (:mod:`stitchsafe.labels`); without
``labels.threshold`` the threshold is ``loss.delta_d`` (the discriminative loss's
distance margin: the middle of the gap it leaves between same-object and
different-object voxel pairs), else 1.5. ``loss`` is otherwise free-form training
information; ``delta_v``/``delta_d``, when present, must be positive numbers.

``period`` + ``halo`` + ``valid_input`` is a complete geometry; ``pooling_factors`` (or
``period``) alone fixes the period, and the rest is then probed. Probing measures only
the context ``lo + hi``: where an output region sits relative to its input is a
convention, and stitchsafe's is the centred one of valid U-Nets (``lo = context // 2``).
Metadata may declare an asymmetric halo; it is trusted as long as ``lo + hi`` matches.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from typing import Any

from ..errors import StitchsafeError
from ..geometry import ModelGeometry
from ._unet import UNetConfig

__all__ = [
    "METADATA_KEY",
    "METADATA_VERSION",
    "metadata_geometry",
    "unet_metadata",
    "validate_metadata",
]

METADATA_KEY = "stitchsafe.json"
METADATA_VERSION = 1


def unet_metadata(cfg: UNetConfig, **extra: Any) -> dict[str, Any]:
    """Metadata for a built-in U-Net; ``extra`` adds or replaces keys (e.g. channel_roles).

    Same-padded configurations get no ``period``/``halo``/``valid_input`` (the closed form
    describes valid convolutions only); their pooling factors are still stored.

    >>> from stitchsafe.models import UNetConfig
    >>> m = unet_metadata(UNetConfig(dims=2, pooling_factors=((2, 2),)))
    >>> m["period"], m["halo"], m["valid_input"]
    ([2, 2], [[8, 8], [8, 8]], {'min': [18, 18], 'step': [2, 2]})
    """
    meta: dict[str, Any] = {
        "stitchsafe_metadata": METADATA_VERSION,
        "dims": cfg.dims,
        "channels_in": cfg.in_channels,
        "channels_out": cfg.out_channels,
        "pooling_factors": [list(f) for f in cfg.pooling_factors],
    }
    if cfg.padding == "valid":
        g = cfg.geometry().to_dict()
        meta.update(period=g["period"], halo=g["halo"], valid_input=g["valid_input"])
    # The stored name of the built-in architecture (a format identifier, kept when the
    # class moved to stitchsafe.models): checkpoints written before and after match.
    meta["architecture"] = {"name": "stitchsafe.unet.UNet", "config": json.loads(cfg.to_json())}
    meta.update(extra)
    return validate_metadata(meta)


def parse_metadata(raw: Any, path: str) -> dict[str, Any] | None:
    """The validated metadata from a model file's raw entry; None when it has none.

    ``raw`` is the JSON text (or bytes) as stored, or None; ``path`` names the model
    file in messages.

    >>> parse_metadata(b"", "m.pt") is None
    True
    >>> parse_metadata('{"stitchsafe_metadata": 1, "dims": 2}', "m.pt")
    {'stitchsafe_metadata': 1, 'dims': 2}
    """
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "null")):
        return None
    try:
        data = json.loads(raw)
    except (TypeError, ValueError) as e:
        raise StitchsafeError(
            f"model file {path!r}: its {METADATA_KEY} entry is not valid JSON ({e})."
        ) from None
    try:
        return validate_metadata(data)
    except StitchsafeError as e:
        raise StitchsafeError(f"model file {path!r}: {e}") from None


# ------------------------------------------------------------------------ validation


def validate_metadata(meta: Any) -> dict[str, Any]:
    """Check metadata against the schema; return it (a copy) or raise StitchsafeError.

    >>> validate_metadata({"stitchsafe_metadata": 1, "period": [0, 2]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: malformed ...: 'period' must be ... integers, got [0, 2].
    """
    if not isinstance(meta, dict):
        raise _bad(f"expected a JSON object, got {type(meta).__name__}")
    meta = copy.deepcopy(meta)
    _check_version(meta)
    for key in ("dims", "channels_in", "channels_out"):
        if key in meta:
            _ints(key, [meta[key]])
    _check_axes(meta)
    _check_geometry(meta)
    _check_channel_roles(meta)
    _check_labels(meta.get("labels"))
    _check_loss(meta.get("loss"))
    norm = meta.get("normalization")
    if norm is not None and (not isinstance(norm, dict) or not isinstance(norm.get("method"), str)):
        raise _bad(f"'normalization' must be an object with a 'method' string, got {norm!r}")
    if "architecture" in meta and not isinstance(meta["architecture"], dict):
        raise _bad("'architecture' must be an object")
    return meta


def _bad(msg: str) -> StitchsafeError:
    """The error for metadata that breaks the schema."""
    return StitchsafeError(f"malformed stitchsafe metadata: {msg}.")


def _ints(key: str, value: Any, *, minimum: int = 1, length: int | None = None) -> list[int]:
    """``value`` as a non-empty list of integers >= ``minimum`` (of ``length``, if given)."""
    ok = isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value
    )
    if not ok or (length is not None and len(value) != length) or not value:
        need = "positive" if minimum == 1 else "non-negative"
        size = f" of length {length}" if length is not None else ""
        raise _bad(f"{key!r} must be a list{size} of {need} integers, got {value!r}")
    return list(value)


def _number(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    """A non-negative int (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_version(meta: dict[str, Any]) -> None:
    """The schema version is the one this stitchsafe reads."""
    version = meta.get("stitchsafe_metadata")
    if version != METADATA_VERSION:
        if isinstance(version, int) and version > METADATA_VERSION:
            raise StitchsafeError(
                f"the model's metadata has schema version {version}, newer than this stitchsafe "
                f"understands ({METADATA_VERSION}); upgrade stitchsafe."
            )
        raise _bad(f"'stitchsafe_metadata' must be {METADATA_VERSION}, got {version!r}")


def _check_axes(meta: dict[str, Any]) -> None:
    """The per-axis entries have the right shapes, one value per spatial axis."""
    dims = meta.get("dims")
    if "pooling_factors" in meta:
        pf = meta["pooling_factors"]
        if not isinstance(pf, list) or not pf:
            raise _bad(f"'pooling_factors' must be a list of levels, got {pf!r}")
        for level in pf:
            _ints("pooling_factors", level, length=dims)
        dims = dims or len(pf[0])
        _ints("pooling_factors", [len(level) for level in pf], minimum=dims, length=len(pf))
    if "period" in meta:
        _ints("period", meta["period"], length=dims)
        dims = dims or len(meta["period"])
    if "halo" in meta:
        halo = meta["halo"]
        if not isinstance(halo, list) or (dims is not None and len(halo) != dims):
            raise _bad(f"'halo' must be a list of [lo, hi] pairs, one per axis, got {halo!r}")
        for h in halo:
            _ints("halo", h, minimum=0, length=2)
    if "valid_input" in meta:
        vi = meta["valid_input"]
        if not isinstance(vi, dict) or "min" not in vi or "step" not in vi:
            raise _bad(f"'valid_input' must be {{'min': [...], 'step': [...]}}, got {vi!r}")
        _ints("valid_input.min", vi["min"], length=dims)
        _ints("valid_input.step", vi["step"], length=dims)


def _check_geometry(meta: dict[str, Any]) -> None:
    """The geometry entries come in complete sets and agree with each other."""
    if ("halo" in meta) != ("valid_input" in meta):
        raise _bad("'halo' and 'valid_input' must be given together (or neither)")
    if "halo" in meta and "period" not in meta and "pooling_factors" not in meta:
        raise _bad("'halo' and 'valid_input' need 'period' or 'pooling_factors'")
    if "period" in meta and "pooling_factors" in meta:
        product = pooling_product(meta["pooling_factors"])
        if tuple(meta["period"]) != product:
            raise _bad(
                f"'period' {meta['period']} is not the product {list(product)} of "
                f"'pooling_factors' {meta['pooling_factors']}"
            )
    if "halo" in meta:
        metadata_geometry(meta)  # the values must also make a consistent geometry


def _check_channel_roles(meta: dict[str, Any]) -> None:
    """``channel_roles``: strings, one per output channel."""
    roles = meta.get("channel_roles")
    if roles is not None and (
        not isinstance(roles, list)
        or not all(isinstance(r, str) for r in roles)
        or ("channels_out" in meta and len(roles) != meta["channels_out"])
    ):
        raise _bad(
            f"'channel_roles' must be a list of strings, one per output channel, got {roles!r}"
        )


def _check_labels(labels: Any) -> None:
    """The optional ``labels`` entry (labelling defaults)."""
    if labels is None:
        return
    if not isinstance(labels, dict):
        raise _bad(f"'labels' must be an object, got {labels!r}")
    t = labels.get("threshold", 1.0)
    m = labels.get("min_size", 0)
    p = labels.get("foreground_threshold", 0.5)
    if not (_number(t) and t > 0):
        raise _bad(f"'labels.threshold' must be a positive number, got {t!r}")
    if not _count(m):
        raise _bad(f"'labels.min_size' must be a non-negative integer, got {m!r}")
    if not (_number(p) and 0 < p < 1):
        raise _bad(f"'labels.foreground_threshold' must lie strictly in (0, 1), got {p!r}")
    _check_seeds(labels)


def _check_seeds(labels: dict[str, Any]) -> None:
    """The seeded variant's entries of ``labels``."""
    st = labels.get("seed_threshold")
    sp = labels.get("seed_foreground_threshold", 0.5)
    g = labels.get("grow", 0)
    if st is not None and not (_number(st) and st > 0):
        raise _bad(f"'labels.seed_threshold' must be a positive number or null, got {st!r}")
    if not (_number(sp) and 0 < sp < 1):
        raise _bad(f"'labels.seed_foreground_threshold' must lie strictly in (0, 1), got {sp!r}")
    if not _count(g):
        raise _bad(f"'labels.grow' must be a non-negative integer, got {g!r}")
    if g and st is None:
        raise _bad("'labels.grow' needs 'labels.seed_threshold'")


def _check_loss(loss: Any) -> None:
    """The optional ``loss`` entry: free-form, but its margins are positive numbers."""
    if loss is None:
        return
    if not isinstance(loss, dict):
        raise _bad(f"'loss' must be an object, got {loss!r}")
    for key in ("delta_v", "delta_d"):
        if key in loss and not (_number(loss[key]) and loss[key] > 0):
            raise _bad(f"'loss.{key}' must be a positive number, got {loss[key]!r}")


# ------------------------------------------------------------------------ geometry


def pooling_product(levels: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The period: the product of the pooling factors of all levels, per axis.

    >>> pooling_product([[1, 2, 2], [2, 2, 2]])
    (2, 4, 4)
    """
    return tuple(math.prod(level[a] for level in levels) for a in range(len(levels[0])))


def metadata_geometry(
    meta: dict[str, Any] | None, *, channels_in: int = 1
) -> tuple[ModelGeometry | None, tuple[int, ...] | None]:
    """``(complete geometry or None, period or None)`` declared by the metadata."""
    if not meta:
        return None, None
    period = tuple(meta["period"]) if "period" in meta else None
    if period is None and "pooling_factors" in meta:
        period = pooling_product(meta["pooling_factors"])
    if period is None or "halo" not in meta:
        return None, period
    try:
        geometry = ModelGeometry(
            period=period,
            halo=tuple((int(lo), int(hi)) for lo, hi in meta["halo"]),
            min_input=tuple(meta["valid_input"]["min"]),
            step=tuple(meta["valid_input"]["step"]),
            channels_in=int(meta.get("channels_in", channels_in)),
            channels_out=int(meta.get("channels_out", 1)),
        )
    except StitchsafeError as e:
        raise StitchsafeError(f"malformed stitchsafe metadata: {e}") from None
    except (TypeError, ValueError, KeyError) as e:
        raise StitchsafeError(f"malformed stitchsafe metadata: {e!r}.") from None
    return geometry, period
