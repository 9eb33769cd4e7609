"""Synthetic images with instance ground truth: shared helpers and same-looking objects.

:func:`same_looking_objects` builds the layouts of Rumberger et al. (ICCV 2021): identical
discs/spheres on a grid. At a spacing of ``n * period`` all objects sit at positions
congruent modulo the period and a valid U-Net must give them identical embeddings; at
``n * period - 1`` (:func:`grid_spacing`) they need not. :func:`smooth_field` and
:func:`check_shape` also serve the synthetic cells (:mod:`stitchsafe.training`). numpy and
``scipy.ndimage`` only, never torch; deterministic from a seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage

from ..errors import StitchsafeError

__all__ = ["check_shape", "grid_spacing", "same_looking_objects", "smooth_field"]

Shape = tuple[int, ...]


def check_shape(shape: Sequence[int]) -> Shape:
    """``shape`` as 2 or 3 positive ints, ``(Y, X)`` or ``(Z, Y, X)``.

    >>> check_shape([4, 5.0])
    (4, 5)
    """
    out = tuple(int(s) for s in shape)
    if len(out) not in (2, 3) or any(s < 1 for s in out):
        raise StitchsafeError(
            f"shape {tuple(shape)} must be 2 or 3 positive sizes, (Y, X) or (Z, Y, X)."
        )
    return out


def smooth_field(shape: Sequence[int], *, sigma: float, seed: int = 0) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field smoothed over ``sigma`` voxels.

    Filtered in Fourier space (so large ``sigma`` costs no more than small), hence
    periodic at the borders.

    >>> f = smooth_field((32, 48), sigma=4.0, seed=1)
    >>> f.shape, f.dtype, abs(float(f.mean())) < 1e-6, round(float(f.std()), 3)
    ((32, 48), dtype('float32'), True, 1.0)
    >>> bool(np.array_equal(f, smooth_field((32, 48), sigma=4.0, seed=1)))
    True
    """
    shape = tuple(int(s) for s in shape)
    noise = np.random.default_rng(seed).standard_normal(shape)
    spectrum = ndimage.fourier_gaussian(np.fft.rfftn(noise), sigma, n=shape[-1])
    field = np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape))))
    field -= field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def grid_spacing(period: Sequence[int], n: int = 1, *, minus: int = 0) -> Shape:
    """Object spacing ``n * period - minus`` per axis: the paper's two layouts.

    With ``minus=0`` all objects sit at positions congruent modulo the period (a valid
    U-Net embeds them identically); with ``minus=1`` they do not.

    >>> grid_spacing((2, 4, 4), 3), grid_spacing((2, 4, 4), 3, minus=1)
    ((6, 12, 12), (5, 11, 11))
    """
    if n < 1:
        raise StitchsafeError(f"n must be at least 1, got {n}.")
    return tuple(n * int(p) - minus for p in period)


def same_looking_objects(
    shape: Sequence[int],
    *,
    spacing: Sequence[int] | int,
    radius: float,
    intensity: float = 1000.0,
    background: float = 100.0,
    margin: Sequence[int] | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Identical discs (2-D) or spheres (3-D) on a regular grid, and their labels.

    Every object is the same stamped template (a smooth ball profile), so objects differ
    only by position; no noise is added.

    Parameters
    ----------
    shape
        ``(Y, X)`` or ``(Z, Y, X)``.
    spacing
        Distance between neighbouring object centres per axis, in voxels (see
        :func:`grid_spacing`); must exceed ``2 * radius`` so that objects do not touch.
    radius
        Object radius in voxels.
    intensity, background
        Object peak and background intensities.
    margin
        Position of the first centre per axis; default ``ceil(radius) + 1``.

    Returns
    -------
    image, labels
        ``float32`` image and ``uint32`` ids ``1..N`` in C order of the grid.

    Examples
    --------
    >>> img, lab = same_looking_objects((20, 30), spacing=(8, 11), radius=2.5)
    >>> int(lab.max()), img.dtype
    (6, dtype('float32'))
    >>> a, b = np.argwhere(lab == 1)[0], np.argwhere(lab == 2)[0]
    >>> (b - a).tolist()
    [0, 11]
    >>> bool(np.array_equal(img[lab == 1], img[lab == 2]))
    True
    """
    shape = check_shape(shape)
    dims = len(shape)
    space = _object_spacing(spacing, dims, radius)
    first = _first_centre(margin, dims, radius)
    ball, template = _ball(radius, dims)
    image = np.full(shape, background, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint32)
    peak = background + (intensity - background) * template
    for i, box in enumerate(_grid_boxes(shape, first, space, math.ceil(radius)), start=1):
        image[box] = np.where(ball, peak, image[box])
        labels[box][ball] = i
    if labels.max() == 0:
        raise StitchsafeError(
            f"no object of radius {radius} fits in shape {shape} with margin {first}."
        )
    return image, labels


def _object_spacing(spacing: Sequence[int] | int, dims: int, radius: float) -> Shape:
    """Centre-to-centre distances per axis, checked: objects must not touch."""
    space = (int(spacing),) * dims if isinstance(spacing, int) else tuple(int(s) for s in spacing)
    if len(space) != dims or any(s <= 2 * radius for s in space):
        raise StitchsafeError(
            f"spacing {spacing} must give {dims} values each larger than twice the radius "
            f"{radius}, so that objects do not touch."
        )
    return space


def _first_centre(margin: Sequence[int] | int | None, dims: int, radius: float) -> Shape:
    """Position of the first centre per axis; default ``ceil(radius) + 1``."""
    if margin is None:
        return (math.ceil(radius) + 1,) * dims
    if isinstance(margin, int):
        return (margin,) * dims
    return tuple(int(m) for m in margin)


def _ball(radius: float, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The object's mask and smooth profile (1 at the centre, 0.5 at the rim), odd-sized."""
    half = math.ceil(radius)
    offsets = np.stack(np.meshgrid(*([np.arange(-half, half + 1)] * dims), indexing="ij"), axis=-1)
    d = np.linalg.norm(offsets, axis=-1) / radius
    ball = d <= 1.0
    return ball, np.where(ball, 1.0 - 0.5 * d**2, 0.0).astype(np.float32)


def _grid_boxes(shape: Shape, first: Shape, space: Shape, half: int) -> Iterator[tuple[slice, ...]]:
    """The box of every object on the grid that fits in ``shape``, in C order."""
    axes = [range(f, s - half, p) for f, s, p in zip(first, shape, space)]
    for centre in np.ndindex(*(len(a) for a in axes)):
        c = [axes[k][j] for k, j in enumerate(centre)]
        if any(v - half < 0 for v in c):
            continue
        yield tuple(slice(v - half, v + half + 1) for v in c)
