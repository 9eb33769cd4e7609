"""stitchsafe: exact tile-and-stitch CNN inference for large n-dimensional images.

The package imports nothing heavy at start-up (``stitchsafe --help`` stays instant);
``stitchsafe.plan``, ``stitchsafe.predict`` and ``stitchsafe.segment`` load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["plan", "predict", "segment", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("plan", "predict", "segment", "PlanResult", "PredictResult", "SegmentResult"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'stitchsafe' has no attribute {name!r}")
