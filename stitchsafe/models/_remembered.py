"""Geometry verdicts remembered between runs, keyed by the model's bytes.

Resolving a model's geometry runs forward passes: a cross-check of declared geometry
takes eight in float64 on the CPU (a fraction of a second for the bundled models, about
30 s for a 32-feature 3-D U-Net on two cores), and probing a model that declares nothing
takes many more. The verdict depends only on the model's files, the geometry flags and
the check itself, so a successful one is kept as a small JSON file in the cache folder and
later runs of the same bytes read it instead of probing again. A changed file, other
flags, another torch minor version or another version of the check miss the cache; a
refusal (mismatching or unstitchable geometry) is never kept, so it is found again by
every run.

The folder is ``$STITCHSAFE_CACHE_DIR/geometry``, else ``$XDG_CACHE_HOME/stitchsafe/
geometry``, else ``~/.cache/stitchsafe/geometry``; ``STITCHSAFE_CACHE_DIR=off`` turns the
cache off. A folder that cannot be written, or an entry that cannot be read, only means
probing again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..geometry import ModelGeometry
from ..io import file_sha256
from ._loaded import LoadedModel
from ._probe_runner import log_probe
from ._resolve import resolve_geometry

__all__ = ["CACHE_ENV", "geometry_cache_dir", "remembered_geometry"]

CACHE_ENV = "STITCHSAFE_CACHE_DIR"
# Bump when what resolve_geometry checks changes: older verdicts are then not trusted.
CHECK_VERSION = 1
_OFF = {"", "0", "off", "no", "none", "false"}
_LOG = logging.getLogger(__name__)


def geometry_cache_dir() -> Path | None:
    """The folder of remembered geometry verdicts; None when the cache is off."""
    given = os.environ.get(CACHE_ENV)
    if given is not None:
        return None if given.strip().lower() in _OFF else Path(given).expanduser() / "geometry"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "stitchsafe" / "geometry"


def remembered_geometry(
    model: LoadedModel,
    *,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    depth: int | None = None,
) -> tuple[ModelGeometry, str]:
    """:func:`resolve_geometry`, or its earlier verdict for the same bytes and flags.

    Raises what :func:`resolve_geometry` raises (refusals are never remembered).
    """
    folder = geometry_cache_dir()
    entry = None if folder is None else folder / f"{_key(model, pooling_factors, depth)}.json"
    known = None if entry is None else _read(entry, model)
    if known is not None:
        return known
    start = time.perf_counter()
    geometry, source = resolve_geometry(model, pooling_factors=pooling_factors, depth=depth)
    if entry is not None:
        _write(entry, model, geometry, source, time.perf_counter() - start)
    return geometry, source


def _key(
    model: LoadedModel,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None,
    depth: int | None,
) -> str:
    """What the verdict depends on, hashed: the files' bytes, the flags, torch, the check."""
    files = model.files or (os.path.abspath(model.path),)
    what = {
        "check": CHECK_VERSION,
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "format": model.format,
        "files": [file_sha256(f) for f in files],
        "pooling_factors": json.loads(json.dumps(pooling_factors)),
        "depth": depth,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _read(entry: Path, model: LoadedModel) -> tuple[ModelGeometry, str] | None:
    """The remembered verdict, or None (no entry, or one that cannot be read)."""
    try:
        record = json.loads(entry.read_text())
        geometry = ModelGeometry.from_dict(record["geometry"])
        source = str(record["source"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        _LOG.info("ignoring the unreadable geometry cache entry %s (%s)", entry, e)
        return None
    if geometry.dims != model.dims or geometry.channels_in != model.channels_in:
        return None
    log_probe(
        model,
        f"geometry from {source}, as an earlier run found it on {record.get('checked', '?')} "
        f"({record.get('cost', '?')} of forward passes then); remembered in {entry}.",
    )
    return geometry, source


def _write(entry: Path, model: LoadedModel, geometry: ModelGeometry, source: str, s: float) -> None:
    """Keep the verdict (atomically; a folder that cannot be written is only logged)."""
    record: dict[str, Any] = {
        "model": os.path.abspath(model.path),
        "source": source,
        "geometry": geometry.to_dict(),
        "checked": datetime.date.today().isoformat(),
        "cost": f"{s:.1f} s",
    }
    tmp = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, entry)
    except OSError as e:
        _LOG.info("could not remember the geometry in %s (%s); later runs probe again", entry, e)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
