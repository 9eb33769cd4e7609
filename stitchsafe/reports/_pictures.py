"""PNG pictures people would rather look at than read: deviation maps and label overlays.

matplotlib is imported inside the functions (headless ``Agg`` backend), so importing this
module costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib  # noqa: PLC0415 - slow to import; only pictures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - as above

    return plt


def relative_log_deviation(a: np.ndarray, b: np.ndarray, *, floor: float = 1e-9) -> np.ndarray:
    """``log10(max_c |a - b| / max |b|)`` per voxel, floored so exact zeros stay finite.

    ``a`` and ``b`` are ``(C, ...)``; the result drops the channel axis.

    >>> b = np.ones((2, 3))
    >>> relative_log_deviation(b + 0.1, b).round(3).tolist()
    [-1.0, -1.0, -1.0]
    """
    scale = float(np.abs(b).max()) or 1.0
    d = np.abs(a - b).max(axis=0) / scale
    return np.log10(np.maximum(d, floor))


def save_deviation_maps(
    path: str | os.PathLike[str],
    maps: Sequence[tuple[str, np.ndarray]],
    *,
    tile_edges: Sequence[Sequence[Sequence[int]]] | None = None,
    floor: float = 1e-9,
    title: str | None = None,
) -> None:
    """Side-by-side heat maps of ``log10`` relative deviations on one colour scale.

    Parameters
    ----------
    path
        PNG file to write.
    maps
        ``(caption, 2-D log10 deviation)`` pairs, e.g. stitchsafe's tiling and a naive one.
    tile_edges
        Per map, ``(y_edges, x_edges)`` to draw as thin lines (the tile borders).
    floor
        The colour scale's lower end (``log10(floor)``).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 4.0), squeeze=False)
    image = None
    for i, (ax, (caption, m)) in enumerate(zip(axes[0], maps)):
        image = ax.imshow(m, cmap="magma", vmin=np.log10(floor), vmax=0.0, interpolation="nearest")
        ax.set_title(caption, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if tile_edges is not None and tile_edges[i] is not None:
            ys, xs = tile_edges[i]
            for y in ys:
                ax.axhline(y - 0.5, color="cyan", lw=0.4, alpha=0.6)
            for x in xs:
                ax.axvline(x - 0.5, color="cyan", lw=0.4, alpha=0.6)
    cbar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.85)
    cbar.set_label("log10 |tiled - whole| / max |whole|")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def label_colours(n: int, *, seed: int = 0) -> np.ndarray:
    """``(n + 1, 4)`` RGBA colours: transparent background, random bright ids.

    >>> c = label_colours(3)
    >>> c.shape, float(c[0, 3])
    ((4, 4), 0.0)
    """
    rng = np.random.default_rng(seed)
    colours = np.ones((n + 1, 4))
    colours[1:, :3] = rng.uniform(0.25, 1.0, (n, 3))
    colours[0] = 0.0
    return colours


def _overlay(ax: Any, image: np.ndarray, labels: np.ndarray, alpha: float) -> None:
    ids, inverse = np.unique(labels, return_inverse=True)
    dense = inverse.reshape(labels.shape)
    if ids[0] != 0:  # no background in this slice: keep every id coloured
        dense = dense + 1
    rgba = label_colours(int(dense.max()))[dense]
    rgba[..., 3] *= alpha
    lo, hi = np.percentile(image, (1, 99.8))
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def save_label_overlay(
    path: str | os.PathLike[str],
    image: np.ndarray,
    labels: np.ndarray | Sequence[tuple[str, np.ndarray]],
    *,
    title: str | None = None,
    alpha: float = 0.45,
) -> None:
    """A 2-D intensity slice in grey with instance labels overlaid in colour.

    ``labels`` is one label slice, or ``(caption, labels)`` pairs drawn side by side
    (e.g. ground truth next to a prediction).
    """
    plt = _pyplot()
    panels = [("", labels)] if isinstance(labels, np.ndarray) else list(labels)
    aspect = image.shape[0] / max(1, image.shape[1])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5 * aspect + 0.6))
    for ax, (caption, lab) in zip(np.atleast_1d(axes), panels):
        _overlay(ax, image, np.asarray(lab), alpha)
        if caption:
            ax.set_title(caption, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
