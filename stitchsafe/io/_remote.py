"""Opening an input at a URL (``s3://``, ``gs://``, ``https://``...): a zarr array or image.

The node at the URL is looked up through zarr's store layer first, so that a missing
bucket or key, refused credentials and an unreachable endpoint are each refused in one
paragraph before anything else is read; then it opens as a local zarr input does.
"""

from __future__ import annotations

from ._physical import PhysicalSettings
from ._selection import InputSelection
from ._stores import missing_remote, prepare_url
from ._volume import Volume
from ._zarr_input import open_zarr
from ._zarr_meta import zarr_node

__all__: list[str] = []


def open_remote(
    url: str,
    key: str | None,
    spatial_dims: int,
    physical: PhysicalSettings | None,
    chosen: InputSelection,
) -> Volume:
    """The zarr array, OME-Zarr image or array ``key`` in a group at ``url``."""
    url = prepare_url(url)
    if zarr_node(url) is None:
        raise missing_remote(url)
    return open_zarr(url, key, spatial_dims, physical, chosen)
