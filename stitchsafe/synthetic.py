"""Synthetic 2-D and 3-D images with instance ground truth, deterministic from a seed.

Two kinds of data:

:func:`synthetic_cells`
    touching, varied, noisy blob-like cells: star-convex ellipsoids of varied size,
    elongation, orientation and brightness, with textured interiors and dimmer rims, blurred,
    on an uneven background, with Poisson (shot) and Gaussian (read) noise. Training and
    evaluation data for :mod:`stitchsafe.train`.
:func:`same_looking_objects`
    the layouts of Rumberger et al. (ICCV 2021): identical discs/spheres on a grid. At a
    spacing of ``n * period`` all objects sit at positions congruent modulo the period and a
    valid U-Net must give them identical embeddings; at ``n * period - 1``
    (:func:`grid_spacing`) they need not.

Everything uses numpy and ``scipy.ndimage`` only, never torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .errors import StitchsafeError

__all__ = ["grid_spacing", "same_looking_objects", "smooth_field", "synthetic_cells"]

Shape = tuple[int, ...]


def _check_shape(shape: Sequence[int]) -> Shape:
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


def _rotation(rng: np.random.Generator, dims: int) -> np.ndarray:
    """A uniformly random rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((dims, dims)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def synthetic_cells(
    shape: Sequence[int],
    *,
    n_cells: int | None = None,
    radius: tuple[float, float] = (4.0, 8.0),
    spacing: Sequence[float] | None = None,
    touching: float = 0.85,
    photons: float = 300.0,
    read_noise: float = 4.0,
    blur: float = 1.0,
    rim_contrast: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Touching, varied, noisy blob-like cells and their instance labels.

    Parameters
    ----------
    shape
        ``(Y, X)`` or ``(Z, Y, X)``.
    n_cells
        Cells to place; default: enough to fill about a quarter of the image. Fewer are
        placed when the image is full.
    radius
        Range of cell radii in physical units (voxels when ``spacing`` is 1).
    spacing
        Voxel size per axis (e.g. ``(2, 1, 1)`` for a z-step twice the pixel size): cells
        are round in physical space, so they look flattened along coarse axes.
    touching
        Cell centres are at least ``touching * (r_i + r_j)`` apart: below 1 neighbours
        overlap and are split along the boundary where their shapes meet, so they touch.
    photons
        Expected photon count of the brightest voxel; sets the Poisson noise level.
    read_noise
        Standard deviation of the Gaussian camera noise, in counts.
    blur
        Standard deviation of the optical blur, in physical units.
    rim_contrast
        How much dimmer (fraction) a cell's outermost voxels are than its interior; the
        dim rim is all that tells touching cells apart.
    seed
        The same arguments and seed give the same image.

    Returns
    -------
    image, labels
        ``uint16`` intensities (offset 100 counts) and ``uint32`` instance ids, 0 being
        background, ids ``1..N`` in placement order.

    Examples
    --------
    >>> img, lab = synthetic_cells((24, 64, 64), seed=3)
    >>> img.shape, img.dtype, lab.dtype
    ((24, 64, 64), dtype('uint16'), dtype('uint32'))
    >>> n = int(lab.max()); n > 10 and set(np.unique(lab)) == set(range(n + 1))
    True
    >>> float(img[lab > 0].mean()) > 2 * float(img[lab == 0].mean())
    True
    >>> bool(np.array_equal(img, synthetic_cells((24, 64, 64), seed=3)[0]))
    True
    """
    shape = _check_shape(shape)
    dims = len(shape)
    step = np.array(spacing if spacing is not None else (1.0,) * dims, dtype=np.float64)
    if step.shape != (dims,) or np.any(step <= 0):
        raise StitchsafeError(f"spacing {spacing} must be {dims} positive voxel sizes.")
    r_lo, r_hi = float(radius[0]), float(radius[1])
    if not 0 < r_lo <= r_hi:
        raise StitchsafeError(f"radius {radius} must be (min, max) with 0 < min <= max.")
    rng = np.random.default_rng(seed)
    extent = np.array(shape) * step
    if n_cells is None:
        mean_volume = (math.pi if dims == 2 else 4 / 3 * math.pi) * ((r_lo + r_hi) / 2) ** dims
        n_cells = max(1, round(float(np.prod(extent)) / 4 / mean_volume))

    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(50 * n_cells):
        if len(centres) == n_cells:
            break
        c = rng.uniform(0, extent)
        r = rng.uniform(r_lo, r_hi)
        if all(np.linalg.norm(c - o) >= touching * (r + q) for o, q in zip(centres, radii)):
            centres.append(c)
            radii.append(r)

    # Each voxel goes to the cell in whose (star-convex) shape it lies deepest; where
    # shapes overlap this draws the boundary between touching cells.
    depth = np.full(shape, np.inf, dtype=np.float32)  # normalised radius, < 1 inside
    labels = np.zeros(shape, dtype=np.uint32)
    brightness = np.zeros(n_cells + 1, dtype=np.float32)
    for i, (c, r) in enumerate(zip(centres, radii), start=1):
        semi = r * rng.uniform(0.8, 1.25, size=dims)
        rot = _rotation(rng, dims)
        waves = rng.standard_normal((3, dims))
        waves /= np.linalg.norm(waves, axis=1, keepdims=True)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        bumps = rng.uniform(0.04, 0.12)
        brightness[i] = rng.uniform(0.45, 1.0)
        reach = 1.4 * float(semi.max())
        lo = np.maximum(0, np.floor((c - reach) / step)).astype(int)
        hi = np.minimum(shape, np.ceil((c + reach) / step) + 1).astype(int)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        grid = np.stack(
            np.meshgrid(*(np.arange(a, b) * s for a, b, s in zip(lo, hi, step)), indexing="ij"),
            axis=-1,
        )
        local = ((grid - c) @ rot) / semi
        dist = np.linalg.norm(local, axis=-1)
        unit = local / np.maximum(dist, 1e-9)[..., None]
        star = 1.0 + bumps * np.cos(3.0 * (unit @ waves.T) + phase).sum(-1)
        q = (dist / star).astype(np.float32)
        mine = (q < 1.0) & (q < depth[box])
        depth[box][mine] = q[mine]
        labels[box][mine] = i

    inside = labels > 0
    texture = 1.0 + 0.25 * smooth_field(shape, sigma=1.5, seed=seed + 1)
    # Dimmer rims, as in stained nuclei: darkest on each cell's outer voxels, including
    # where it touches another cell, so touching cells stay (faintly) visible as two.
    edge = np.zeros(shape, bool)
    for a in range(dims):
        head = tuple(slice(0, -1) if k == a else slice(None) for k in range(dims))
        tail = tuple(slice(1, None) if k == a else slice(None) for k in range(dims))
        differ = labels[head] != labels[tail]
        edge[head] |= differ
        edge[tail] |= differ
    to_edge = ndimage.distance_transform_edt(~edge, sampling=step)
    rim = 1.0 - rim_contrast * np.exp(-0.5 * (to_edge / max(blur, 0.5)) ** 2)
    signal = np.where(inside, brightness[labels] * texture * rim, 0.0)
    labels = _relabel_sequential(labels)
    signal = ndimage.gaussian_filter(signal.astype(np.float32), sigma=blur / step)
    background = 0.08 * np.exp(0.5 * smooth_field(shape, sigma=max(shape) / 4, seed=seed + 2))
    expected = np.clip(signal + background, 0, None) * photons
    counts = rng.poisson(expected).astype(np.float64) + rng.normal(0, read_noise, shape) + 100
    return np.clip(counts, 0, 65535).astype(np.uint16), labels


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Ids ``1..N`` without gaps (cells fully overlapped by others vanish).

    >>> _relabel_sequential(np.array([0, 3, 3, 7], dtype=np.uint32)).tolist()
    [0, 1, 1, 2]
    """
    ids = np.unique(labels)
    lut = np.zeros(int(ids.max()) + 1, dtype=np.uint32)
    lut[ids] = np.arange(len(ids), dtype=np.uint32) - (ids[0] != 0)
    lut[0] = 0
    return lut[labels]


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
    shape = _check_shape(shape)
    dims = len(shape)
    space = (int(spacing),) * dims if isinstance(spacing, int) else tuple(int(s) for s in spacing)
    if len(space) != dims or any(s <= 2 * radius for s in space):
        raise StitchsafeError(
            f"spacing {spacing} must give {dims} values each larger than twice the radius "
            f"{radius}, so that objects do not touch."
        )
    first_default = math.ceil(radius) + 1
    if margin is None:
        first: Shape = (first_default,) * dims
    elif isinstance(margin, int):
        first = (margin,) * dims
    else:
        first = tuple(int(m) for m in margin)
    half = math.ceil(radius)
    offsets = np.stack(np.meshgrid(*([np.arange(-half, half + 1)] * dims), indexing="ij"), axis=-1)
    d = np.linalg.norm(offsets, axis=-1) / radius
    ball = d <= 1.0
    template = np.where(ball, 1.0 - 0.5 * d**2, 0.0).astype(np.float32)
    image = np.full(shape, background, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint32)
    axes = [range(f, s - half, p) for f, s, p in zip(first, shape, space)]
    i = 0
    for centre in np.ndindex(*(len(a) for a in axes)):
        c = [axes[k][j] for k, j in enumerate(centre)]
        if any(v - half < 0 for v in c):
            continue
        i += 1
        box = tuple(slice(v - half, v + half + 1) for v in c)
        image[box] = np.where(ball, background + (intensity - background) * template, image[box])
        labels[box][ball] = i
    if labels.max() == 0:
        raise StitchsafeError(
            f"no object of radius {radius} fits in shape {shape} with margin {first}."
        )
    return image, labels
