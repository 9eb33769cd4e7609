"""``stitchsafe info``: what an output written by ``predict`` (and ``segment``) holds.

Everything comes from the output itself: the image group's ``attributes["stitchsafe"]``
(plan, model, normalisation, run fingerprint, ``complete``), the per-tile done mask
(``stitchsafe-done``, see :mod:`stitchsafe.resume`), the label images' attributes and the
arrays' metadata and files. Nothing is recomputed and no model is loaded.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import StitchsafeError
from .resume import DONE
from .volume import _zarr_node

__all__ = ["ArrayInfo", "LabelsInfo", "OutputInfo", "find_images", "read_info"]

_HINT = "pass the zarr group that stitchsafe predict wrote into (its --output)"
_MAX_DEPTH = 4  # how deep below PATH output images are looked for


@dataclass(frozen=True)
class ArrayInfo:
    """One zarr array of an output.

    Attributes
    ----------
    path
        Path inside the output group, e.g. ``"embeddings/0"``.
    shape, dtype, chunks, shards
        As stored (``shards`` is ``None`` for unsharded arrays).
    stored_bytes
        Size of the array's files on disk (compressed chunks and metadata).
    nbytes
        Size of the data uncompressed.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    stored_bytes: int
    nbytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "chunks": list(self.chunks),
            "shards": None if self.shards is None else list(self.shards),
            "stored_bytes": self.stored_bytes,
            "bytes": self.nbytes,
        }


@dataclass(frozen=True)
class LabelsInfo:
    """One label image beside the embeddings (``<image>/labels/<name>``)."""

    name: str
    array: str
    complete: bool | None
    objects: int | None
    params: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "array": self.array,
            "complete": self.complete,
            "objects": self.objects,
            "params": self.params,
        }


@dataclass(frozen=True)
class OutputInfo:
    """What :func:`read_info` found in an output image.

    Attributes
    ----------
    group, image
        The output group's path and the image's path inside it.
    arrays
        Embeddings, done mask and label arrays.
    plan
        The stored plan (volume and tile shape, grid, period, halo, ...).
    model, input
        ``{"path", "format", "sha256", "geometry_source"}`` and ``{"path", "channels"}``.
    normalization, settings
        The intensity normalisation; pad mode, precision and embeddings dtype.
    complete
        The image's ``complete`` attribute (``None`` when absent).
    tiles_done, tiles_total
        From the done mask (``tiles_done`` is ``None`` without one).
    labels
        Label images derived from the embeddings.
    approximate
        The record of approximate mode (measured deviation, tolerance, halo), ``None``
        for an exact run.
    """

    group: str
    image: str
    arrays: tuple[ArrayInfo, ...]
    plan: dict[str, Any]
    model: dict[str, Any]
    input: dict[str, Any]
    normalization: dict[str, Any] | None
    settings: dict[str, Any]
    complete: bool | None
    tiles_done: int | None
    tiles_total: int | None
    seconds: float | None
    labels: tuple[LabelsInfo, ...]
    approximate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.group,
            "image": self.image,
            "arrays": [a.to_dict() for a in self.arrays],
            "plan": self.plan,
            "model": self.model,
            "input": self.input,
            "normalization": self.normalization,
            **self.settings,
            "complete": self.complete,
            "tiles": {"done": self.tiles_done, "total": self.tiles_total},
            "seconds": self.seconds,
            "labels": [lab.to_dict() for lab in self.labels],
            "approximate": self.approximate,
        }

    def describe(self) -> str:
        """Human-readable report (what ``stitchsafe info`` prints)."""
        p = self.plan
        state = {True: "complete", False: "INCOMPLETE", None: "completeness unknown"}
        lines = [f"stitchsafe output {self.group}, image {self.image}: {state[self.complete]}"]
        rows: list[tuple[str, str]] = []
        if p:
            rows.append(
                (
                    "plan",
                    f"volume {_x(p.get('volume_shape'))}; {p.get('tiles')} tiles "
                    f"({_x(p.get('grid_shape'))}) of {_x(p.get('tile_shape'))}; period "
                    f"{_x(p.get('period'))}; halo "
                    + ", ".join(f"({lo}, {hi})" for lo, hi in p.get("halo") or []),
                )
            )
        m = self.model
        rows.append(
            (
                "model",
                f"{m.get('path')} ({m.get('format')}, geometry from {m.get('geometry_source')})",
            )
        )
        rows.append(("model sha256", str(m.get("sha256"))))
        if self.input:
            rows.append(
                ("input", f"{self.input.get('path')}, {self.input.get('channels')} channel(s)")
            )
        rows.append(("normalisation", _describe_normalization(self.normalization)))
        rows.append(
            ("settings", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.settings.items()))
        )
        rows.append(("completeness", self._describe_completeness()))
        a = self.approximate
        if a:
            halo = ", ".join(f"({lo}, {hi})" for lo, hi in a.get("halo") or [])
            rows.append(
                (
                    "exactness",
                    f"APPROXIMATE (--allow-approximate): measured deviation "
                    f"{a.get('measured_deviation'):.2g} of max |output|, tolerance "
                    f"{a.get('tolerance'):.2g}; halo {halo}",
                )
            )
        else:
            rows.append(("exactness", "exact: tiles on the period lattice"))
        if not self.labels:
            rows.append(("labels", "none (predict --no-labels, or segment not run yet)"))
        for lab in self.labels:
            objects = "?" if lab.objects is None else str(lab.objects)
            params = ", ".join(f"{k} {v}" for k, v in (lab.params or {}).items() if v is not None)
            done = "" if lab.complete else " (INCOMPLETE)"
            rows.append(("labels", f"{lab.name}: {objects} objects{done}; {params}"))
        width = max(len(k) for k, _ in [*rows, ("arrays", "")])
        lines.append("  arrays")
        table = [
            (
                a.path,
                _x(a.shape),
                a.dtype,
                "chunks " + _x(a.chunks) + ("" if a.shards is None else f", shards {_x(a.shards)}"),
                f"{_size(a.stored_bytes)} on disk ({_size(a.nbytes)} uncompressed)",
            )
            for a in self.arrays
        ]
        widths = [max(len(r[i]) for r in table) for i in range(5)] if table else []
        for r in table:
            lines.append("    " + "  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip())
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        return "\n".join(lines)

    def _describe_completeness(self) -> str:
        tiles = (
            "tiles done unknown (no done mask)"
            if self.tiles_done is None
            else f"{self.tiles_done} / {self.tiles_total} tiles done"
        )
        if self.complete:
            took = f" in {self.seconds:.1f} s" if self.seconds is not None else ""
            return f"complete; {tiles}{took}"
        if self.complete is False:
            return f"INCOMPLETE: {tiles}; rerun the same predict command with --resume to finish"
        return tiles


def _x(v: Sequence[Any] | None) -> str:
    return "?" if v is None else " x ".join(str(i) for i in v)


def _size(n: int) -> str:
    """Decimal units.

    >>> _size(999), _size(12_345), _size(3_400_000_000)
    ('999 B', '12.3 kB', '3.4 GB')
    """
    if n < 1000:
        return f"{n} B"
    units = ("kB", "MB", "GB", "TB", "PB")
    i = min(len(units), int(math.log10(n) // 3))
    return f"{n / 1000**i:.1f} {units[i - 1]}"


def _describe_normalization(n: dict[str, Any] | None) -> str:
    if not n:
        return "unknown"
    method = n.get("method")
    if method == "none":
        return "none"
    pct = n.get("percentiles")
    how = f"{method} {tuple(pct)}" if pct else str(method)
    samples = f" from {n['samples']} values" if n.get("samples") else ""
    return f"{how}: offset {n.get('offset'):.6g}, scale {n.get('scale'):.6g}{samples}"


def _is_output_image(attrs: dict[str, Any]) -> bool:
    s = attrs.get("stitchsafe")
    return isinstance(s, dict) and isinstance(s.get("plan"), dict)


def find_images(group: str | os.PathLike[str]) -> list[str]:
    """Paths (inside ``group``) of the image groups that ``predict`` wrote, sorted.

    Arrays and non-zarr directories are not descended into, nor are the images found.
    """
    root = os.fspath(group)
    found: list[str] = []
    for here, dirs, _files in os.walk(root):
        depth = 0 if here == root else os.path.relpath(here, root).count(os.sep) + 1
        keep = []
        for d in sorted(dirs):
            node = _zarr_node(os.path.join(here, d))
            if node is None or node[0] != "group":
                continue
            if _is_output_image(node[2]):
                found.append(os.path.relpath(os.path.join(here, d), root).replace(os.sep, "/"))
            elif depth + 1 < _MAX_DEPTH:
                keep.append(d)
        dirs[:] = keep
    return sorted(found)


def _locate(path: str, image: str | None) -> tuple[str, str]:
    """``(group, image)`` of the output image that ``path`` (and ``image``) name."""
    if not os.path.exists(path):
        raise StitchsafeError(f"{path!r} does not exist; {_HINT}.")
    node = _zarr_node(path) if os.path.isdir(path) else None
    if node is None or node[0] != "group":
        what = "a zarr array" if node is not None else "not a zarr group"
        raise StitchsafeError(f"{path!r} is {what}; {_HINT}.")
    if image is not None:
        parts = [p for p in image.strip("/").split("/") if p and p not in (".", "..")]
        inner = _zarr_node(os.path.join(path, *parts)) if parts else None
        if inner is None or not _is_output_image(inner[2]):
            others = find_images(path)
            listed = f" It holds: {', '.join(others)}." if others else ""
            raise StitchsafeError(
                f"{path!r} holds no output image {image!r} written by stitchsafe predict."
                f"{listed} Pass one of those as --image, or leave --image out."
            )
        return path, "/".join(parts)
    if _is_output_image(node[2]):
        parent, name = os.path.split(os.path.normpath(path))
        return parent or ".", name
    images = find_images(path)
    if not images:
        raise StitchsafeError(
            f"{path!r} holds no output written by stitchsafe predict (no image group with a "
            f"stitchsafe plan in its attributes); {_HINT}."
        )
    if len(images) > 1 and "embeddings" not in images:
        raise StitchsafeError(
            f"{path!r} holds several stitchsafe outputs ({', '.join(images)}); choose one with "
            "--image."
        )
    return path, ("embeddings" if len(images) > 1 else images[0])


def _array_info(group: str, inner: str) -> ArrayInfo | None:
    import zarr

    where = os.path.join(group, *inner.split("/"))
    node = _zarr_node(where) if os.path.isdir(where) else None
    if node is None or node[0] != "array":
        return None
    arr = zarr.open_array(store=where, mode="r")
    stored = 0
    for here, _dirs, files in os.walk(where):
        for name in files:
            with contextlib.suppress(OSError):  # removed while we walk: no longer counts
                stored += os.lstat(os.path.join(here, name)).st_size
    shards = getattr(arr, "shards", None)
    dtype = np.dtype(arr.dtype)
    return ArrayInfo(
        path=inner,
        shape=tuple(int(s) for s in arr.shape),
        dtype=str(dtype),
        chunks=tuple(int(c) for c in arr.chunks),
        shards=None if shards is None else tuple(int(s) for s in shards),
        stored_bytes=stored,
        nbytes=math.prod(arr.shape) * dtype.itemsize,
    )


def _level0(attrs: dict[str, Any]) -> str:
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else {}
    ms = (ome.get("multiscales") or [{}])[0] if isinstance(ome, dict) else {}
    datasets = ms.get("datasets") or [{"path": "0"}]
    return str(datasets[0].get("path", "0"))


def _labels(group: str, image: str) -> list[tuple[LabelsInfo, str]]:
    labels_dir = os.path.join(group, *image.split("/"), "labels")
    node = _zarr_node(labels_dir) if os.path.isdir(labels_dir) else None
    if node is None or node[0] != "group":
        return []
    ome = node[2].get("ome") if isinstance(node[2].get("ome"), dict) else {}
    names = [str(n) for n in (ome or {}).get("labels", [])]
    out = []
    for name in names:
        label_node = _zarr_node(os.path.join(labels_dir, name))
        if label_node is None or label_node[0] != "group":
            continue
        attrs = label_node[2]
        s: dict[str, Any] = attrs["stitchsafe"] if isinstance(attrs.get("stitchsafe"), dict) else {}
        array = f"{image}/labels/{name}/{_level0(attrs)}"
        objects = s.get("objects")
        out.append(
            (
                LabelsInfo(
                    name=name,
                    array=array,
                    complete=s.get("complete"),
                    objects=None if objects is None else int(objects),
                    params=s.get("params"),
                ),
                array,
            )
        )
    return out


def read_info(path: str | os.PathLike[str], *, image: str | None = None) -> OutputInfo:
    """Describe the output image that ``predict`` wrote under ``path``.

    Parameters
    ----------
    path
        The zarr v3 group predict wrote into (its ``--output``, or the input's own
        container), or the output image group itself.
    image
        Path of the image inside ``path``. Default: the only output image found (at most
        four levels deep), or ``embeddings`` when there are several.

    Returns
    -------
    OutputInfo

    Raises
    ------
    StitchsafeError
        ``path`` is missing, not a zarr group, or holds no output written by stitchsafe.
    """
    import zarr

    group, image = _locate(os.fspath(path), image)
    image_dir = os.path.join(group, *image.split("/"))
    node = _zarr_node(image_dir)
    assert node is not None
    attrs = node[2]
    s: dict[str, Any] = attrs["stitchsafe"]
    stored_plan = dict(s.get("plan") or {})
    run: dict[str, Any] = s["run"] if isinstance(s.get("run"), dict) else {}
    model = dict(stored_plan.get("model") or {})
    model["sha256"] = run.get("model_sha256")
    model["geometry_source"] = stored_plan.get("geometry_source")
    plan = {k: v for k, v in stored_plan.items() if k not in ("model", "input", "geometry_source")}

    arrays = [
        _array_info(group, f"{image}/{_level0(attrs)}"),
        _array_info(group, f"{image}/{DONE}"),
    ]
    labels = _labels(group, image)
    arrays += [_array_info(group, array) for _, array in labels]
    if s.get("labels_only"):
        # A labels-only run (predict --no-embeddings): the image is the labels themselves.
        objects = s.get("objects")
        own = LabelsInfo(
            name=image,
            array=f"{image}/{_level0(attrs)}",
            complete=s.get("complete"),
            objects=None if objects is None else int(objects),
            params=s.get("params"),
        )
        labels = [(own, own.array), *labels]

    tiles_done = None
    tiles_total = plan.get("tiles")
    done_dir = os.path.join(image_dir, DONE)
    if os.path.isdir(done_dir) and _zarr_node(done_dir) is not None:
        mask = np.asarray(zarr.open_array(store=done_dir, mode="r")[...])
        tiles_done, tiles_total = int(np.count_nonzero(mask)), int(mask.size)
    settings = {
        "pad_mode": s.get("pad_mode", run.get("pad_mode")),
        "precision": run.get("precision"),
        "embeddings_dtype": run.get("embeddings_dtype"),
    }
    if s.get("labels_only"):
        settings["embeddings_dtype"] = "none written (labels only)"
    seconds = s.get("seconds")
    complete = s.get("complete")
    return OutputInfo(
        group=group,
        image=image,
        arrays=tuple(a for a in arrays if a is not None),
        plan=plan,
        model=model,
        input=dict(stored_plan.get("input") or {}),
        normalization=s.get("normalization"),
        settings=settings,
        complete=None if complete is None else bool(complete),
        tiles_done=tiles_done,
        tiles_total=None if tiles_total is None else int(tiles_total),
        seconds=None if seconds is None else float(seconds),
        labels=tuple(lab for lab, _ in labels),
        approximate=s.get("approximate"),
    )
