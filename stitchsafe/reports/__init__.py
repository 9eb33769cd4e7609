"""What stitchsafe tells users: the stitching check, output info, the plan's text, pictures.

``check`` runs the tiled engine and one whole-volume pass over a crop of the input and
measures how far they differ (:func:`check_stitching`, :class:`CheckResult`); ``info``
reads what an output holds (:func:`read_info`, :class:`OutputInfo`); the plan's text and
PNG pictures (deviation maps, label overlays) complete the reports. The modules inside are
private; import from here.
"""

from __future__ import annotations

from ._check import DEFAULT_PICTURE, check_stitching
from ._crop import (
    MAX_CROP_INPUT_VOXELS,
    centred_crop,
    crop_tile_shape,
    naive_tiling,
)
from ._deviation import Deviation, measure_deviation
from ._deviation_picture import PictureText, save_deviation_picture
from ._info import find_images, read_info
from ._output_info import (
    ArrayInfo,
    LabelsInfo,
    OutputInfo,
)
from ._pictures import (
    label_colours,
    matched_colours,
    matched_objects,
    relative_log_deviation,
    save_deviation_maps,
    save_label_overlay,
    save_matched_labels,
    scale_bar_length,
)
from ._plan_text import (
    describe_plan,
)
from ._result import (
    EXACT_RTOL,
    EXIT_NOT_EXACT,
    CheckResult,
)

__all__ = [
    "ArrayInfo",
    "CheckResult",
    "DEFAULT_PICTURE",
    "Deviation",
    "EXACT_RTOL",
    "EXIT_NOT_EXACT",
    "LabelsInfo",
    "MAX_CROP_INPUT_VOXELS",
    "OutputInfo",
    "PictureText",
    "centred_crop",
    "check_stitching",
    "crop_tile_shape",
    "describe_plan",
    "find_images",
    "label_colours",
    "matched_colours",
    "matched_objects",
    "measure_deviation",
    "naive_tiling",
    "read_info",
    "relative_log_deviation",
    "save_deviation_maps",
    "save_deviation_picture",
    "save_label_overlay",
    "save_matched_labels",
    "scale_bar_length",
]
