"""The model as approximate tiling sees it: its own geometry, and the same with a wider halo.

:func:`native_geometry` measures the model's own valid sizes and period; :func:`widen`
adds the extra halo the search chose (in steps from :func:`halo_steps`). A plan made with
the wider geometry and ``native=`` the model's own (:func:`stitchsafe.geometry.make_plan`)
reads the extra context around each tile and crops it away from the model's own output;
at the image border its tiles shift inward, so the network's own padding acts there as in
one whole-image pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..geometry import ModelGeometry, normalize_pooling_factors
from ..models import LoadedModel, Runner, metadata_geometry, scan_sizes

Shape = tuple[int, ...]


def native_geometry(
    model: LoadedModel,
    *,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None = None,
    depth: int | None = None,
) -> tuple[ModelGeometry, str]:
    """The model's own geometry (valid sizes, context, period), without the locality test.

    The valid sizes and the context come from a size scan
    (:func:`stitchsafe.models.scan_sizes`); the period from the metadata, else the flags,
    else the valid-size step (for a same-padded U-Net: the product of its pooling factors).

    Returns
    -------
    tuple
        The geometry and where its period came from: ``"metadata"``, ``"flags"`` or
        ``"probe"``.
    """
    flags_period = _flags_period(model.dims, pooling_factors, depth)
    _, meta_period = metadata_geometry(model.metadata, channels_in=model.channels_in)
    period = meta_period if meta_period is not None else flags_period
    runner = Runner(model)
    scan = scan_sizes(runner, needed=3 if period is None else 2)
    geometry = scan.geometry(period, channels_in=model.channels_in)
    source = "metadata" if meta_period is not None else "flags" if flags_period else "probe"
    return geometry, source


def _flags_period(
    dims: int,
    pooling_factors: Sequence[Sequence[int]] | Sequence[int] | int | None,
    depth: int | None,
) -> Shape | None:
    """The period the flags give (the product of the pooling factors), if they give one.

    >>> _flags_period(2, None, 3), _flags_period(2, [(1, 2), (2, 2)], None)
    ((8, 8), (2, 4))
    >>> _flags_period(3, None, None) is None
    True
    """
    if pooling_factors is None and depth is None:
        return None
    levels = normalize_pooling_factors(
        pooling_factors if pooling_factors is not None else 2, dims=dims, depth=depth
    )
    return tuple(math.prod(level[a] for level in levels) for a in range(dims))


def widen(native: ModelGeometry, extra: Sequence[int]) -> ModelGeometry:
    """``native`` with ``extra`` more halo voxels on both sides of every axis.

    The smallest valid input grows by steps until an output voxel is left.

    >>> from stitchsafe.geometry import ModelGeometry
    >>> same = ModelGeometry(period=(2, 2), halo=((0, 0), (0, 0)), min_input=(2, 2), step=(2, 2))
    >>> g = widen(same, (4, 6))
    >>> g.halo, g.min_input, g.output_shape((12, 14))
    (((4, 4), (6, 6)), (10, 14), (4, 2))
    """
    halo = tuple((lo + e, hi + e) for (lo, hi), e in zip(native.halo, extra, strict=True))
    min_input = []
    for m, s, (lo, hi) in zip(native.min_input, native.step, halo, strict=True):
        min_input.append(m + max(0, -(-(lo + hi + 1 - m) // s)) * s)
    return ModelGeometry(
        period=native.period,
        halo=halo,
        min_input=tuple(min_input),
        step=native.step,
        channels_in=native.channels_in,
        channels_out=native.channels_out,
    )


def halo_steps(period: Sequence[int]) -> Callable[[int], Shape]:
    """Extra halo of step ``k``: ``k`` times the largest period, rounded up per axis.

    >>> step = halo_steps((1, 2, 4))
    >>> step(0), step(1), step(3)
    ((0, 0, 0), (4, 4, 4), (12, 12, 12))
    >>> halo_steps((2, 3))(1)
    (4, 3)
    """
    unit = max(period)
    return lambda k: tuple(-(-k * unit // p) * p for p in period)
