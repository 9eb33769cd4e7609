"""What ``stitchsafe info`` reports: :class:`OutputInfo` and its parts, as JSON and as text.

The values are filled by :func:`stitchsafe.reports.read_info` from the output itself;
:meth:`OutputInfo.describe` is the text ``stitchsafe info`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..io import InputSelection, PhysicalScale, Pyramid
from ..labels import ResultStats, nonfinite_warning, result_warnings
from ..progress import plural

__all__ = ["ArrayInfo", "LabelsInfo", "OutputInfo"]


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
        """The array as JSON values."""
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
    """One label image (``<image>/labels/<name>`` of the image it belongs to), with its voxel
    size, units and translation (``None`` when its metadata is unreadable)."""

    name: str
    array: str
    complete: bool | None
    objects: int | None
    params: dict[str, Any] | None
    physical: PhysicalScale | None = None
    content: ResultStats | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What looked wrong in these labels when they were made (the warnings predict or
        segment printed; none when the numbers were not stored), each naming the image.

        >>> stats = ResultStats(10, objects=0, labelled=0, largest=0, linked=0).to_dict()
        >>> LabelsInfo.from_record("cells", "a", {"content": stats}).warnings[0][:25]
        'labels cells: no objects:'
        """
        if self.content is None:
            return ()
        found = result_warnings(self.content, command="segment")
        return tuple(f"labels {self.name}: {w}" for w in found)

    @classmethod
    def from_record(
        cls,
        name: str,
        array: str,
        record: dict[str, Any],
        physical: PhysicalScale | None = None,
    ) -> LabelsInfo:
        """The label image ``name`` from its ``attributes["stitchsafe"]`` record.

        >>> LabelsInfo.from_record("cells", "e/labels/cells/0", {"objects": 3.0}).objects
        3
        """
        objects = record.get("objects")
        return cls(
            name=name,
            array=array,
            complete=record.get("complete"),
            objects=None if objects is None else int(objects),
            params=record.get("params"),
            physical=physical,
            content=ResultStats.from_dict(record.get("content")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The label image as JSON values."""
        return {
            "name": self.name,
            "array": self.array,
            "complete": self.complete,
            "objects": self.objects,
            "params": self.params,
            "physical": None if self.physical is None else self.physical.to_dict(),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class OutputInfo:
    """What :func:`read_info` found in an output image.

    Attributes
    ----------
    group, image
        The output group's path and the image's path inside it (``""``: the group's root
        is the image, in a container that predict made).
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
    physical
        Voxel size, units and translation of the image's spatial axes, from its OME-Zarr
        metadata (``None`` when unreadable).
    pyramids
        The resolution levels of the image and of each label image, as their OME-Zarr
        ``multiscales`` list them.
    nonfinite
        NaN or infinite embedding values the run that completed the image counted in the
        tiles it ran (``None``: not counted, e.g. tiles run on workers).
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
    physical: PhysicalScale | None = None
    pyramids: tuple[Pyramid, ...] = ()
    nonfinite: int | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What looked wrong when the output was made: each label image's warnings, and
        NaN or infinite embeddings (when no label image already says so)."""
        found = [w for lab in self.labels for w in lab.warnings]
        counted = any(lab.content is not None and lab.content.nonfinite for lab in self.labels)
        if self.nonfinite and not counted:
            found.insert(0, nonfinite_warning(self.nonfinite, "segment"))
        return tuple(found)

    def to_dict(self) -> dict[str, Any]:
        """The output as JSON values (what ``stitchsafe info --json`` prints)."""
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
            "physical": None if self.physical is None else self.physical.to_dict(),
            "pyramids": [p.to_dict() for p in self.pyramids],
            "warnings": list(self.warnings),
        }

    def describe(self) -> str:
        """Human-readable report (what ``stitchsafe info`` prints)."""
        state = {True: "complete", False: "INCOMPLETE", None: "completeness unknown"}
        rows = [*self._run_rows(), self._exactness_row(), *self._label_rows()]
        rows += [("pyramid", f"{p.image or '(root)'}: {p.describe()}") for p in self.pyramids]
        width = max(len(k) for k, _ in [*rows, ("arrays", "")])
        image = self.image or "(the container's root)"
        lines = [f"stitchsafe output {self.group}, image {image}: {state[self.complete]}"]
        lines.append("  arrays")
        lines += self._array_lines()
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        return "\n".join(lines)

    def _run_rows(self) -> list[tuple[str, str]]:
        """Rows for the plan, model, input, normalisation, settings and completeness."""
        p, m = self.plan, self.model
        rows: list[tuple[str, str]] = []
        if p:
            halo = ", ".join(f"({lo}, {hi})" for lo, hi in p.get("halo") or [])
            rows.append(
                (
                    "plan",
                    f"volume {_x(p.get('volume_shape'))}; {p.get('tiles')} tiles "
                    f"({_x(p.get('grid_shape'))}) of {_x(p.get('tile_shape'))}; period "
                    f"{_x(p.get('period'))}; halo " + halo,
                )
            )
        where = f"{m.get('path')} ({m.get('format')}, geometry from {m.get('geometry_source')})"
        rows += [("model", where), ("model sha256", str(m.get("sha256")))]
        if self.input:
            chosen = InputSelection.from_dict(self.input.get("selection"))
            picked = "" if chosen.is_default else f" ({chosen.describe()})"
            rows.append(
                (
                    "input",
                    f"{self.input.get('path')}, {self.input.get('channels')} channel(s){picked}",
                )
            )
        if self.physical is not None:
            rows.append(("voxel size", self.physical.describe()))
        settings = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.settings.items())
        rows += [
            ("normalisation", _describe_normalization(self.normalization)),
            ("settings", settings),
            ("completeness", self._describe_completeness()),
        ]
        return rows

    def _exactness_row(self) -> tuple[str, str]:
        """Exact, or approximate with the measured deviation, tolerance and halo."""
        a = self.approximate
        if not a:
            return ("exactness", "exact: tiles on the period lattice")
        halo = ", ".join(f"({lo}, {hi})" for lo, hi in a.get("halo") or [])
        return (
            "exactness",
            f"APPROXIMATE (predict --allow-approximate): measured deviation "
            f"{a.get('measured_deviation'):.2g} of max |output|, tolerance "
            f"{a.get('tolerance'):.2g}; halo {halo}",
        )

    def _label_rows(self) -> list[tuple[str, str]]:
        """One row per label image (objects, completeness, parameters), or one for none."""
        if not self.labels:
            return [("labels", "none (predict --no-labels, or segment not run yet)")]
        rows = []
        for lab in self.labels:
            objects = "? objects" if lab.objects is None else plural(lab.objects, "object")
            params = ", ".join(f"{k} {v}" for k, v in (lab.params or {}).items() if v is not None)
            done = "" if lab.complete else " (INCOMPLETE)"
            rows.append(("labels", f"{lab.name}: {objects}{done}; {params}"))
            if lab.physical is not None and lab.physical != self.physical:
                rows.append(("labels voxel size", f"{lab.name}: {lab.physical.describe()}"))
        return rows

    def _array_lines(self) -> list[str]:
        """The arrays as aligned text lines: path, shape, dtype, chunks, sizes."""
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
        return ["    " + "  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip() for r in table]

    def _describe_completeness(self) -> str:
        """Tiles done, and whether (and how fast) the run completed."""
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
    """``(2, 3)`` as ``2 x 3``; ``?`` when unknown."""
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
    """The stored normalisation in words: method, offset, scale, samples."""
    if not n:
        return "unknown"
    method = n.get("method")
    if method == "none":
        return "none"
    pct = n.get("percentiles")
    how = f"{method} {tuple(pct)}" if pct else str(method)
    samples = f" from {n['samples']} values" if n.get("samples") else ""
    return f"{how}: offset {n.get('offset'):.6g}, scale {n.get('scale'):.6g}{samples}"
