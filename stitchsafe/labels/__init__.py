"""Instance labels from embeddings: the labelling's parameters, its per-voxel decisions and
components, the blockwise passes (components, face links, merging, relabelling), labels for
embeddings on disk (``segment``; new labels built beside the old ones and swapped in when
complete), labels-only runs from tiles in memory, and metrics. The modules inside are
private; import from here.
"""

from __future__ import annotations

from ._blocks import (
    BlockGrid,
    BlockRunner,
    block_boxes,
    block_runner,
    face_plane,
    grow_box,
    inner_slices,
    run_blocks,
)
from ._blockwise import (
    EmbeddingBlocks,
    LabelStats,
    label_blocks,
    nonfinite_values,
)
from ._fragments import CodeBlocks, label_from_fragments
from ._instances import (
    Fragments,
    first_voxel_order,
    label_array,
    label_block,
    merge_fragments,
)
from ._labelling import (
    LABELS_NAME,
    SCRATCH,
    EmbeddingsImage,
    open_embeddings,
    write_labels,
)
from ._labels_only import (
    CODES,
    FRAGMENTS,
    LABELS_IMAGE,
    LabelsOnlyResult,
    LabelsOnlyRun,
    run_labels_only,
)
from ._merge import (
    FaceLinks,
    FacePairs,
    FragmentIndex,
    LinkSource,
    Relabel,
    merge_and_count,
    merge_and_relabel,
)
from ._metrics import (
    Matching,
    adapted_rand_error,
    average_precision,
    match,
)
from ._params import (
    EMBEDDING,
    FALLBACK_FOREGROUND_THRESHOLD,
    FALLBACK_MIN_SIZE,
    FALLBACK_SEED_FOREGROUND_THRESHOLD,
    FALLBACK_THRESHOLD,
    FOREGROUND,
    LABEL_DTYPES,
    PROBABILITY,
    LabelParams,
    check_label_dtype,
    label_defaults,
    max_label,
    resolve_label_params,
)
from ._roles import IGNORE, ROLE_NAMES, RoleChoice, choose_roles, parse_channel_roles
from ._segment import SegmentResult, segment
from ._settings import (
    LabelSettings,
)
from ._swap import (
    NEW_LABELS,
    LabelPlace,
)
from ._tile_labels import (
    FOREGROUND_BIT,
    NEVER,
    RANK_BITS,
    RANK_SHIFT,
    ExtendedTiles,
    grow_by_codes,
    labelling_margin,
    lattice_margin,
    tile_codes,
    tile_fragments,
)
from ._voxels import (
    face_slices,
    foreground_mask,
    grow_labels,
    link_mask,
    seed_mask,
    squared_distance,
)
from ._warnings import (
    MOSTLY_LABELLED,
    ONE_OBJECT,
    ResultStats,
    nonfinite_warning,
    result_warnings,
)

__all__ = [
    "BlockGrid",
    "BlockRunner",
    "CODES",
    "CodeBlocks",
    "EMBEDDING",
    "EmbeddingBlocks",
    "EmbeddingsImage",
    "ExtendedTiles",
    "FALLBACK_FOREGROUND_THRESHOLD",
    "FALLBACK_MIN_SIZE",
    "FALLBACK_SEED_FOREGROUND_THRESHOLD",
    "FALLBACK_THRESHOLD",
    "FOREGROUND",
    "FOREGROUND_BIT",
    "FRAGMENTS",
    "FaceLinks",
    "FacePairs",
    "FragmentIndex",
    "Fragments",
    "IGNORE",
    "LABELS_IMAGE",
    "LABELS_NAME",
    "LABEL_DTYPES",
    "LabelParams",
    "LabelPlace",
    "LabelSettings",
    "LabelStats",
    "LabelsOnlyResult",
    "LabelsOnlyRun",
    "LinkSource",
    "MOSTLY_LABELLED",
    "Matching",
    "NEVER",
    "NEW_LABELS",
    "ONE_OBJECT",
    "PROBABILITY",
    "RANK_BITS",
    "RANK_SHIFT",
    "ROLE_NAMES",
    "Relabel",
    "ResultStats",
    "RoleChoice",
    "SCRATCH",
    "SegmentResult",
    "adapted_rand_error",
    "average_precision",
    "block_boxes",
    "block_runner",
    "check_label_dtype",
    "choose_roles",
    "face_plane",
    "face_slices",
    "first_voxel_order",
    "foreground_mask",
    "grow_box",
    "grow_by_codes",
    "grow_labels",
    "inner_slices",
    "label_array",
    "label_block",
    "label_blocks",
    "label_defaults",
    "label_from_fragments",
    "labelling_margin",
    "lattice_margin",
    "link_mask",
    "match",
    "max_label",
    "merge_and_count",
    "merge_and_relabel",
    "merge_fragments",
    "nonfinite_values",
    "nonfinite_warning",
    "open_embeddings",
    "parse_channel_roles",
    "resolve_label_params",
    "result_warnings",
    "run_blocks",
    "run_labels_only",
    "seed_mask",
    "segment",
    "squared_distance",
    "tile_codes",
    "tile_fragments",
    "write_labels",
]
