"""``predict`` in named steps: settings -> session -> output or resume -> run -> labels.

The public :func:`predict` takes convenient keywords and turns them into one
:class:`PredictSettings` at once; :func:`run_predict` then reads top to bottom:

1. :func:`~stitchsafe.session.open_session`: volume, model, geometry, plan;
2. :func:`prepare_run`: batch size, label parameters (checked before the network runs),
   whole-volume normalisation, output location, run fingerprint;
3. :func:`open_target`: a new output, or the interrupted one to resume (fingerprint checked);
4. :func:`execute`: the tiles, on this process or on dask workers, marking each one done;
5. :func:`label_output`: instance labels from the written embeddings.

Labels-only runs (``embeddings=False``) branch after step 2 into
:func:`stitchsafe.labels.run_labels_only`. :func:`predict_lazy` stops after step 1 and the
normalisation: the result as a lazy dask array, one block per tile, nothing written.
"""

from __future__ import annotations

from ._lazy import LazyPrediction, predict_lazy
from ._predict import predict, run_predict
from ._settings import SPATIAL_AXES, PredictResult, PredictSettings
from ._steps import PreparedRun, Target

__all__ = [
    "SPATIAL_AXES",
    "LazyPrediction",
    "PredictResult",
    "PredictSettings",
    "PreparedRun",
    "Target",
    "predict",
    "predict_lazy",
    "run_predict",
]
