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

:func:`check_stitching` reads top to bottom: settings, session, crop and plans, the three
passes, deviations, the result and its picture; the steps live in the modules beside this
one (``_crop``, ``_runs``, ``_deviation``, ``_result``, ``_deviation_picture``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

from ..approximate import ApproximateSettings
from ..engine import RunSettings, default_max_input_voxels
from ..errors import StitchsafeError
from ..geometry import TilingSettings
from ..io import InputSelection
from ..model import Model
from ..session import Session, Sources, open_session
from ._crop import MAX_CROP_INPUT_VOXELS, CropPlans, centred_crop, crop_plans
from ._deviation import measure_deviation
from ._deviation_picture import save_check_picture
from ._result import EXACT_RTOL, CheckResult
from ._runs import CropOutputs, CropRunner, run_crop

__all__ = ["DEFAULT_PICTURE", "check_stitching"]

DEFAULT_PICTURE = "stitchsafe-check.png"

PathLike = str | os.PathLike[str]


def check_stitching(  # noqa: PLR0913 - the public keywords; they become settings values at once
    model: PathLike | Model | None,
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
    trust_model: bool = False,
    channel: int | Sequence[int] | str | None = None,
    timepoint: int | None = None,
    level: int | None = None,
    axes: str | None = None,
) -> CheckResult:
    """Compare stitched tiles with one whole-volume pass on a centred crop of ``input``.

    Parameters
    ----------
    model, input, input_key, pooling_factors, depth, device, trust_model
        As for :func:`stitchsafe.plan` (``model=None``: the bundled model).
    channel, timepoint, level, axes
        As for :func:`stitchsafe.plan`: the channels, timepoint and resolution level read,
        and the input's axes where it does not name them.
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
    # The settings check themselves: the pad mode first, then the picture, then the rest.
    run = RunSettings(device=device, pad_mode=pad_mode, normalize=normalize, progress=progress)
    _check_picture(picture)
    tiling = TilingSettings(tile_shape=tile_shape, pooling_factors=pooling_factors, depth=depth)
    approximate = ApproximateSettings(allow=allow_approximate, tolerance=tolerance)
    selection = InputSelection.parse(channel, timepoint, level, axes)
    start = time.perf_counter()
    session = open_session(
        Sources(model, input, input_key, trust_model, selection=selection),
        tiling=tiling,
        run=run,
        approximate=approximate,
    )
    try:
        plans = _choose_crop(session, crop, tiling)
        runner = CropRunner.for_session(session, run)
        outputs = run_crop(runner, session.volume, plans)
    finally:
        session.volume.close()
    result = _measure(session, runner, plans, outputs, rtol)
    if picture is not None:
        result = dataclasses.replace(result, picture=os.fspath(picture))
        save_check_picture(result, outputs)
    return dataclasses.replace(result, seconds=time.perf_counter() - start)


def _check_picture(picture: PathLike | None) -> None:
    """Refuse a picture path that is a directory (before anything runs)."""
    if picture is not None and os.path.isdir(picture):
        raise StitchsafeError(f"--picture {os.fspath(picture)!r} is a directory; name a PNG file.")


def _choose_crop(
    session: Session, crop: Sequence[int] | int | None, tiling: TilingSettings
) -> CropPlans:
    """The centred crop whose whole pass fits the device, and its two tilings."""
    budget = MAX_CROP_INPUT_VOXELS
    if session.device.type == "cuda":
        budget = min(
            budget, default_max_input_voxels(session.model, session.geometry, session.device)
        )
    box = centred_crop(session.volume.shape, session.geometry, crop=crop, max_input_voxels=budget)
    return crop_plans(
        box,
        session.geometry,
        session.result.plan.tile_shape,
        shrink=tiling.tile_shape is None,
        native=session.result.plan.native,
    )


def _measure(
    session: Session, runner: CropRunner, plans: CropPlans, outputs: CropOutputs, rtol: float
) -> CheckResult:
    """Both tilings' deviations from the whole pass, as a result (no picture, no time yet)."""
    found = session.result
    if found.approximate is not None:
        rtol = float(found.approximate["tolerance"])
    notes = list(found.notes)
    seam = plans.seam_note()
    if seam is not None:
        notes.append(seam)
    stitched = measure_deviation(outputs.stitched, outputs.whole, origin=plans.box.begin)
    naive = measure_deviation(outputs.naive, outputs.whole, origin=plans.box.begin)
    if not naive.relative > rtol and len(plans.naive) > 1:
        notes.append(
            "the naive tiling off the period lattice matches too: this model's output barely "
            "depends on the position modulo its period, so the comparison shows little."
        )
    return CheckResult(
        input_path=found.input_path,
        model_path=found.model_path,
        model_format=found.model_format,
        geometry_source=found.geometry_source,
        volume_shape=tuple(session.volume.shape),
        crop=plans.box,
        plan=plans.plan,
        naive_plan=plans.naive,
        stitched=stitched,
        naive=naive,
        normalization=runner.transform.to_dict(),
        pad_mode=runner.run.pad_mode,
        device=str(runner.device),
        rtol=rtol,
        picture=None,
        seconds=0.0,
        notes=tuple(notes),
        approximate=found.approximate,
    )
