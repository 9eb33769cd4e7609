"""Microscope files through the optional ``bioio``: recognising, opening and reading them.

Zeiss CZI, Nikon ND2 and Leica LIF files are told apart by their signatures (never their
names) and read by bioio's reader plugins (``bioio-czi``, ``bioio-nd2``, ``bioio-lif``:
the ``stitchsafe[bioio]`` extra). Kept apart from the reader (:mod:`._bioio_input`) so
that :mod:`._volume` can reopen a file in another process without importing the reader.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StitchsafeError
from ._quiet_logs import quiet_loggers

__all__: list[str] = []


@dataclass(frozen=True)
class MicroscopeFormat:
    """A file format bioio reads: its name, signature and reader plugin."""

    kind: str  # Volume.kind
    name: str  # in messages
    magic: bytes  # the file's first bytes
    plugin: str  # the PyPI package of bioio's reader plugin
    module: str  # its import name
    options: tuple[tuple[str, Any], ...] = ()  # keywords for the plugin's Reader

    def matches(self, head: bytes) -> bool:
        """Whether a file starting with ``head`` has this format's signature."""
        if self.kind == "lif":  # an int32 0x70, the block's length, then the byte 0x2A
            return head[:4] == self.magic and head[8:9] == b"\x2a"
        return head.startswith(self.magic)


FORMATS = (
    # aicspylibczi decodes a whole plane per dask chunk: one (Y, X) plane per chunk keeps
    # a tile's read to the planes it needs (Z slices, channels).
    MicroscopeFormat(
        "czi", "Zeiss CZI", b"ZISRAWFILE", "bioio-czi", "bioio_czi", (("chunk_dims", "YX"),)
    ),
    MicroscopeFormat("nd2", "Nikon ND2", b"\xda\xce\xbe\x0a", "bioio-nd2", "bioio_nd2"),
    MicroscopeFormat("lif", "Leica LIF", b"\x70\x00\x00\x00", "bioio-lif", "bioio_lif"),
)
MICROSCOPE_KINDS = tuple(f.kind for f in FORMATS)
EXTRA = "pip install 'stitchsafe[bioio]'"


def microscope_format(path: str) -> MicroscopeFormat | None:
    """The microscope format whose signature the regular file ``path`` starts with.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".bin") as f:
    ...     _ = f.write(b"ZISRAWFILE" + bytes(22)); f.flush()
    ...     microscope_format(f.name).name, microscope_format(__file__)
    ('Zeiss CZI', None)
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    return next((f for f in FORMATS if f.matches(head)), None)


def format_of_kind(kind: str) -> MicroscopeFormat:
    """The format of a :class:`~stitchsafe.io.Volume` ``kind`` (``"czi"``...)."""
    return next(f for f in FORMATS if f.kind == kind)


def quiet_bioio() -> contextlib.AbstractContextManager[list[str]]:
    """bioio's log lines (each reader it tried and why it failed) kept, not printed before
    stitchsafe's one-paragraph error; an application's own logging still gets them."""
    return quiet_loggers("bioio", "bioio_base", *(f.module for f in FORMATS))


def _plugin(fmt: MicroscopeFormat, path: str) -> Any:
    """The plugin's ``Reader`` class, or a one-paragraph error saying what to install."""
    try:
        import bioio  # noqa: F401, PLC0415 - optional extra, only for microscope files

        module = importlib.import_module(fmt.module)  # the format's plugin, also optional
    except ImportError:
        raise StitchsafeError(
            f"the input {path!r} is a {fmt.name} file, and reading it needs the optional "
            f"packages bioio and {fmt.plugin}, which are not installed. Install them with: "
            f"{EXTRA} (or pip install bioio {fmt.plugin}), or convert the file to OME-Zarr "
            "or OME-TIFF."
        ) from None
    return module.Reader


def open_image(path: str, fmt: MicroscopeFormat) -> Any:
    """``path`` opened as a ``bioio.BioImage`` by ``fmt``'s plugin; a file the plugin
    cannot read (truncated, corrupt) is refused naming it."""
    reader = _plugin(fmt, path)
    from bioio import BioImage  # noqa: PLC0415 - optional extra, imported by _plugin

    try:
        with quiet_bioio():
            return BioImage(path, reader=reader, **dict(fmt.options))
    except MemoryError:
        raise
    except Exception as e:  # the plugins raise many types for a file they cannot read
        reason = str(e).strip().splitlines()[-1].strip(" -.") or type(e).__name__
        raise StitchsafeError(
            f"cannot open the {fmt.name} file {path!r} ({reason}). The file looks "
            "truncated or corrupt (or is still being written); copy or export it again "
            "and run again."
        ) from None


def stored_dims(image: Any) -> str:
    """The axes read, in bioio's order ``T, C, Z, Y, X`` (``S`` for RGB samples): ``Z`` of
    size 1 left out, so that one plane is a 2-D image."""
    sizes = dict(zip(image.dims.order, image.dims.shape, strict=True))
    keep = [d for d in "TCSZYX" if d in sizes]
    return "".join(d for d in keep if not (d == "Z" and sizes[d] == 1))


def _regular(chunks: tuple[tuple[int, ...], ...]) -> tuple[int, ...] | None:
    """Dask's chunks as one chunk shape when they form a regular grid, else ``None``."""
    out = []
    for sizes in chunks:
        first = sizes[0]
        if any(s != first for s in sizes[:-1]) or sizes[-1] > first:
            return None
        out.append(int(first))
    return tuple(out)


class MicroscopeArray:
    """A bioio image's pixels as a lazily read array of axes :func:`stored_dims`.

    Indexing (ints and slices) reads only the plugin's chunks the index touches (whole
    planes for CZI); ``chunks`` is that chunk shape when it is regular, so that the input
    chunk cache decodes each about once. Reads are serialised: the plugins' file handles
    are not shared between threads safely.
    """

    def __init__(self, image: Any) -> None:
        self.dims = stored_dims(image)
        self._data = image.get_image_dask_data(self.dims)
        self.shape = tuple(int(n) for n in self._data.shape)
        self.dtype = np.dtype(self._data.dtype)
        self.chunks = _regular(self._data.chunks)
        self._lock = threading.Lock()

    def __getitem__(self, index: Any) -> np.ndarray:
        with self._lock, quiet_bioio():
            return np.asarray(self._data[index].compute(scheduler="synchronous"))


def open_array(location: str, kind: str, scene: int) -> MicroscopeArray:
    """Scene ``scene`` of the microscope file ``location`` (a ``kind`` file) as an array."""
    image = open_image(location, format_of_kind(kind))
    if scene:
        image.set_scene(scene)
    return MicroscopeArray(image)


def physical_sizes(image: Any) -> dict[str, float]:
    """bioio's physical pixel sizes (micrometer) per axis ``z``, ``y``, ``x`` that it
    knows: positive and finite (plugins give ``None`` or 0 for unknown)."""
    sizes = image.physical_pixel_sizes
    found = {"z": sizes.Z, "y": sizes.Y, "x": sizes.X}
    return {
        a: float(v)
        for a, v in found.items()
        if v is not None and math.isfinite(float(v)) and float(v) > 0
    }
