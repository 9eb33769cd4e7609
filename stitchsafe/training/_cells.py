"""Synthetic cells: touching, varied, noisy blob-like cells with instance ground truth.

:func:`synthetic_cells` places star-convex ellipsoids of varied size, elongation,
orientation and brightness, with textured interiors and dimmer rims, blurs them, adds an
uneven background and Poisson (shot) and Gaussian (read) noise: training and evaluation
data for :mod:`stitchsafe.training`, deterministic from a seed. numpy and
``scipy.ndimage`` only, never torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import StitchsafeError
from ._synthetic import check_shape, smooth_field

__all__ = ["synthetic_cells"]

Shape = tuple[int, ...]


def _rotation(rng: np.random.Generator, dims: int) -> np.ndarray:
    """A uniformly random rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((dims, dims)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@dataclass(frozen=True)
class _CellLook:
    """How the cells look and are imaged: the checked options of :func:`synthetic_cells`."""

    step: np.ndarray  # voxel size per axis (float64)
    radius: tuple[float, float]  # (min, max)
    touching: float
    photons: float
    read_noise: float
    blur: float
    rim_contrast: float


@dataclass(frozen=True)
class _CellShape:
    """One cell's random star-convex ellipsoid and brightness."""

    semi: np.ndarray  # semi-axes
    rotation: np.ndarray
    waves: np.ndarray  # directions of the surface bumps
    phase: np.ndarray
    bumps: float
    brightness: float


def synthetic_cells(  # noqa: PLR0913 - public keywords (tests, examples, demo); grouped inside
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
    shape = check_shape(shape)
    look = _CellLook(
        step=_voxel_size(spacing, len(shape)),
        radius=_radius_range(radius),
        touching=touching,
        photons=photons,
        read_noise=read_noise,
        blur=blur,
        rim_contrast=rim_contrast,
    )
    rng = np.random.default_rng(seed)
    if n_cells is None:
        n_cells = _default_cell_count(shape, look)
    centres, radii = _place_cells(rng, shape, n_cells, look)
    labels, brightness = _draw_cells(rng, shape, (centres, radii), n_cells, look)
    signal = _stained(labels, brightness, look, seed)
    labels = _relabel_sequential(labels)
    return _imaged(signal, rng, look, seed), labels


def _voxel_size(spacing: Sequence[float] | None, dims: int) -> np.ndarray:
    step = np.array(spacing if spacing is not None else (1.0,) * dims, dtype=np.float64)
    if step.shape != (dims,) or np.any(step <= 0):
        raise StitchsafeError(f"spacing {spacing} must be {dims} positive voxel sizes.")
    return step


def _radius_range(radius: tuple[float, float]) -> tuple[float, float]:
    r_lo, r_hi = float(radius[0]), float(radius[1])
    if not 0 < r_lo <= r_hi:
        raise StitchsafeError(f"radius {radius} must be (min, max) with 0 < min <= max.")
    return r_lo, r_hi


def _default_cell_count(shape: Shape, look: _CellLook) -> int:
    """Enough cells of the mean radius to fill about a quarter of the image."""
    dims = len(shape)
    extent = np.array(shape) * look.step
    r_lo, r_hi = look.radius
    mean_volume = (math.pi if dims == 2 else 4 / 3 * math.pi) * ((r_lo + r_hi) / 2) ** dims
    return max(1, round(float(np.prod(extent)) / 4 / mean_volume))


def _place_cells(
    rng: np.random.Generator, shape: Shape, n_cells: int, look: _CellLook
) -> tuple[list[np.ndarray], list[float]]:
    """Random centres (physical units) and radii, neighbours at least ``touching`` apart."""
    extent = np.array(shape) * look.step
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(50 * n_cells):
        if len(centres) == n_cells:
            break
        c = rng.uniform(0, extent)
        r = rng.uniform(*look.radius)
        if all(np.linalg.norm(c - o) >= look.touching * (r + q) for o, q in zip(centres, radii)):
            centres.append(c)
            radii.append(r)
    return centres, radii


def _random_cell(rng: np.random.Generator, radius: float, dims: int) -> _CellShape:
    """Draw one cell's elongation, orientation, surface bumps and brightness."""
    semi = radius * rng.uniform(0.8, 1.25, size=dims)
    rotation = _rotation(rng, dims)
    waves = rng.standard_normal((3, dims))
    waves /= np.linalg.norm(waves, axis=1, keepdims=True)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    bumps = rng.uniform(0.04, 0.12)
    return _CellShape(semi, rotation, waves, phase, bumps, brightness=rng.uniform(0.45, 1.0))


def _draw_cells(
    rng: np.random.Generator,
    shape: Shape,
    placed: tuple[list[np.ndarray], list[float]],
    n_cells: int,
    look: _CellLook,
) -> tuple[np.ndarray, np.ndarray]:
    """The labels of the placed cells, and the brightness of each id (0: background).

    Each voxel goes to the cell in whose (star-convex) shape it lies deepest; where shapes
    overlap this draws the boundary between touching cells.
    """
    depth = np.full(shape, np.inf, dtype=np.float32)  # normalised radius, < 1 inside
    labels = np.zeros(shape, dtype=np.uint32)
    brightness = np.zeros(n_cells + 1, dtype=np.float32)
    for i, (c, r) in enumerate(zip(*placed), start=1):
        cell = _random_cell(rng, r, len(shape))
        brightness[i] = cell.brightness
        reach = 1.4 * float(cell.semi.max())
        lo = np.maximum(0, np.floor((c - reach) / look.step)).astype(int)
        hi = np.minimum(shape, np.ceil((c + reach) / look.step) + 1).astype(int)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        q = _cell_depth(cell, c, (lo, hi), look.step)
        mine = (q < 1.0) & (q < depth[box])
        depth[box][mine] = q[mine]
        labels[box][mine] = i
    return labels, brightness


def _cell_depth(
    cell: _CellShape, centre: np.ndarray, box: tuple[np.ndarray, np.ndarray], step: np.ndarray
) -> np.ndarray:
    """Normalised radius of every voxel of ``box`` (lo, hi) in the cell: below 1 inside."""
    lo, hi = box
    grid = np.stack(
        np.meshgrid(*(np.arange(a, b) * s for a, b, s in zip(lo, hi, step)), indexing="ij"),
        axis=-1,
    )
    local = ((grid - centre) @ cell.rotation) / cell.semi
    dist = np.linalg.norm(local, axis=-1)
    unit = local / np.maximum(dist, 1e-9)[..., None]
    star = 1.0 + cell.bumps * np.cos(3.0 * (unit @ cell.waves.T) + cell.phase).sum(-1)
    return (dist / star).astype(np.float32)


def _stained(labels: np.ndarray, brightness: np.ndarray, look: _CellLook, seed: int) -> np.ndarray:
    """The cells' stain: per-cell brightness, a textured interior, dimmer rims."""
    shape = labels.shape
    inside = labels > 0
    texture = 1.0 + 0.25 * smooth_field(shape, sigma=1.5, seed=seed + 1)
    # Dimmer rims, as in stained nuclei: darkest on each cell's outer voxels, including
    # where it touches another cell, so touching cells stay (faintly) visible as two.
    to_edge = ndimage.distance_transform_edt(~_label_edges(labels), sampling=look.step)
    rim = 1.0 - look.rim_contrast * np.exp(-0.5 * (to_edge / max(look.blur, 0.5)) ** 2)
    return np.where(inside, brightness[labels] * texture * rim, 0.0)


def _label_edges(labels: np.ndarray) -> np.ndarray:
    """Voxels with a face neighbour of another id (background included).

    >>> _label_edges(np.array([[1, 1, 2, 2]])).astype(int).tolist()
    [[0, 1, 1, 0]]
    """
    dims = labels.ndim
    edge = np.zeros(labels.shape, bool)
    for a in range(dims):
        head = tuple(slice(0, -1) if k == a else slice(None) for k in range(dims))
        tail = tuple(slice(1, None) if k == a else slice(None) for k in range(dims))
        differ = labels[head] != labels[tail]
        edge[head] |= differ
        edge[tail] |= differ
    return edge


def _imaged(signal: np.ndarray, rng: np.random.Generator, look: _CellLook, seed: int) -> np.ndarray:
    """The microscope's image of the stain: blur, uneven background, shot and read noise."""
    shape = signal.shape
    signal = ndimage.gaussian_filter(signal.astype(np.float32), sigma=look.blur / look.step)
    background = 0.08 * np.exp(0.5 * smooth_field(shape, sigma=max(shape) / 4, seed=seed + 2))
    expected = np.clip(signal + background, 0, None) * look.photons
    counts = rng.poisson(expected).astype(np.float64) + rng.normal(0, look.read_noise, shape) + 100
    return np.clip(counts, 0, 65535).astype(np.uint16)


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
