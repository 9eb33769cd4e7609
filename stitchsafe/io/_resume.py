"""Resume an interrupted ``predict``: a per-tile done-mask and a fingerprint of the run.

A run stores with its output image (attributes ``stitchsafe.run``) what determines every
output voxel: the input's identity (:mod:`._identity`: path, metadata and a SHA-256 of a
sample of its data), the tile plan, a SHA-256 of the model file and of every file that
feeds the model, the normalisation, the pad mode, the precision and the embeddings'
dtype. In the container's bookkeeping folder (:mod:`._bookkeeping`:
``.stitchsafe/<image>/done``, outside every OME-Zarr image) it keeps a ``uint8`` array with
one entry per tile of the plan's grid, set to 1 only after *all* of the tile's chunks are
written. ``--resume`` reruns the tiles still 0, after checking that nothing in
the fingerprint changed; a chunk half-written when the process died belongs to a tile
still marked 0, so it is written again.

The mask is cross-checked against the stored objects present (a tile's shard, or its one
chunk when unsharded): where the image's attributes name the array its tiles write
(``stitchsafe.tile_array``), a tile marked done whose shard is missing is computed again.
Recomputing, not refusing: embeddings store every tile's shard, but a labels tile array
(``--no-embeddings``) stores none for a tile that is all background (zarr leaves out
chunks equal to the fill value there), so a missing one is not always a lost one, and
computing a tile again gives the same voxels.

Checking is one read of the mask (a million tiles are 1 MB) and one listing of the tile
array's chunks; plans of over :data:`MAX_RESUME_TILES` tiles are refused before either.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..errors import StitchsafeError
from ..geometry import Plan, Tile, blocked_order
from ._bookkeeping import done_mask_path, existing_done_mask
from ._identity import input_differences
from ._stored import tiles_stored
from ._tile_order import TileSubset
from ._zarr_meta import zarr_node

__all__ = [
    "MAX_RESUME_TILES",
    "TILE_ARRAY",
    "DoneMask",
    "check_fingerprint",
    "file_sha256",
    "run_fingerprint",
    "with_sources",
]

# The image attribute (inside ``stitchsafe``) naming the array whose chunks the tiles write.
TILE_ARRAY = "tile_array"
# A resume holds a flag and an index per tile: 2**25 tiles are at most ~350 MB.
MAX_RESUME_TILES = 1 << 25


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
    physical: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (JSON-ready).

    ``approximate`` (approximate mode only, e.g. ``{"tolerance": 1e-3}``) is added as a
    field of its own; exact runs' fingerprints do not have it. ``physical`` (the voxel
    size, units and translation written into the output's metadata when it was created:
    :meth:`stitchsafe.io.PhysicalScale.to_dict`) too. :func:`with_sources` adds the
    input's identity and the model's files.
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
    if physical is not None:
        fingerprint["physical"] = physical
    return fingerprint


def with_sources(
    fingerprint: dict[str, Any],
    *,
    input_identity: dict[str, Any],
    model_files: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """``fingerprint`` with what the run reads: the fields ``"input"`` and ``"model_files"``.

    ``input_identity`` is :meth:`stitchsafe.io.InputIdentity.to_dict`; ``model_files`` the
    ``(name, SHA-256)`` of every file that feeds the model.
    """
    files = [{"file": name, "sha256": sha} for name, sha in model_files]
    return {**fingerprint, "input": input_identity, "model_files": files}


_WHAT = {
    "plan": "the tile plan (volume shape, --tile-shape or model geometry)",
    "model_sha256": "the model file",
    "normalization": "the intensity normalisation",
    "pad_mode": "--pad-mode",
    "precision": "--precision",
    "embeddings_dtype": "--embeddings-dtype",
    "approximate": "--allow-approximate/--tolerance (approximate mode)",
    "physical": "the voxel size, units or translation (--voxel-size, --unit, or the input's "
    "metadata)",
}


def check_fingerprint(stored: Any, current: dict[str, Any], where: str) -> None:
    """Raise StitchsafeError naming what changed since the interrupted run.

    An input that differs is named field by field (its path, its data...); a stored
    fingerprint without the input's identity (outputs of stitchsafe before it recorded
    one) is refused, since nothing tells whether the input is the same.
    """
    if not isinstance(stored, dict):
        raise StitchsafeError(
            f"{where} was not written by a resumable stitchsafe run (no run fingerprint); "
            "rerun with --overwrite to start again."
        )
    stored, current = _normal(stored), _normal(current)
    if "input" in current and "input" not in stored:
        raise StitchsafeError(
            f"cannot resume {where}: it was written by an earlier stitchsafe that did not "
            "record which input the run read, so a resume could mix tiles of two inputs. "
            "Rerun with --overwrite to start again."
        )
    was_input = stored.get("input") if isinstance(stored.get("input"), dict) else {}
    inputs = input_differences(stored.get("input"), current["input"]) if "input" in current else []
    problems = [f"the input differs from the run being resumed: {'; '.join(inputs)}"]
    problems = problems if inputs else []
    changed = [_WHAT.get(k, k) for k in _changed_fields(stored, current)]
    changed += _changed_model_files(stored, current)
    if changed:
        problems.append(f"{', '.join(changed)} changed since the interrupted run")
    if not problems:
        return
    remedy = "Rerun with the same settings, or with --overwrite to start again."
    if inputs:
        key = "" if was_input.get("key") is None else f" (--input-key {was_input['key']})"
        remedy = (
            f"Resume with the original input {was_input.get('path')!r}{key} and the same "
            "settings, or rerun with --overwrite to start again."
        )
    raise StitchsafeError(
        f"cannot resume {where}: {'; '.join(problems)}, so finished tiles would not match new "
        f"ones. {remedy}"
    )


def _changed_fields(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields other than the input and the model's files that differ."""
    skip = {"input", "model_files"}
    if isinstance(stored.get("model_files"), list) and "model_files" in current:
        skip.add("model_sha256")  # the model's files include the model file
    keys = [*current, *(k for k in ("approximate",) if k in stored and k not in current)]
    return [k for k in keys if k not in skip and stored.get(k) != current.get(k)]


def _changed_model_files(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``["the model file(s) (changed: a.pt)"]`` when the model's files differ, else ``[]``."""
    was, now = stored.get("model_files"), current.get("model_files")
    if not isinstance(was, list) or not isinstance(now, list):
        return []  # without them in both, "model_sha256" is compared instead
    was_hashes = sorted(str(f.get("sha256")) for f in was if isinstance(f, dict))
    if was_hashes == sorted(f["sha256"] for f in now):
        return []
    names = [f["file"] for f in now if f["sha256"] not in was_hashes]
    detail = f"changed: {', '.join(names)}" if names else f"{len(was)} files before, {len(now)} now"
    return [f"the model file(s) ({detail})"]


def _normal(value: Any) -> Any:
    """JSON round trip: tuples and lists, ints and floats compare alike."""
    return json.loads(json.dumps(value))


ORDER_BLOCK = "order_block"
"""Attribute of a done mask: the block of tiles its run goes in (absent: C order)."""


def _stored_block(arr: Any, grid: tuple[int, ...]) -> tuple[int, ...] | None:
    """The block a done mask records; ``None`` (C order) when absent or not one for
    ``grid`` (a mask written before runs were blocked)."""
    raw = arr.attrs.get(ORDER_BLOCK)
    if not isinstance(raw, list) or not all(type(b) is int for b in raw):
        return None
    try:
        blocked_order(grid, raw)
    except ValueError:
        return None
    return tuple(raw)


@dataclass
class DoneMask:
    """The per-tile done flags of one output image (a zarr array in the container's
    bookkeeping folder: :func:`stitchsafe.io.done_mask_path`).

    ``written`` (set by :meth:`open` from the image's ``stitchsafe.tile_array``
    attribute) is the array whose shards (chunks) the tiles write; :meth:`remaining` then also
    returns the tiles marked done whose chunk is missing there. ``block``: the blocks of
    tiles the run goes in (:func:`stitchsafe.geometry.blocked_order`; ``None``: C order),
    stored with the mask (attribute :data:`ORDER_BLOCK`) so that a resumed run keeps it.
    """

    array: Any
    grid_shape: tuple[int, ...]
    flush_seconds: float = 1.0
    written: str | None = None
    block: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self._pending: list[tuple[int, ...]] = []
        self._last = time.monotonic()

    @classmethod
    def create(
        cls,
        group: str,
        image: str,
        grid_shape: Sequence[int],
        block: Sequence[int] | None = None,
    ) -> DoneMask:
        grid = tuple(int(g) for g in grid_shape)
        order = None if block is None else tuple(int(b) for b in block)
        blocked_order(grid, order)  # a block that does not fit the grid: ValueError
        arr = zarr.create_array(
            store=done_mask_path(group, image),
            shape=grid,
            chunks=tuple(min(g, 64) for g in grid),
            dtype="uint8",
            fill_value=0,
            overwrite=True,
            attributes={} if order is None else {ORDER_BLOCK: list(order)},
        )
        return cls(arr, grid, block=order)

    @classmethod
    def open(cls, group: str, image: str, grid_shape: Sequence[int]) -> DoneMask:
        image_dir = os.path.join(group, *image.split("/"))
        path = existing_done_mask(group, image) or done_mask_path(group, image)
        grid = tuple(int(g) for g in grid_shape)
        if math.prod(grid) > MAX_RESUME_TILES:
            raise StitchsafeError(
                f"cannot resume {image_dir}: its tile plan has {math.prod(grid):,} tiles "
                f"(grid {grid}), more than the {MAX_RESUME_TILES:,} a resume keeps track of "
                "in memory; a tiling this fine is rarely meant. Rerun with --overwrite and a "
                "larger --tile-shape (or none: the default fits the device)."
            )
        try:
            arr = zarr.open_array(store=path, mode="r+")
        except Exception:  # noqa: BLE001 - any failure means: no usable mask
            raise StitchsafeError(
                f"{path} is missing or unreadable, so which tiles are finished is unknown; "
                "rerun with --overwrite to start again."
            ) from None
        if tuple(arr.shape) != grid:
            raise StitchsafeError(
                f"{path} has shape {tuple(arr.shape)}, not the plan's tile grid "
                f"{grid}; rerun with --overwrite to start again."
            )
        return cls(arr, grid, written=_tile_array(image_dir), block=_stored_block(arr, grid))

    def tiles(self, plan: Plan) -> TileSubset | None:
        """Every tile of ``plan`` in the run's order; ``None`` for C order (the plan)."""
        if self.block is None:
            return None
        return TileSubset(plan, blocked_order(self.grid_shape, self.block))

    def done(self) -> np.ndarray:
        """The whole mask as booleans (one read)."""
        return np.asarray(self.array[...]) > 0

    def remaining(self, plan: Plan, batch_size: int = 1) -> TileSubset:
        """The plan's tiles not yet done, in the run's order (:attr:`block`; a lazy
        sequence), as whole batches.

        Not done: marked 0, or marked 1 while the tile's chunk is missing in
        :attr:`written` (computed again; see the module's docstring). A batch of
        ``batch_size`` consecutive tiles of the run's order with any tile not done is
        returned whole, so that every tile runs in the batch it had in the full run
        (convolutions round differently in batches of another size): a resumed tile is
        bit-identical.
        """
        done = self.done()
        if self.written is not None:
            present = tiles_stored(self.written, self.grid_shape)
            if present is not None:
                done &= present
        run = blocked_order(self.grid_shape, self.block)
        todo = np.flatnonzero(~done.ravel()[run])  # positions in the run order
        if batch_size > 1 and todo.size:
            batches = np.unique(todo // batch_size)
            todo = (batches[:, None] * batch_size + np.arange(batch_size)).ravel()
            todo = todo[todo < done.size]
        return TileSubset(plan, run[todo])

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


def _tile_array(image_dir: str) -> str | None:
    """The array the image's tiles write (its ``stitchsafe.tile_array``), if it names one."""
    try:
        node = zarr_node(image_dir)
    except StitchsafeError:
        return None
    stitchsafe = node[2].get("stitchsafe") if node is not None else None
    name = stitchsafe.get(TILE_ARRAY) if isinstance(stitchsafe, dict) else None
    return os.path.join(image_dir, *name.split("/")) if isinstance(name, str) else None
