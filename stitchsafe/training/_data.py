"""Training data: the window rule, crops at every phase, augmentation, inputs and targets.

The training rule of Rumberger et al. (ICCV 2021): the loss must see an *output* window
strictly larger than the period ``P`` on every axis. A window of at most ``P`` holds one
voxel per phase, so the loss never compares voxels at different positions modulo ``P``
and the network may embed each phase differently: tiles would then disagree where they are
stitched. :func:`check_training_window` refuses such windows.

Crops are drawn at uniformly random origins (:func:`sample_origin`), not on the period
lattice, so the network sees every phase of the content relative to its pooling grid;
flips, and 90-degree rotations between axes with equal pooling factors
(:func:`augmentations`), leave the geometry unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StitchsafeError
from ..geometry import Box, ModelGeometry
from ..io import open_volume

__all__ = [
    "ArrayVolume",
    "augment",
    "augmentations",
    "check_training_window",
    "check_window_fits",
    "contact_voxels",
    "default_min_size",
    "default_window",
    "describe_source",
    "infer_dims",
    "load_training_data",
    "sample_origin",
]

Shape = tuple[int, ...]
PathLike = str | os.PathLike[str]


def check_training_window(window: Sequence[int], geometry: ModelGeometry) -> Shape:
    """Validate an output training window: strictly larger than the period on every axis.

    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(1, 2, 2), (2, 2, 2)])
    >>> check_training_window((3, 5, 8), g)
    (3, 5, 8)
    >>> check_training_window((8, 4, 16), g)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the output training window (8, 4, 16) is not larger ...
    """
    w = tuple(int(v) for v in window)
    if len(w) != geometry.dims:
        raise StitchsafeError(
            f"the training window {w} has {len(w)} values; the model has {geometry.dims} axes."
        )
    bad = [a for a, (v, p) in enumerate(zip(w, geometry.period)) if v <= p]
    if bad:
        fix = tuple(max(v, 2 * p) for v, p in zip(w, geometry.period))
        raise StitchsafeError(
            f"the output training window {w} is not larger than the period {geometry.period} "
            f"on axis {', '.join(map(str, bad))}. With a window of at most one period the loss "
            "never compares voxels at different positions modulo the period, so the network "
            "is free to embed each tile differently and stitched tiles would disagree at their "
            "seams (Rumberger et al., ICCV 2021). Use a window strictly larger than the period "
            f"on every axis, at least {tuple(p + 1 for p in geometry.period)}; e.g. {fix}."
        )
    return w


def default_window(
    preferred: Sequence[int], geometry: ModelGeometry, volume_shape: Sequence[int]
) -> Shape:
    """``preferred`` output window, shrunk where the image is too small for it at all phases.

    Never below one voxel more than the period (the training rule's minimum).

    >>> from stitchsafe.geometry import unet_geometry
    >>> g = unet_geometry([(1, 2, 2), (2, 2, 2)])
    >>> default_window((16, 48, 48), g, (100, 100, 40))
    (16, 48, 36)
    """
    wanted = [max(w, p + 1) for w, p in zip(preferred, geometry.period)]
    for a, p in enumerate(geometry.period):
        while wanted[a] > p + 1:
            out = geometry.output_shape(geometry.input_for_output(wanted))
            if out[a] + p - 1 <= volume_shape[a]:
                break
            wanted[a] = max(p + 1, wanted[a] - p)
    return tuple(wanted)


def check_window_fits(
    volume_shape: Sequence[int], window: Sequence[int], geometry: ModelGeometry
) -> None:
    """Refuse an output ``window`` the image cannot hold at every phase of the period.

    Fewer than ``P`` origins on an axis would leave some phases of the content unseen.

    >>> from stitchsafe.geometry import unet_geometry
    >>> check_window_fits((40, 40), (38, 8), unet_geometry([(2, 2)]))
    >>> check_window_fits((40, 40), (40, 8), unet_geometry([(2, 2)]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the training image is 40 voxels long on axis 0, too short ...
    """
    for a, (s, w, p) in enumerate(zip(volume_shape, window, geometry.period)):
        if s - w + 1 < p:
            raise StitchsafeError(
                f"the training image is {s} voxels long on axis {a}, too short for an output "
                f"window of {w} at all {p} phases of the period (it needs at least {w + p - 1}); "
                "use a larger image or a smaller window (still larger than the period "
                f"{geometry.period})."
            )


def sample_origin(
    rng: np.random.Generator, volume_shape: Sequence[int], window: Sequence[int]
) -> Shape:
    """A uniformly random origin for a ``window`` inside ``volume_shape``, at any phase.

    >>> rng = np.random.default_rng(0)
    >>> o = [sample_origin(rng, (10, 20), (4, 16)) for _ in range(200)]
    >>> sorted({a for a, _ in o}) == list(range(7)), sorted({b for _, b in o})
    (True, [0, 1, 2, 3, 4])
    """
    return tuple(int(rng.integers(0, s - w + 1)) for s, w in zip(volume_shape, window))


def augmentations(
    pooling_factors: Sequence[Sequence[int]], geometry: ModelGeometry
) -> tuple[Shape, tuple[tuple[int, int], ...]]:
    """Axes that may be flipped and planes that may be rotated by 90 degrees.

    A flip keeps the output aligned with the labels only when the halo is symmetric; a
    rotation also needs both axes to pool alike (and so to see alike-sampled data).

    >>> from stitchsafe.geometry import unet_geometry
    >>> pf = [(1, 2, 2), (2, 2, 2)]
    >>> augmentations(pf, unet_geometry(pf))
    ((0, 1, 2), ((1, 2),))
    """
    dims = geometry.dims
    flips = tuple(a for a in range(dims) if geometry.halo[a][0] == geometry.halo[a][1])
    column = [tuple(level[a] for level in pooling_factors) for a in range(dims)]
    planes = tuple(
        (a, b)
        for a in range(dims)
        for b in range(a + 1, dims)
        if column[a] == column[b] and a in flips and b in flips
    )
    return flips, planes


def augment(
    image: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    *,
    flips: Sequence[int],
    planes: Sequence[tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly flip and rotate an input crop and its output target alike.

    Both are ``(C, *spatial)``: the image's channels, and target channels such as the
    labels. Rotations by 90 or 270 degrees need both axes of the plane equally long in the
    input and in the target; otherwise only 0 or 180 degrees are drawn.

    >>> img, lab = np.arange(16.0).reshape(1, 4, 4), np.arange(4).reshape(1, 2, 2)
    >>> i2, l2 = augment(img, lab, np.random.default_rng(1), flips=(0, 1), planes=((0, 1),))
    >>> bool(np.array_equal(i2[0, 1:3, 1:3].argsort(None), l2[0].argsort(None)))
    True
    """
    for a in flips:
        if rng.random() < 0.5:
            image, target = np.flip(image, a + 1), np.flip(target, a + 1)
    for a, b in planes:
        square = (
            image.shape[a + 1] == image.shape[b + 1] and target.shape[a + 1] == target.shape[b + 1]
        )
        k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
        image = np.rot90(image, k, (a + 1, b + 1))
        target = np.rot90(target, k, (a + 1, b + 1))
    return image, target


@dataclass(frozen=True)
class ArrayVolume:
    """Just enough of :class:`stitchsafe.io.Volume` to compute normalisation statistics."""

    data: np.ndarray  # (C, *spatial)
    path: str = "<array>"

    @property
    def shape(self) -> Shape:
        return tuple(self.data.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    def read(self, box: Box) -> np.ndarray:
        return self.data[(slice(None), *box.to_slices())]


def describe_source(source: Any) -> str:
    """How an input is recorded in the training metadata.

    >>> describe_source(np.zeros((2, 3), np.uint8)), describe_source("raw.zarr")
    ('<array (2, 3) uint8>', 'raw.zarr')
    """
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return os.fspath(source)


@contextlib.contextmanager
def _train_options(flag: str) -> Iterator[None]:
    """The readers' messages with ``train``'s options: they name ``--input`` and
    ``--input-key`` (``plan``, ``predict``, ``check``), and train reads ``flag``
    (``--image`` or ``--labels``) with ``flag-key``.

    >>> with _train_options("--labels"):
    ...     raise StitchsafeError("no array 'x'. Pass one of them with --input-key.")
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: no array 'x'. Pass one of them with --labels-key.
    """
    try:
        yield
    except StitchsafeError as exc:
        text = re.sub(r"--input-key\b", f"{flag}-key", str(exc))
        raise StitchsafeError(re.sub(r"--input\b", flag, text)) from exc


def _read_all(source: PathLike, key: str | None, dims: int, flag: str) -> np.ndarray:
    with _train_options(flag), open_volume(source, key=key, spatial_dims=dims) as vol:
        return vol.read(Box.from_shape(vol.shape))


def infer_dims(labels: np.ndarray | PathLike, key: str | None) -> int:
    """Spatial axes of the labels: an array's ``ndim``, else 3 or 2 as the file allows.

    A file that cannot be read at all is refused with the reason (a zarr group without
    ``labels_key``, say), not as of unknown dimensionality.
    """
    if isinstance(labels, np.ndarray):
        return labels.ndim
    problems = []
    for dims in (3, 2):
        try:
            with _train_options("--labels"), open_volume(labels, key=key, spatial_dims=dims) as vol:
                if vol.channels == 1:
                    return dims
        except StitchsafeError as exc:
            problems.append(exc)
    if len(problems) == 2 and str(problems[0]) == str(problems[1]):
        raise problems[0]
    raise StitchsafeError(
        f"cannot tell whether the labels {os.fspath(labels)!r} are 2-D or 3-D; pass dims (--dims)."
    )


def load_training_data(
    image: np.ndarray | PathLike,
    labels: np.ndarray | PathLike,
    *,
    dims: int,
    image_key: str | None = None,
    labels_key: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The image as ``(C, *spatial)`` (stored dtype) and the labels as ``(*spatial)`` int64."""
    if isinstance(image, np.ndarray):
        img = image[np.newaxis] if image.ndim == dims else image
        if img.ndim != dims + 1:
            raise StitchsafeError(
                f"the training image has shape {image.shape}; expected {dims} spatial axes, "
                "optionally preceded by one channel axis."
            )
    else:
        img = _read_all(image, image_key, dims, "--image")
    if isinstance(labels, np.ndarray):
        lab = labels
    else:
        stored = _read_all(labels, labels_key, dims, "--labels")
        if stored.shape[0] != 1:
            raise StitchsafeError(
                f"the labels {os.fspath(labels)!r} have {stored.shape[0]} channels; instance "
                "labels are one integer image."
            )
        lab = stored[0]
    if lab.shape != img.shape[1:]:
        raise StitchsafeError(
            f"the labels' shape {lab.shape} differs from the image's spatial shape "
            f"{img.shape[1:]}; they must cover the same voxels."
        )
    if lab.dtype.kind not in "biu" or (lab.dtype.kind == "i" and lab.size and lab.min() < 0):
        raise StitchsafeError(
            f"labels must be non-negative integers (0 = background), got dtype {lab.dtype}."
        )
    return img, lab.astype(np.int64)


def contact_voxels(labels: np.ndarray) -> np.ndarray:
    """Voxels of an instance that share a face with a different instance.

    >>> contact_voxels(np.array([[1, 1, 2, 0], [1, 1, 0, 3]])).astype(int)
    array([[0, 1, 1, 0],
           [0, 0, 0, 0]])
    """
    out = np.zeros(labels.shape, bool)
    for a in range(labels.ndim):
        lo = [slice(None)] * labels.ndim
        hi = [slice(None)] * labels.ndim
        lo[a], hi[a] = slice(0, -1), slice(1, None)
        la, lb = labels[tuple(lo)], labels[tuple(hi)]
        touch = (la > 0) & (lb > 0) & (la != lb)
        out[tuple(lo)] |= touch
        out[tuple(hi)] |= touch
    return out


def default_min_size(labels: np.ndarray) -> int:
    """Suggested smallest instance size: a quarter of the 5th-percentile training object.

    >>> default_min_size(np.repeat(np.arange(5), 100))
    25
    """
    sizes = np.bincount(labels.ravel())[1:]
    sizes = sizes[sizes > 0]
    return max(1, int(0.25 * np.percentile(sizes, 5))) if sizes.size else 1
