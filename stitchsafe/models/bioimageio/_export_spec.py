"""An exported package checked by ``bioimageio.spec``, and its ``config.stitchsafe`` read back.

:func:`validate_package` validates a written zip offline, with I/O checks (the files the
description names are opened and their SHA-256 compared; nothing is downloaded).
:func:`config_metadata` merges the stitchsafe metadata an exported package keeps in
``config.stitchsafe`` into the metadata the package reader derives from the description,
refusing a config that contradicts what the reader measured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import GeometryMismatchError, StitchsafeError
from .._metadata import validate_metadata
from ._spec_library import quiet_spec, spec_library

__all__ = ["config_metadata", "require_spec", "validate_package"]

# Entries the description itself states (and the reader derives): the config may not
# contradict them.
_CHECKED = ("dims", "channels_in", "channels_out", "period", "halo", "channel_roles")


def validate_package(path: str | os.PathLike[str]) -> str:
    """Validate a package offline with ``bioimageio.spec``; return its status.

    Raises
    ------
    StitchsafeError
        ``bioimageio.spec`` is not installed, or the package does not validate.
    """
    spec = spec_library("exporting bioimage.io packages (it validates what is written)")
    with (
        spec.ValidationContext(perform_io_checks=True, log_warnings=False, progressbar=False),
        quiet_spec(),
    ):
        descr = spec.load_description(
            Path(path), perform_io_checks=True, format_version="latest", progressbar=False
        )
    if isinstance(descr, spec.InvalidDescr):
        reason = "; ".join(line.strip("- ").strip() for line in descr.get_reason().splitlines())
        raise StitchsafeError(
            f"the exported package {os.fspath(path)!r} does not validate with bioimageio.spec: "
            f"{reason[:800]}. Please report this as a stitchsafe bug."
        )
    return str(descr.validation_summary.status)


def require_spec() -> None:
    """Refuse early (before anything is written) when ``bioimageio.spec`` is missing."""
    spec_library("exporting bioimage.io packages (it validates what is written)")


def config_metadata(derived: dict[str, Any], config: Any, where: str) -> dict[str, Any]:
    """The reader's ``derived`` metadata completed by a package's ``config.stitchsafe``.

    ``config`` is the description's ``config`` (a mapping or an object with a
    ``stitchsafe`` attribute); without ``config.stitchsafe`` ``derived`` is returned as it
    is. The config's entries (label defaults, loss, training record, the checkpoint's valid
    step) are added; what the description states and the reader derived (dims, channels,
    period, halo, channel roles) must agree with the config, else the package is refused.
    The reader's ``normalization``, ``architecture`` and ``bioimageio`` entries are kept.

    >>> derived = {"stitchsafe_metadata": 1, "dims": 2, "period": [2, 2]}
    >>> config = {"stitchsafe": {"stitchsafe_metadata": 1, "dims": 2, "period": [2, 2],
    ...                          "labels": {"min_size": 5}}}
    >>> config_metadata(derived, config, "p.zip")["labels"]
    {'min_size': 5}
    >>> config_metadata(derived, {}, "p.zip") == derived
    True
    """
    raw = config.get("stitchsafe") if isinstance(config, dict) else None
    if raw is None:
        raw = getattr(config, "stitchsafe", None)
    if raw is None:
        return derived
    try:
        stored = validate_metadata(dict(raw))
    except (StitchsafeError, TypeError, ValueError) as e:
        raise StitchsafeError(f"{where}: its config.stitchsafe is not usable: {e}") from None
    for key in _CHECKED:
        if key in stored and key in derived and stored[key] != derived[key]:
            raise GeometryMismatchError(
                f"{where}: its config.stitchsafe says {key} {stored[key]} but the package's "
                f"description and network give {derived[key]}. Fix or remove the config."
            )
    keep = {k: derived[k] for k in ("normalization", "architecture", "bioimageio") if k in derived}
    return validate_metadata({**derived, **stored, **keep})
