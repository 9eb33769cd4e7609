"""``stitchsafe check``: prove, on a crop of the real input, that tiling changes nothing.

The tiled engine (:func:`stitchsafe.engine.run_plan`, the code ``predict`` runs) is run
over a centred crop of the input and compared with one whole-volume forward pass over the
same crop (:func:`stitchsafe.engine.whole_volume_forward`, the oracle), with the model,
normalisation (computed over the whole input, as ``predict`` does) and pad mode that
``predict`` would use. The same is done for a naive tiling whose tiles leave the period
lattice, so that the size of a real stitching error is there to compare with.

The crop is treated as a volume of its own: both passes pad it at its borders with
``numpy.pad`` semantics. The stitched result counts as exact when its largest absolute
deviation is at most :data:`EXACT_RTOL` times the largest absolute output value.

With ``allow_approximate`` a model that cannot be stitched exactly (same padding) is tiled
with the halo that :mod:`stitchsafe.approximate` measures, and the check reports the real
deviation on the crop against the tolerance instead.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import StitchsafeError
from .geometry import Box, ModelGeometry, Plan, check_tile_shape, make_plan

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from .io import Volume
    from .model import LoadedModel

__all__ = [
    "DEFAULT_PICTURE",
    "EXACT_RTOL",
    "EXIT_NOT_EXACT",
    "CheckResult",
    "Deviation",
    "centred_crop",
    "check_stitching",
    "crop_tile_shape",
    "measure_deviation",
    "naive_tiling",
    "save_deviation_picture",
]

# The exactness contract (DESIGN.md section 4): stitched and whole-volume float32 outputs
# may differ by rounding only, at most this fraction of max |output|.
EXACT_RTOL = 1e-4
# Exit status of ``stitchsafe check`` when the stitched output deviates (2 is bad input,
# 1 an unexpected failure), so that a pipeline can tell "not exact" from "could not run".
EXIT_NOT_EXACT = 3
DEFAULT_PICTURE = "stitchsafe-check.png"
# Input voxels of the whole-crop forward pass at most (the CPU's per-tile budget is 2**21).
MAX_CROP_INPUT_VOXELS = 2**22

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Deviation:
    """How far a tiled output is from the whole-volume output.

    Attributes
    ----------
    max_abs, mean_abs
        Largest and mean ``|tiled - whole|`` over all channels and voxels.
    scale
        ``max |whole|``, the output's scale; relative numbers are divided by it (by 1 when
        the whole output is zero).
    voxel
        Spatial coordinates of the largest deviation, in the input volume's coordinates.
    channel
        Output channel of the largest deviation.
    """

    max_abs: float
    mean_abs: float
    scale: float
    voxel: tuple[int, ...]
    channel: int

    @property
    def relative(self) -> float:
        """``max_abs / scale``."""
        return self.max_abs / (self.scale or 1.0)

    @property
    def mean_relative(self) -> float:
        """``mean_abs / scale``."""
        return self.mean_abs / (self.scale or 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs": _finite(self.max_abs),
            "mean_abs": _finite(self.mean_abs),
            "relative": _finite(self.relative),
            "mean_relative": _finite(self.mean_relative),
            "voxel": list(self.voxel),
            "channel": self.channel,
        }


def _finite(x: float) -> float | None:
    """JSON has no NaN or infinity: such values become ``null``."""
    return float(x) if math.isfinite(x) else None


def measure_deviation(
    tiled: np.ndarray, whole: np.ndarray, *, origin: Sequence[int] | None = None
) -> Deviation:
    """Largest and mean ``|tiled - whole|``, and where the largest is.

    Parameters
    ----------
    tiled, whole
        ``(C, *spatial)`` outputs of the same region.
    origin
        Position of the region's first voxel in the volume (added to ``voxel``).

    Examples
    --------
    >>> whole = np.zeros((2, 3, 4), np.float32); whole[0, 0, 0] = 2.0
    >>> tiled = whole.copy(); tiled[1, 2, 1] += 0.5
    >>> d = measure_deviation(tiled, whole, origin=(10, 20))
    >>> d.max_abs, d.relative, d.voxel, d.channel
    (0.5, 0.25, (12, 21), 1)
    """
    if tiled.shape != whole.shape:
        raise ValueError(f"shapes differ: {tiled.shape} and {whole.shape}")
    diff = np.abs(tiled.astype(np.float32, copy=False) - whole.astype(np.float32, copy=False))
    # NaN anywhere is the worst deviation there is, not one to skip.
    diff[np.isnan(diff)] = np.inf
    where = np.unravel_index(int(np.argmax(diff)), diff.shape)
    begin = tuple(origin) if origin is not None else (0,) * (diff.ndim - 1)
    finite = np.abs(whole[np.isfinite(whole)])
    return Deviation(
        max_abs=float(diff[where]),
        mean_abs=float(diff.mean(dtype=np.float64)),
        scale=float(finite.max()) if finite.size else 0.0,
        voxel=tuple(int(b) + int(i) for b, i in zip(begin, where[1:])),
        channel=int(where[0]),
    )


def naive_tiling(
    volume_shape: Sequence[int], geometry: ModelGeometry, tile_shape: Sequence[int]
) -> Plan:
    """What tools that ignore the period do: write boxes one voxel shorter than ``tile_shape``.

    Tile origins then drift off the period lattice (on every axis whose period exceeds 1),
    so the stitched output differs from a whole-volume pass.

    >>> from stitchsafe.geometry import unet_geometry
    >>> p = naive_tiling((20, 20), unet_geometry([(2, 2)]), (8, 8))
    >>> p.tile_shape, [t.write.begin[0] for t in p][::3], p.exact
    ((7, 7), [0, 7, 14], False)
    """
    shape = tuple(max(1, int(t) - 1) for t in tile_shape)
    return make_plan(volume_shape, geometry, tile_shape=shape, exact=False)


def centred_crop(
    volume_shape: Sequence[int],
    geometry: ModelGeometry,
    *,
    crop: Sequence[int] | int | None = None,
    max_input_voxels: int = MAX_CROP_INPUT_VOXELS,
) -> Box:
    """The centred box the check runs on.

    ``crop`` (clipped to the volume) if given; otherwise the largest centred box whose
    whole-volume forward pass reads at most ``max_input_voxels`` (halo and padding to a
    valid size included), shrinking the longest axis first.

    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(2, 2)])
    >>> centred_crop((40, 50), g)
    Box(begin=(0, 0), end=(40, 50))
    >>> centred_crop((1000, 30), g, crop=64)
    Box(begin=(468, 0), end=(532, 30))
    >>> b = centred_crop((1000, 1000), g, max_input_voxels=100 * 100)
    >>> b.shape, math.prod(g.input_for_output(b.shape)) <= 100 * 100
    ((84, 84), True)
    """
    vshape = [int(v) for v in volume_shape]
    if crop is not None:
        want = (crop,) if isinstance(crop, int) else tuple(int(c) for c in crop)
        if len(want) == 1:
            want = want * len(vshape)
        if len(want) != len(vshape) or any(c < 1 for c in want):
            raise StitchsafeError(
                f"--crop {tuple(want)} needs {len(vshape)} positive values (one per axis of the "
                f"volume {tuple(vshape)}), or one for all axes."
            )
        shape = [min(c, v) for c, v in zip(want, vshape)]
    else:

        def fits(s: Sequence[int]) -> bool:
            return math.prod(geometry.input_for_output(s)) <= max_input_voxels

        shape = list(vshape)
        while not fits(shape) and max(shape) > 1:  # coarse steps down, longest axis first
            a = max(range(len(shape)), key=lambda i: shape[i])
            shape[a] = max(1, shape[a] - max(geometry.period[a], shape[a] // 16))
        grown = True
        while grown:  # then back up a voxel at a time, shortest axis first
            grown = False
            for a in sorted(range(len(shape)), key=lambda i: shape[i]):
                trial = [s + (i == a) for i, s in enumerate(shape)]
                if shape[a] < vshape[a] and fits(trial):
                    shape, grown = trial, True
    begin = [(v - c) // 2 for v, c in zip(vshape, shape)]
    return Box.from_shape(shape, begin)


def crop_tile_shape(
    crop_shape: Sequence[int], geometry: ModelGeometry, tile_shape: Sequence[int]
) -> tuple[int, ...]:
    """``tile_shape`` made small enough that the crop holds two tiles or more per axis.

    A crop inside a single tile has no seam to test. Each axis keeps a multiple of the
    period, and at least one period.

    >>> from stitchsafe.geometry import unet_geometry
    >>> crop_tile_shape((40, 50), unet_geometry([(3, 3), (3, 3)]), (54, 18))
    (18, 18)
    """
    out = []
    for c, t, p in zip(crop_shape, tile_shape, geometry.period):
        cap = max(p, (int(c) // 2) // p * p)
        out.append(min(int(t), cap))
    return tuple(out)


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_stitching` measured.

    ``stitched`` is the deviation of stitchsafe's tiling, ``naive`` that of a tiling off
    the period lattice; :attr:`exact` says whether the first is within ``rtol``.
    """

    input_path: str
    model_path: str
    model_format: str
    geometry_source: str
    volume_shape: tuple[int, ...]
    crop: Box
    plan: Plan
    naive_plan: Plan
    stitched: Deviation
    naive: Deviation
    normalization: dict[str, Any]
    pad_mode: str
    device: str
    rtol: float
    picture: str | None
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    approximate: dict[str, Any] | None = None

    @property
    def within_tolerance(self) -> bool:
        """The stitched output is within ``rtol`` of the whole-volume pass (NaN is not)."""
        return bool(self.stitched.relative <= self.rtol)

    @property
    def exact(self) -> bool:
        """Within the exactness tolerance, and not in approximate mode."""
        return self.approximate is None and self.within_tolerance

    def to_dict(self) -> dict[str, Any]:
        g = self.plan.geometry
        return {
            "exact": self.exact,
            "within_tolerance": self.within_tolerance,
            "approximate": self.approximate,
            "tolerance": self.rtol,
            "input": self.input_path,
            "model": {
                "path": self.model_path,
                "format": self.model_format,
                "geometry_source": self.geometry_source,
            },
            "volume_shape": list(self.volume_shape),
            "crop": {"begin": list(self.crop.begin), "shape": list(self.crop.shape)},
            "period": list(g.period),
            "halo": [list(h) for h in g.halo],
            "output_scale": _finite(self.stitched.scale),
            "stitched": {
                **self.stitched.to_dict(),
                "tile_shape": list(self.plan.tile_shape),
                "tiles": len(self.plan),
            },
            "naive": {
                **self.naive.to_dict(),
                "tile_shape": list(self.naive_plan.tile_shape),
                "tiles": len(self.naive_plan),
            },
            "normalization": self.normalization,
            "pad_mode": self.pad_mode,
            "device": self.device,
            "picture": self.picture,
            "seconds": round(self.seconds, 3),
        }

    def describe(self) -> str:
        """Human-readable report (what ``stitchsafe check`` prints)."""

        def x(v: Sequence[int]) -> str:
            return " x ".join(str(int(i)) for i in v)

        rel, tol = f"{self.stitched.relative:.1e}", f"{self.rtol:.0e}"
        verdict = (
            f"EXACT: the stitched output equals one whole-volume pass to {rel} of max |output| "
            f"(tolerance {tol})"
            if self.exact
            else f"NOT EXACT: the stitched output deviates from one whole-volume pass by {rel} "
            f"of max |output| (tolerance {tol})"
        )
        if self.approximate is not None:
            verdict = (
                "APPROXIMATE, "
                + ("WITHIN TOLERANCE" if self.within_tolerance else "OVER TOLERANCE")
                + f": the stitched output deviates from one whole-volume pass by {rel} of max "
                f"|output| (--tolerance {tol}; the probes measured "
                f"{self.approximate['measured_deviation']:.1e} with this halo)"
            )
        whole = " (the whole volume)" if self.crop.shape == self.volume_shape else ""
        span = ", ".join(f"{b}:{e}" for b, e in zip(self.crop.begin, self.crop.end))
        g = self.plan.geometry
        rows = [
            ("input", f"{self.input_path} ({x(self.volume_shape)}); crop [{span}]{whole}"),
            (
                "model",
                f"{self.model_path} ({self.model_format}, geometry from "
                f"{self.geometry_source}); period {x(g.period)}",
            ),
            (
                "tiles",
                f"stitchsafe {len(self.plan)} of {x(self.plan.tile_shape)} (on the period "
                f"lattice); naive {len(self.naive_plan)} of {x(self.naive_plan.tile_shape)} "
                "(off it)",
            ),
            ("output scale", f"max |whole| = {self.stitched.scale:.4g}"),
        ]
        if self.approximate is not None:
            halo = ", ".join(f"({lo}, {hi})" for lo, hi in g.halo)
            rows.append(("halo (lo, hi)", f"{halo}, measured ({self.approximate['reason']})"))
        width = max(len(k) for k, _ in rows)
        lines = [f"stitchsafe check: {verdict}"]
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        axes = ("z", "y", "x")[-g.dims :] if g.dims <= 3 else tuple(f"a{i}" for i in range(g.dims))
        at = f"at (c; {', '.join(axes)})"
        table = [("", "max |dev|", "mean |dev|", "relative", at)]
        for name, d in (("stitchsafe", self.stitched), ("naive", self.naive)):
            where = f"({d.channel}; {', '.join(map(str, d.voxel))})"
            table.append(
                (name, f"{d.max_abs:.3g}", f"{d.mean_abs:.3g}", f"{d.relative:.3g}", where)
            )
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        for r in table:
            lines.append(
                "  "
                + "  ".join(
                    f"{c:<{w}}" if i in (0, 4) else f"{c:>{w}}"
                    for i, (c, w) in enumerate(zip(r, widths))
                ).rstrip()
            )
        if self.picture:
            lines.append(f"  picture: {self.picture}")
        return "\n".join(lines)


def _run_to_array(
    volume: Volume,
    model: LoadedModel,
    plan: Plan,
    group: str,
    image: str,
    *,
    transform: Callable[[np.ndarray], np.ndarray],
    pad_mode: str,
    device: torch.device,
    progress: bool,
) -> np.ndarray:
    """Run ``plan`` with the tiled engine into a scratch OME-Zarr image and read it back."""
    import zarr

    from .engine import run_plan
    from .io import prepare_output

    spec = prepare_output(
        group,
        image=image,
        shape=volume.shape,
        channels=plan.geometry.channels_out,
        chunks=plan.chunks,
        axes=tuple(f"a{i}" for i in range(plan.dims)),
        attributes={"note": "stitchsafe check scratch output"},
    )
    run_plan(
        volume,
        model,
        plan,
        spec,
        transform=transform,
        pad_mode=pad_mode,
        device=device,
        progress=progress,
    )
    return np.asarray(zarr.open_array(store=os.path.join(group, image, "0"), mode="r"))


def check_stitching(
    model: PathLike | None,
    input: PathLike,
    *,
    input_key: str | None = None,
    crop: Sequence[int] | int | None = None,
    tile_shape: Sequence[int] | int | None = None,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    depth: int | None = None,
    device: str = "auto",
    pad_mode: str = "reflect",
    normalize: str | None = None,
    picture: PathLike | None = DEFAULT_PICTURE,
    rtol: float = EXACT_RTOL,
    progress: bool = False,
    allow_approximate: bool = False,
    tolerance: float | None = None,
) -> CheckResult:
    """Compare stitched tiles with one whole-volume pass on a centred crop of ``input``.

    Parameters
    ----------
    model, input, input_key, pooling_factors, depth, device
        As for :func:`stitchsafe.plan` (``model=None``: the bundled model).
    crop
        Spatial shape of the centred crop, e.g. ``(64, 256, 256)`` or ``128`` for all axes
        (clipped to the volume). Default: the whole volume if its forward pass reads at
        most 2**22 input voxels (less on a GPU short of memory), else the largest centred
        crop that does.
    tile_shape
        Tile write box (a multiple of the period). Default: ``predict``'s, shrunk so that
        the crop holds at least two tiles per axis where it is two periods long.
    pad_mode, normalize
        As for :func:`stitchsafe.predict`; the normalisation statistics come from the
        whole input, not the crop.
    picture
        PNG to write: side-by-side maps of ``|tiled - whole|`` (relative, log scale) for
        stitchsafe's and the naive tiling, with tile borders, on the slice (3-D) through
        the largest naive deviation. ``None``: no picture.
    rtol
        Exactness tolerance, relative to ``max |whole|``.
    progress
        Show tile progress bars on stderr.
    allow_approximate, tolerance
        As for :func:`stitchsafe.plan`: a model that cannot be stitched exactly is tiled
        with a measured halo, and the result is within tolerance when the crop's deviation
        is at most ``tolerance`` (instead of ``rtol``).

    Returns
    -------
    CheckResult
        Deviations of both tilings, the crop, plans, picture path; ``result.exact`` and
        ``result.within_tolerance``.

    Raises
    ------
    StitchsafeError
        Bad input, or a model that cannot be tiled exactly at all (as ``predict`` refuses
        it: same padding, normalisation over space...) without ``allow_approximate``.
    """
    from . import api
    from .engine import PAD_MODES, default_max_input_voxels, whole_volume_forward
    from .normalize import compute_normalization

    if pad_mode not in PAD_MODES:
        raise StitchsafeError(f"--pad-mode {pad_mode!r} is not one of {', '.join(PAD_MODES)}.")
    if not os.path.exists(input):
        # Checked here: without --model the bundled-model lookup would blame the model.
        raise StitchsafeError(
            f"the input {os.fspath(input)!r} does not exist; pass a zarr array or group, an "
            "OME-Zarr image or a TIFF file."
        )
    if picture is not None and os.path.isdir(picture):
        raise StitchsafeError(f"--picture {os.fspath(picture)!r} is a directory; name a PNG file.")
    start = time.perf_counter()
    session = api._open(
        model,
        input,
        input_key=input_key,
        tile_shape=tile_shape,
        pooling_factors=pooling_factors,
        depth=depth,
        device=device,
        allow_approximate=allow_approximate,
        tolerance=tolerance,
        pad_mode=pad_mode,
        normalize=normalize,
    )
    volume, geometry, dev = session.volume, session.geometry, session.device
    notes = list(session.result.notes)
    approximate = session.result.approximate
    if approximate is not None:
        rtol = float(approximate["tolerance"])
    try:
        budget = MAX_CROP_INPUT_VOXELS
        if dev.type == "cuda":
            budget = min(budget, default_max_input_voxels(session.model, geometry, dev))
        box = centred_crop(volume.shape, geometry, crop=crop, max_input_voxels=budget)
        tiles = session.result.plan.tile_shape
        if tile_shape is None:
            tiles = crop_tile_shape(box.shape, geometry, tiles)
        plan = make_plan(box.shape, geometry, tile_shape=check_tile_shape(tiles, geometry))
        naive = naive_tiling(box.shape, geometry, plan.tile_shape)
        if len(plan) == 1:
            notes.append(
                f"the crop {box.shape} fits in one tile of {plan.tile_shape}, so no seam is "
                "tested; pass a larger --crop or a smaller --tile-shape."
            )
        method, percentiles = api.default_normalization(session.model)
        norm = compute_normalization(volume, method=normalize or method, percentiles=percentiles)
        data = volume.read(box)
        with tempfile.TemporaryDirectory(prefix="stitchsafe-check-") as tmp:
            stitched, naive_out = _tiled_outputs(
                data, session.model, plan, naive, tmp, norm, pad_mode, dev, progress
            )
        whole = whole_volume_forward(
            data, session.model, geometry, pad_mode=pad_mode, transform=norm, device=dev
        )
    finally:
        volume.close()
    dev_stitched = measure_deviation(stitched, whole, origin=box.begin)
    dev_naive = measure_deviation(naive_out, whole, origin=box.begin)
    if not dev_naive.relative > rtol and len(naive) > 1:
        notes.append(
            "the naive tiling off the period lattice matches too: this model's output barely "
            "depends on the position modulo its period, so the comparison shows little."
        )
    picture_path = None
    if picture is not None:
        picture_path = os.fspath(picture)
        z = dev_naive.voxel[0] - box.begin[0] if geometry.dims == 3 else None
        save_deviation_picture(
            picture_path,
            stitched,
            naive_out,
            whole,
            plan,
            naive,
            z=z,
            captions=(
                f"stitchsafe: {len(plan)} tiles on the period lattice\n"
                f"max {dev_stitched.relative:.1e}",
                f"naive: {len(naive)} tiles off the lattice\nmax {dev_naive.relative:.1e}",
            ),
            title=_picture_title(session.result.input_path, box, volume.shape, z),
        )
    return CheckResult(
        input_path=session.result.input_path,
        model_path=session.result.model_path,
        model_format=session.result.model_format,
        geometry_source=session.result.geometry_source,
        volume_shape=tuple(volume.shape),
        crop=box,
        plan=plan,
        naive_plan=naive,
        stitched=dev_stitched,
        naive=dev_naive,
        normalization=norm.to_dict(),
        pad_mode=pad_mode,
        device=str(dev),
        rtol=rtol,
        picture=picture_path,
        seconds=time.perf_counter() - start,
        notes=tuple(notes),
        approximate=approximate,
    )


def _tiled_outputs(
    data: np.ndarray,
    model: LoadedModel,
    plan: Plan,
    naive: Plan,
    tmp: str,
    transform: Callable[[np.ndarray], np.ndarray],
    pad_mode: str,
    device: torch.device,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The crop, copied to a scratch zarr, run through the tiled engine with both plans."""
    import zarr

    from .io import open_volume

    chunks = (data.shape[0], *(min(s, 64) for s in data.shape[1:]))
    zarr.create_array(os.path.join(tmp, "crop.zarr"), data=data, chunks=chunks)
    crop_volume = open_volume(os.path.join(tmp, "crop.zarr"), spatial_dims=plan.dims)
    group = os.path.join(tmp, "out.zarr")
    try:
        outputs = tuple(
            _run_to_array(
                crop_volume,
                model,
                p,
                group,
                name,
                transform=transform,
                pad_mode=pad_mode,
                device=device,
                progress=progress,
            )
            for p, name in ((plan, "stitched"), (naive, "naive"))
        )
    finally:
        crop_volume.close()
    return outputs[0], outputs[1]


def _picture_title(input_path: str, box: Box, volume_shape: Sequence[int], z: int | None) -> str:
    name = os.path.basename(os.path.normpath(input_path))
    where = "" if tuple(box.shape) == tuple(volume_shape) else f", crop {box.shape} at {box.begin}"
    if z is not None:
        where += f", z = {box.begin[0] + z} (largest naive deviation)"
    return f"Deviation from one whole-volume pass: {name}{where}"


def save_deviation_picture(
    path: PathLike | Path,
    stitched: np.ndarray,
    naive: np.ndarray,
    whole: np.ndarray,
    plan: Plan,
    naive_plan: Plan,
    *,
    z: int | None = None,
    captions: tuple[str, str] = (
        "stitchsafe: tiles on the period lattice",
        "naive: tiles off the lattice",
    ),
    title: str | None = None,
) -> None:
    """Deviation maps of stitchsafe's and the naive tiling side by side, tile borders drawn.

    Parameters
    ----------
    path
        PNG file to write.
    stitched, naive, whole
        ``(C, Y, X)`` or ``(C, Z, Y, X)`` outputs of the two tilings and the whole pass.
    plan, naive_plan
        The tilings (their borders are drawn; both are anchored at voxel 0).
    z
        The z slice shown (3-D). Default: the one through the largest naive deviation.
    captions, title
        Panel captions and the figure's title (default: names the slice).
    """
    from .pictures import relative_log_deviation, save_deviation_maps

    if whole.ndim == 4:
        if z is None:
            z = int(np.argmax(np.abs(naive - whole).max(axis=(0, 2, 3))))
        stitched, naive, whole = stitched[:, z], naive[:, z], whole[:, z]
    if title is None:
        title = "Deviation from one whole-volume pass" + (f" (z = {z})" if z is not None else "")

    def edges(p: Plan) -> list[list[int]]:
        return [list(range(w, v, w)) for w, v in zip(p.tile_shape[-2:], p.volume_shape[-2:])]

    save_deviation_maps(
        path,
        [
            (captions[0], relative_log_deviation(stitched, whole)),
            (captions[1], relative_log_deviation(naive, whole)),
        ],
        tile_edges=[edges(plan), edges(naive_plan)],
        title=title,
    )
