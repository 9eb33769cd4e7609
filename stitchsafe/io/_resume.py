"""Resume an interrupted ``predict``: a per-tile done-mask and a fingerprint of the run.

A run stores with its output image (attributes ``stitchsafe.run``) what determines every
output voxel: the tile plan, a SHA-256 of the model file, the normalisation, the pad mode,
the precision and the embeddings' dtype. Next to the image's level-0 array it keeps a
``uint8`` array with one entry per tile of the plan's grid (``stitchsafe-done``), set to
1 only after *all* of the tile's chunks are written. ``--resume`` reruns the tiles still
0, after checking that nothing in the fingerprint changed; a chunk half-written when the
process died belongs to a tile still marked 0, so it is written again.

Checking is one read of the mask (a million tiles are 1 MB, in chunks of 64**d tiles),
not one query per tile.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import zarr

from ..errors import StitchsafeError
from ..geometry import Plan, Tile

__all__ = [
    "DONE",
    "DoneMask",
    "TileSubset",
    "check_fingerprint",
    "file_sha256",
    "run_fingerprint",
]

DONE = "stitchsafe-done"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (or of every file of a directory, in sorted order)."""
    digest = hashlib.sha256()
    paths = [os.fspath(path)]
    if os.path.isdir(paths[0]):
        paths = sorted(
            os.path.join(root, name) for root, _, names in os.walk(paths[0]) for name in names
        )
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run_fingerprint(
    plan: Plan,
    *,
    model_sha256: str,
    normalization: dict[str, Any],
    pad_mode: str,
    precision: str,
    embeddings_dtype: str,
    approximate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (JSON-ready).

    ``approximate`` (approximate mode only, e.g. ``{"tolerance": 1e-3}``) is added as a
    field of its own; exact runs' fingerprints do not have it.
    """
    fingerprint: dict[str, Any] = {
        "plan": {
            "volume_shape": list(plan.volume_shape),
            "tile_shape": list(plan.tile_shape),
            "grid_shape": list(plan.grid_shape),
            "period": list(plan.geometry.period),
            "halo": [list(h) for h in plan.geometry.halo],
            "channels_out": plan.geometry.channels_out,
        },
        "model_sha256": model_sha256,
        "normalization": normalization,
        "pad_mode": pad_mode,
        "precision": precision,
        "embeddings_dtype": embeddings_dtype,
    }
    if approximate is not None:
        fingerprint["approximate"] = approximate
    return fingerprint


def check_fingerprint(stored: Any, current: dict[str, Any], where: str) -> None:
    """Raise StitchsafeError naming what changed since the interrupted run."""
    if not isinstance(stored, dict):
        raise StitchsafeError(
            f"{where} was not written by a resumable stitchsafe run (no run fingerprint); "
            "rerun with --overwrite to start again."
        )
    keys = [*current, *(k for k in ("approximate",) if k in stored and k not in current)]
    changed = [k for k in keys if _normal(stored.get(k)) != _normal(current.get(k))]
    if changed:
        what = {
            "plan": "the tile plan (volume shape, --tile-shape or model geometry)",
            "model_sha256": "the model file",
            "normalization": "the intensity normalisation",
            "pad_mode": "--pad-mode",
            "precision": "--precision",
            "embeddings_dtype": "--embeddings-dtype",
            "approximate": "--allow-approximate/--tolerance (approximate mode)",
        }
        names = ", ".join(what.get(k, k) for k in changed)
        raise StitchsafeError(
            f"cannot resume {where}: {names} changed since the interrupted run, so finished "
            "tiles would not match new ones. Rerun with the same settings, or with "
            "--overwrite to start again."
        )


def _normal(value: Any) -> Any:
    """JSON round trip: tuples and lists, ints and floats compare alike."""
    return json.loads(json.dumps(value))


class TileSubset(Sequence[Tile]):
    """Some of a plan's tiles, by flat index: 8 bytes per tile, Tiles made on demand.

    >>> from stitchsafe.geometry import make_plan, unet_geometry
    >>> plan = make_plan((8, 8), unet_geometry([(2, 2)]), tile_shape=(2, 2))
    >>> subset = TileSubset(plan, np.array([1, 5]))
    >>> len(subset), [t.index for t in subset], subset[-1].index
    (2, [(0, 1), (1, 1)], (1, 1))
    """

    def __init__(self, plan: Plan, indices: np.ndarray) -> None:
        self.plan = plan
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    @overload
    def __getitem__(self, i: int) -> Tile: ...

    @overload
    def __getitem__(self, i: slice) -> TileSubset: ...

    def __getitem__(self, i: int | slice) -> Tile | TileSubset:
        if isinstance(i, slice):
            return TileSubset(self.plan, self.indices[i])
        return self.plan.tile(int(self.indices[i]))

    def __iter__(self) -> Iterator[Tile]:
        for i in self.indices:
            yield self.plan.tile(int(i))


@dataclass
class DoneMask:
    """The per-tile done flags of one output image (a zarr array beside level 0)."""

    array: Any
    grid_shape: tuple[int, ...]
    flush_seconds: float = 1.0

    def __post_init__(self) -> None:
        self._pending: list[tuple[int, ...]] = []
        self._last = time.monotonic()

    @classmethod
    def create(cls, group: str, image: str, grid_shape: Sequence[int]) -> DoneMask:
        grid = tuple(int(g) for g in grid_shape)
        arr = zarr.create_array(
            store=os.path.join(group, *image.split("/"), DONE),
            shape=grid,
            chunks=tuple(min(g, 64) for g in grid),
            dtype="uint8",
            fill_value=0,
            overwrite=True,
        )
        return cls(arr, grid)

    @classmethod
    def open(cls, group: str, image: str, grid_shape: Sequence[int]) -> DoneMask:
        path = os.path.join(group, *image.split("/"), DONE)
        try:
            arr = zarr.open_array(store=path, mode="r+")
        except Exception:  # noqa: BLE001 - any failure means: no usable mask
            raise StitchsafeError(
                f"{path} is missing or unreadable, so which tiles are finished is unknown; "
                "rerun with --overwrite to start again."
            ) from None
        if tuple(arr.shape) != tuple(grid_shape):
            raise StitchsafeError(
                f"{path} has shape {tuple(arr.shape)}, not the plan's tile grid "
                f"{tuple(grid_shape)}; rerun with --overwrite to start again."
            )
        return cls(arr, tuple(int(g) for g in grid_shape))

    def done(self) -> np.ndarray:
        """The whole mask as booleans (one read)."""
        return np.asarray(self.array[...]) > 0

    def remaining(self, plan: Plan) -> TileSubset:
        """The plan's tiles not yet marked done, in plan order (a lazy sequence)."""
        return TileSubset(plan, np.flatnonzero(self.done().ravel() == 0))

    def mark(self, tiles: Iterable[Tile]) -> None:
        """Record finished tiles; written to disk at most every ``flush_seconds``."""
        self._pending.extend(t.index for t in tiles)
        if time.monotonic() - self._last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the pending marks (chunk by chunk, only the chunks touched)."""
        if not self._pending:
            return
        index = np.array(self._pending, dtype=np.int64).reshape(-1, len(self.grid_shape))
        self._pending = []
        chunks = tuple(int(c) for c in self.array.chunks)
        keys = index // np.array(chunks)
        for key in np.unique(keys, axis=0):
            sel = tuple(
                slice(k * c, min((k + 1) * c, g)) for k, c, g in zip(key, chunks, self.grid_shape)
            )
            block = np.asarray(self.array[sel])
            inside = index[(keys == key).all(axis=1)] - np.array([s.start for s in sel])
            block[tuple(inside.T)] = 1
            self.array[sel] = block
        self._last = time.monotonic()
