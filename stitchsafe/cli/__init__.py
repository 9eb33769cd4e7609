"""The ``stitchsafe`` command line: a click group, one module per command.

Only this package imports lazily (torch, dask, zarr load inside the commands), so that
``stitchsafe --help`` answers at once.
"""

from __future__ import annotations

from ._main import cli, interruption, main, storage_advice

__all__ = ["cli", "interruption", "main", "storage_advice"]
