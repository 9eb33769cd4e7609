"""Small zarr / OME-Zarr images written to disk for the volume, padding and output tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

RNG = np.random.default_rng(42)


def random_image(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return RNG.integers(0, 1000, size=shape).astype(dtype)


def write_zarr(path: Path, data: np.ndarray, *, fmt: int = 3, chunks: Any = None) -> str:
    chunks = chunks or tuple(max(1, s // 2) for s in data.shape)
    a = zarr.create_array(
        str(path), shape=data.shape, dtype=data.dtype, chunks=chunks, zarr_format=fmt
    )
    a[...] = data
    return str(path)


def write_ome(
    path: Path,
    data: np.ndarray,
    *,
    version: str,
    axes: list[dict[str, Any]],
    scale: list[float] | None = None,
) -> str:
    """A minimal OME-Zarr image written by hand: level "0" plus a dummy level "1"."""
    fmt = 3 if version == "0.5" else 2
    g = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    g.create_array("0", shape=data.shape, dtype=data.dtype, chunks=data.shape)[...] = data
    g.create_array("1", shape=data.shape, dtype=data.dtype, chunks=data.shape)
    ms = {
        "axes": axes,
        "datasets": [
            {
                "path": p,
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale or [1.0] * data.ndim}
                ],
            }
            for p in ("0", "1")
        ],
    }
    if version == "0.5":
        g.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        g.attrs["multiscales"] = [{"version": "0.4", **ms}]
    return str(path)


def axis(name: str, kind: str, unit: str | None = None) -> dict[str, Any]:
    d = {"name": name, "type": kind}
    if unit:
        d["unit"] = unit
    return d
