"""PNG pictures people would rather look at than read: deviation maps, label overlays, and
ground truth next to a prediction (objects matched, misses and false positives marked, a
scale bar).

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


# -- ground truth next to a prediction: matches, misses, false positives, a scale bar ------

MISS_COLOUR = "#ff2020"  # a ground-truth object no predicted one matches
FALSE_COLOUR = "#ff40ff"  # a predicted object that matches no ground-truth one


def matched_objects(truth: np.ndarray, predicted: np.ndarray, *, threshold: float = 0.5) -> dict:
    """``{predicted id: truth id}`` of the objects whose IoU is above ``threshold``.

    The matching of :func:`stitchsafe.labels.match` (unique for ``threshold >= 0.5``), on
    whole volumes: match in 3-D, then draw a slice.

    >>> matched_objects(np.array([[1, 1, 0, 2, 2]]), np.array([[3, 3, 3, 0, 4]]))
    {3: 1}
    """
    truth, predicted = np.asarray(truth).ravel(), np.asarray(predicted).ravel()
    both = (truth != 0) & (predicted != 0)
    pairs, shared = np.unique(np.stack([truth[both], predicted[both]]), axis=1, return_counts=True)
    t_ids, t_sizes = np.unique(truth, return_counts=True)
    p_ids, p_sizes = np.unique(predicted, return_counts=True)
    t_size, p_size = dict(zip(t_ids.tolist(), t_sizes)), dict(zip(p_ids.tolist(), p_sizes))
    found = {}
    for (t, p), n in zip(pairs.T.tolist(), shared.tolist()):
        if n / (t_size[t] + p_size[p] - n) > threshold:
            found[p] = t
    return found


def scale_bar_length(width: float) -> float:
    """A round length (1, 2 or 5 times a power of ten) near a fifth of ``width``.

    >>> scale_bar_length(96), scale_bar_length(48.0), scale_bar_length(7)
    (10.0, 5.0, 1.0)
    """
    target = width / 5
    power = 10 ** np.floor(np.log10(target))
    return float(max(f * power for f in (1, 2, 5) if f * power <= target))


def _matched_colours(ids: np.ndarray) -> np.ndarray:
    """RGBA per entry of the sorted truth ``ids``: bright hues from yellow to blue (no
    reds or magentas, which mark misses and false positives), each id's own (seeded by it)."""
    import matplotlib.colors  # noqa: PLC0415 - slow to import; only pictures need it

    rng = np.random.default_rng(0)
    n = len(ids)
    hue = 0.1 + 0.58 * ((np.asarray(ids, np.float64) * 0.618034) % 1.0)
    hsv = np.stack([hue, rng.uniform(0.55, 1.0, n), rng.uniform(0.7, 1.0, n)], -1)
    rgba = np.ones((n, 4))
    rgba[:, :3] = matplotlib.colors.hsv_to_rgb(hsv)
    return rgba


def matched_colours(
    truth: np.ndarray, predicted: np.ndarray, matches: dict
) -> tuple[np.ndarray, np.ndarray]:
    """RGBA fills ``(*shape, 4)`` of both label images: each matched pair in one colour
    (its ground-truth object's), the rest transparent (misses, false positives, background).

    >>> t, p = matched_colours(np.array([[1, 1, 2]]), np.array([[5, 5, 6]]), {5: 1})
    >>> bool((t[0, 0] == p[0, 0]).all()), float(t[0, 2, 3]), float(p[0, 2, 3])
    (True, 0.0, 0.0)
    """
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    p_ids = np.unique(predicted)
    p_truth = np.array([matches.get(int(p), 0) for p in p_ids], np.int64)
    fills = (
        np.where(np.isin(truth, list(matches.values())), truth, 0),
        p_truth[np.searchsorted(p_ids, predicted)],
    )
    universe = np.unique(np.concatenate([np.unique(truth), p_truth, [0]]))
    colours = _matched_colours(universe)
    out = []
    for fill in fills:
        index = np.searchsorted(universe, fill)
        rgba = colours[index]
        rgba[..., 3] = np.where(index > 0, 0.5, 0.0)
        out.append(rgba)
    return out[0], out[1]


def _panel(ax: Any, image: np.ndarray, rgba: np.ndarray) -> None:
    """The grey slice with the objects' fills over it."""
    lo, hi = np.percentile(image, (1, 99.8))
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _outline(ax: Any, objects: np.ndarray, unmatched: set, colour: str) -> None:
    """Outlines of the objects in ``unmatched``, in ``colour``, hatched inside."""
    mask = np.isin(objects, sorted(unmatched)) if unmatched else np.zeros(objects.shape, bool)
    if mask.any():
        ax.contour(mask, levels=[0.5], colors=[colour], linewidths=1.4)
        ax.contourf(mask, levels=[0.5, 1.5], colors="none", hatches=["////"])
        for c in ax.collections[-1:]:
            c.set_edgecolor(colour)
            c.set_linewidth(0.0)


# Short names of OME-Zarr's units of length, for the scale bar's label.
_SHORT_UNITS = {
    "micrometer": "µm",
    "nanometer": "nm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "angstrom": "Å",
}


def _scale_bar(ax: Any, width: int, pixel: float, unit: str) -> None:
    """A white bar at the lower right, of a round length in ``unit``."""
    length = scale_bar_length(width * pixel)
    voxels = length / pixel
    x0, y = width - voxels - 0.04 * width, ax.get_ylim()[0] - 0.04 * width
    ax.plot([x0, x0 + voxels], [y, y], color="white", lw=3, solid_capstyle="butt")
    text = f"{length:g} {_SHORT_UNITS.get(unit, unit)}"
    ax.text(x0 + voxels / 2, y - 0.015 * width, text, color="white", ha="center", va="bottom")


def save_matched_labels(
    path: str | os.PathLike[str],
    image: np.ndarray,
    truth: np.ndarray,
    predicted: np.ndarray,
    *,
    matches: dict,
    captions: tuple[str, str] = ("ground truth", "prediction"),
    pixel: tuple[float, str | None] = (1.0, None),
    title: str | None = None,
) -> None:
    """Ground truth and a prediction side by side over a 2-D slice, objects compared.

    A matched object has the same colour in both panels; a miss (a ground-truth object no
    prediction matches) is outlined and hatched in red in the ground truth, a false
    positive (a predicted object that matches none) in magenta in the prediction; a
    legend says so. A scale bar of a round length sits at the lower right of each panel.

    Parameters
    ----------
    image, truth, predicted
        The slice: intensities and both label images, ``(Y, X)``.
    matches
        ``{predicted id: truth id}`` (:func:`matched_objects`, on the whole volumes).
    pixel
        The size of a pixel and its unit (the voxel size along X): the scale bar's unit;
        pixels when the unit is ``None``.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch  # noqa: PLC0415 - slow to import; as above

    truth, predicted = np.asarray(truth), np.asarray(predicted)
    fills = matched_colours(truth, predicted, matches)
    unmatched = (
        set(np.unique(truth).tolist()) - set(matches.values()) - {0},
        set(np.unique(predicted).tolist()) - set(matches) - {0},
    )
    aspect = image.shape[0] / max(1, image.shape[1])
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.5 * aspect + 1.2))
    for i, ax in enumerate(axes):
        _panel(ax, image, fills[i])
        _outline(ax, (truth, predicted)[i], unmatched[i], (MISS_COLOUR, FALSE_COLOUR)[i])
        _scale_bar(ax, image.shape[1], *(pixel if pixel[1] else (1.0, "px")))
        ax.set_title(captions[i], fontsize=10)
    legend = [
        Patch(color="#7fd87f", label="matched (IoU > 0.5): one colour in both"),
        Patch(fill=False, edgecolor=MISS_COLOUR, hatch="////", label="missed"),
        Patch(fill=False, edgecolor=FALSE_COLOUR, hatch="////", label="false positive"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=3, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
