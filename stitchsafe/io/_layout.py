"""What an output image holds (:class:`ImageLayout`) and where it was put (:class:`OutputSpec`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._chunks import ChunkPolicy, StorageChunks

__all__ = ["ImageLayout", "OutputSpec"]


@dataclass(frozen=True)
class ImageLayout:
    """The description of an output image to create: shape, chunks, axes, dtype, metadata.

    Fields are normalised to tuples (and ``attributes`` to a dict) and checked once.

    Attributes
    ----------
    shape
        Spatial shape, ``(Z, Y, X)`` or ``(Y, X)``.
    chunks
        Spatial write box of a tile: what each task writes whole. Stored as one shard of
        bounded inner chunks, or as one chunk when that is small enough (``chunking``).
    axes
        Names of the spatial axes, e.g. ``("z", "y", "x")``.
    dtype
        Data type of the array.
    channels
        Number of channels, stored as a leading ``c`` axis; ``None`` for a label image
        (spatial axes only). An image with channels needs positive sizes.
    attributes
        Stored under ``attributes["stitchsafe"]`` of the image group (plan, model, ...).
    scale, units
        Voxel size and unit per spatial axis (OME-Zarr ``scale`` and ``unit``); 1.0 and
        ``None`` when not given.
    translation
        Position of voxel 0 per spatial axis, in ``units`` (OME-Zarr ``translation``);
        0.0 when not given.
    chunking
        The bounds of the inner chunks (:class:`ChunkPolicy`); the default suits viewers
        and codecs.

    Examples
    --------
    >>> layout = ImageLayout(shape=(10, 12), chunks=[4, 8], axes=("y", "x"), channels=3)
    >>> layout.chunks, layout.axes, layout.scale, layout.units
    ((4, 8), ('y', 'x'), (1.0, 1.0), (None, None))
    >>> layout.array_shape, layout.array_chunks, layout.array_shards, layout.dimension_names
    ((3, 10, 12), (3, 4, 8), None, ('c', 'y', 'x'))
    >>> big = ImageLayout(shape=(600, 600), chunks=(512, 512), axes=("y", "x"), channels=3)
    >>> big.array_chunks, big.array_shards
    ((1, 256, 256), (3, 512, 512))
    >>> ImageLayout(shape=(10,), chunks=(4, 8), axes=("x",))
    Traceback (most recent call last):
    ...
    ValueError: shape (10,), chunks (4, 8) and axes ('x',) differ in length
    """

    shape: Sequence[int]
    chunks: Sequence[int]
    axes: Sequence[str]
    dtype: str = "float32"
    channels: int | None = None
    attributes: Mapping[str, Any] | None = field(default=None, hash=False)
    scale: Sequence[float] | None = None
    units: Sequence[str | None] | None = None
    chunking: ChunkPolicy = ChunkPolicy()
    translation: Sequence[float] | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        chunks = tuple(int(c) for c in self.chunks)
        axes = tuple(str(a) for a in self.axes)
        nd = len(shape)
        if not (len(chunks) == len(axes) == nd) or nd == 0:
            raise ValueError(f"shape {shape}, chunks {chunks} and axes {axes} differ in length")
        channels = self.channels
        if channels is not None and (
            channels < 1 or any(s < 1 for s in shape) or any(c < 1 for c in chunks)
        ):
            raise ValueError(
                f"invalid output shape {shape} / chunks {chunks} / channels {channels}"
            )
        scale = tuple(float(s) for s in self.scale) if self.scale is not None else (1.0,) * nd
        units = tuple(self.units) if self.units is not None else (None,) * nd
        given = self.translation
        translation = tuple(float(t) for t in given) if given is not None else (0.0,) * nd
        if len(scale) != nd or len(units) != nd or len(translation) != nd:
            raise ValueError(
                f"scale {scale} / units {units} / translation {translation} need {nd} values"
            )
        for name, value in (
            ("shape", shape),
            ("chunks", chunks),
            ("axes", axes),
            ("attributes", dict(self.attributes or {})),
            ("scale", scale),
            ("units", units),
            ("translation", translation),
        ):
            object.__setattr__(self, name, value)

    @property
    def array_shape(self) -> tuple[int, ...]:
        """Shape of the level-0 array: ``(C, *shape)``, or ``shape`` without channels."""
        lead = () if self.channels is None else (self.channels,)
        return (*lead, *self.shape)

    @property
    def storage(self) -> StorageChunks:
        """How the level-0 array is stored: its (inner) chunks and shards."""
        return self.chunking.storage(self.chunks, channels=self.channels, dtype=self.dtype)

    @property
    def array_chunks(self) -> tuple[int, ...]:
        """Chunks of the level-0 array (inside the shards, when sharded)."""
        return self.storage.chunks

    @property
    def array_shards(self) -> tuple[int, ...] | None:
        """Shards of the level-0 array: one per write box, every channel; ``None`` when
        a write box is stored as one chunk."""
        return self.storage.shards

    @property
    def dimension_names(self) -> tuple[str, ...]:
        """Axis names of the level-0 array, ``"c"`` first when it has channels."""
        lead = () if self.channels is None else ("c",)
        return (*lead, *self.axes)


@dataclass(frozen=True)
class OutputSpec:
    """Where an output image was put (:func:`stitchsafe.io.prepare_output` and friends).

    Attributes
    ----------
    group
        Path of the zarr v3 group (the output container root).
    image
        Path of the OME-Zarr image group inside ``group``, e.g. ``"embeddings"``.
    array
        Path of the level-0 array inside ``group``, e.g. ``"embeddings/0"``.
    level1_factors
        The pyramid's first factors, when every block written to level 0 is also written,
        downsampled by them (mean), to level ``1`` (:func:`stitchsafe.io.tiled_level_one`):
        the pyramid pass then starts from level 2 instead of reading level 0 back.
    """

    group: str
    image: str
    array: str
    level1_factors: tuple[int, ...] | None = None
