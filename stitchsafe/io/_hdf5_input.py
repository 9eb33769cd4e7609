"""HDF5 inputs (ilastik, PlantSeg, CREMI...): one dataset of an HDF5 file, read through h5py.

The dataset is given as ``--input file.h5 --input-key path/to/dataset`` or as
``--input file.h5/path/to/dataset``. Its axes follow the positional rule (or the
dimension labels, when every axis has one); its voxel size comes from the attributes
:func:`~stitchsafe.io._physical_formats.hdf5_values` reads. Reads are lazy: h5py reads
only the chunks (hyperslab) a box needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import StitchsafeError
from ._axes import UNKNOWN, map_axes, role_of_name
from ._hdf5_file import hdf5_contents, open_hdf5_file
from ._physical import PhysicalSettings, resolve_physical
from ._physical_formats import hdf5_values
from ._selection import InputSelection
from ._volume import Volume, check_dtype, make_volume

__all__: list[str] = []


def open_hdf5(
    file: str,
    key: str | None,
    spatial_dims: int,
    physical: PhysicalSettings | None = None,
    chosen: InputSelection | None = None,
) -> Volume:
    """Open the dataset ``key`` of the HDF5 file ``file``.

    ``physical`` (``--voxel-size``, ``--unit``) replaces the dataset's own voxel size or unit;
    ``chosen`` (``--channel``, ``--timepoint``) selects channels and a timepoint (a dataset
    has one resolution level, so ``--level`` is refused).

    Examples
    --------
    >>> import tempfile, h5py
    >>> from stitchsafe.geometry import Box
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> with h5py.File(f"{d}/a.h5", "w") as f:
    ...     ds = f.create_dataset("volumes/raw", data=np.arange(60).reshape(3, 4, 5),
    ...                           chunks=(1, 2, 5), compression="gzip")
    ...     ds.attrs["resolution"] = [40, 4, 4]
    >>> v = open_hdf5(f"{d}/a.h5", "volumes/raw", 3)
    >>> v.kind, v.shape, v.channels, v.physical.describe()
    ('hdf5', (3, 4, 5), 1, '40 x 4 x 4 nanometer')
    >>> v.read(Box((1, 1, 1), (2, 3, 3)))[0, 0]
    array([[26, 27],
           [31, 32]])
    >>> v.close(); tmp.cleanup()
    """
    with open_hdf5_file(file) as handle:
        key = _dataset_key(handle, file, key)
        ds = handle[key]
        shape = tuple(int(s) for s in ds.shape)
        dtype = np.dtype(ds.dtype)
        where = f"the dataset {key!r} of the HDF5 file {file!r}"
        check_dtype(dtype, where)
        roles, names = _dimension_labels(ds, len(shape))
        chosen = chosen if chosen is not None else InputSelection()
        chosen.refuse_level(where, "an HDF5 dataset")
        axes = map_axes(shape, roles, names, spatial_dims, where, chosen)
        values = hdf5_values(ds.attrs, axes.space, len(shape), where)
    scale = resolve_physical(values, axes.spatial_names, where, physical)
    return make_volume(
        file,
        "hdf5",
        dtype,
        axes,
        file,
        physical=scale,
        container=file,
        array_path=key,
        chosen=chosen,
    )


def _dataset_key(handle: Any, file: str, key: str | None) -> str:
    """``key`` without its slashes, once checked to name a dataset of the open file."""
    datasets, groups = hdf5_contents(handle)
    found = (
        f"Datasets found: {', '.join(datasets) or 'none'}; groups: {', '.join(groups) or 'none'}"
    )
    if key is None or not key.strip("/"):
        raise StitchsafeError(
            f"the input {file!r} is an HDF5 file; say which dataset to read with --input-key "
            f"(or as {file}/<dataset>). {found}."
        )
    key = key.strip("/")
    node = handle.get(key)
    if node is None:
        raise StitchsafeError(
            f"the HDF5 file {file!r} has no dataset {key!r}. {found}. Pass one of the "
            "datasets with --input-key (or as <file>/<dataset>)."
        )
    if not hasattr(node, "shape"):
        inside, _ = hdf5_contents(node)
        raise StitchsafeError(
            f"{key!r} in the HDF5 file {file!r} is a group, not a dataset, so it holds no "
            f"image. Datasets in it: {', '.join(inside) or 'none'}. Pass a dataset's path "
            f"with --input-key (e.g. {key}/<dataset>)."
        )
    return key


def _dimension_labels(ds: Any, n: int) -> tuple[list[str | None], list[str | None]]:
    """Roles and names from the dataset's dimension labels, when every axis has one."""
    labels = [str(ds.dims[i].label or "") for i in range(n)]
    if all(labels):
        return [role_of_name(name) for name in labels], list(labels)
    return [UNKNOWN] * n, [None] * n
