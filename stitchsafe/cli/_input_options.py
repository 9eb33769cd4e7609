"""The options that say what of the input is read: voxel size, channels, timepoint, level, axes.

Defined once here (the rest are in :mod:`._options`); ``plan``, ``predict`` and ``check``
stack :data:`selection_options`, ``plan``, ``predict`` and ``segment``
:data:`physical_options`. The library checks the values (:class:`stitchsafe.io.InputSelection`,
:class:`stitchsafe.io.PhysicalSettings`), so a bad one is reported as bad input (exit 2).
"""

from __future__ import annotations

from typing import Any

import click

from ._options import stack

# -- physical scale (plan, predict, segment) -----------------------------------------------

physical_options = stack(
    click.option(
        "--voxel-size",
        default=None,
        metavar="Z,Y,X",
        help="Voxel size: one per spatial axis (e.g. 2,0.5,0.5 for Z,Y,X; 0.5,0.5 for Y,X) "
        "or one for every axis, in place of the input's own metadata (OME-Zarr scale, "
        "OME-TIFF PhysicalSize, ImageJ spacing and resolution). Written into every image "
        "stitchsafe writes. Default: the input's own.",
    ),
    click.option(
        "--unit",
        default=None,
        metavar="UNIT",
        help="Unit of the voxel size, for every spatial axis: an OME-Zarr unit of length "
        "(micrometer, nanometer, millimeter...; um, µm, nm, mm are understood) or pixel for "
        "none. Default: the input's own.",
    ),
)


def physical_keywords(options: dict[str, Any]) -> dict[str, Any]:
    """The library keywords of :data:`physical_options`."""
    return {"voxel_size": options["voxel_size"], "unit": options["unit"]}


# -- selection (plan, predict, check) ------------------------------------------------------

selection_options = stack(
    click.option(
        "--channel",
        default=None,
        metavar="C[,C...]",
        help="Input channel(s) to read, from 0, in the order given: e.g. --channel 1 or "
        "--channel 0,2. Default: all.",
    ),
    click.option(
        "--timepoint",
        default=None,
        metavar="T",
        help="Timepoint to read of an input with a time axis (OME-Zarr axis of type time, "
        "OME-TIFF/ImageJ T, HDF5 dimension label t), from 0. Default: the only one (needed "
        "when it has several).",
    ),
    click.option(
        "--level",
        default=None,
        metavar="N",
        help="Resolution level to read of a multiscale OME-Zarr image or a pyramidal "
        "(OME-)TIFF, with that level's voxel size and translation. Default: 0, the full "
        "resolution.",
    ),
    click.option(
        "--axes",
        default=None,
        metavar="LETTERS",
        help="The input's axes in storage order, one letter each: t (time), c (channel), z, "
        "y, x; e.g. yxc (channel-last 2-D), czyx, tzyx, zyx. For TIFF, HDF5, bare zarr and "
        "in-memory arrays that do not name their axes; an OME-Zarr image names its own. "
        "Default: the input's own names, else by position ((C,) Z, Y, X).",
    ),
)


def selection_keywords(options: dict[str, Any]) -> dict[str, Any]:
    """The library keywords of :data:`selection_options`."""
    return {
        "channel": options["channel"],
        "timepoint": options["timepoint"],
        "level": options["level"],
        "axes": options["axes"],
    }
