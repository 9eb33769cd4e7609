"""stitchsafe: exact tile-and-stitch CNN inference for large n-dimensional images.

The public facade. The package imports nothing heavy at start-up (``stitchsafe --help``
stays instant); each function loads its layer on first use:

- :func:`load_model`: a model loaded and its geometry resolved once, for many calls;
- :func:`plan`, :func:`predict`, :func:`segment`: the tiling, the run, labels again;
- :func:`predict_lazy`: the stitched result as a lazy dask array, nothing written;
- :func:`check`: prove on a crop that stitched tiles equal one whole-volume pass;
- :func:`read_info`: what an output holds and how far its run got;
- :func:`train`: a stitch-safe U-Net from an image and its labels.

The orchestration lives in :mod:`stitchsafe.session` (what plan, predict and check share)
and :mod:`stitchsafe.prediction` (predict in named steps); the layers below are the
subpackages ``geometry``, ``io``, ``models``, ``engine``, ``labels``, ``approximate``,
``reports`` and ``training`` (``docs/architecture.md``).
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

# Torch's CPU allocator backs large tensors with transparent huge pages when this is set
# before torch makes its first allocation (it reads the variable once): each forward pass
# then takes far fewer page faults. `stitchsafe predict` on a 64 x 512 x 512 volume ran
# about 1.4 times faster on a 2-core CPU (benchmarks/allocation.py). Set before torch is
# imported (the package imports it lazily); a value set by the user is kept.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "check",
    "load_model",
    "plan",
    "predict",
    "predict_lazy",
    "read_info",
    "segment",
    "train",
]

# public name -> (module, attribute), imported on first use
_LAZY = {
    "load_model": ("stitchsafe.model", "load_model"),
    "Model": ("stitchsafe.model", "Model"),
    "plan": ("stitchsafe.session", "plan"),
    "PlanResult": ("stitchsafe.session", "PlanResult"),
    "predict": ("stitchsafe.prediction", "predict"),
    "predict_lazy": ("stitchsafe.prediction", "predict_lazy"),
    "LazyPrediction": ("stitchsafe.prediction", "LazyPrediction"),
    "PredictResult": ("stitchsafe.prediction", "PredictResult"),
    "segment": ("stitchsafe.labels", "segment"),
    "SegmentResult": ("stitchsafe.labels", "SegmentResult"),
    "check": ("stitchsafe.reports", "check_stitching"),
    "read_info": ("stitchsafe.reports", "read_info"),
    "train": ("stitchsafe.training", "train"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(import_module(module), attribute)
    raise AttributeError(f"module 'stitchsafe' has no attribute {name!r}")
