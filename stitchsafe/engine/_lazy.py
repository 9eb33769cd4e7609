"""A run as a lazy dask array: one block per tile, computed when (and where) asked.

:func:`lazy_output` turns a :class:`TileJob` without an output into a dask array of the
stitched result ``(C, *spatial)``, chunked by the plan's write boxes: block ``i`` is tile
``i``'s cropped output (:func:`tile_output`), so computing any part of the array runs
exactly the tiles under it, each once, and the whole equals one whole-volume pass as a
written run does. Nothing runs until the array is computed, on whatever dask scheduler
the caller uses; each process loads the model once per job (by its file, checked by
SHA-256, as distributed runs do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..geometry import Plan
from ._tile_tasks import TileJob, tile_output

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["TileBlocks", "lazy_output", "plan_chunks"]


class TileBlocks:
    """Computes one tile's block: with the planning process's model where it was made,
    with the model loaded from its file (once per process) where it is sent.

    Pickling drops the model, so a block sent to a process or a dask worker never carries
    a pickled network; only the job (paths, plan, normalisation) travels.
    """

    def __init__(self, job: TileJob, model: Any = None) -> None:
        self.job = job
        self.model = model

    def __getstate__(self) -> dict[str, Any]:
        return {"job": self.job, "model": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __call__(self, index: int) -> np.ndarray:
        return tile_output(self.job, index, self.model)


def plan_chunks(plan: Plan) -> tuple[tuple[int, ...], ...]:
    """The write boxes' sizes along each axis: the chunks of the stitched result.

    Examples
    --------
    >>> from stitchsafe.geometry import ModelGeometry, make_plan
    >>> g = ModelGeometry(period=(4, 4), halo=((2, 2), (2, 2)), min_input=(8, 8), step=(4, 4))
    >>> plan_chunks(make_plan((10, 7), g, tile_shape=(4, 4)))
    ((4, 4, 2), (4, 3))
    """
    chunks = []
    for axis, count in enumerate(plan.grid_shape):
        sizes = []
        for k in range(count):
            index = tuple(k if a == axis else 0 for a in range(plan.dims))
            sizes.append(plan.tile_at(index).write.shape[axis])
        chunks.append(tuple(sizes))
    return tuple(chunks)


def lazy_output(job: TileJob, channels: int, model: Any = None) -> da.Array:
    """The stitched float32 result of ``job`` as a dask array ``(channels, *spatial)``.

    ``job.output`` is ``None``: the blocks are returned, not written. ``model``: the loaded
    model (on ``job.device``) for blocks computed in this process.
    """
    # Slow to import (about 1 s, with pandas) and needed only here: every command that
    # imports the engine would pay for it otherwise.
    import dask.array as da  # noqa: PLC0415 - slow import, needed only by lazy results

    plan = job.plan
    name = f"stitchsafe-tiles-{job.token}"
    blocks = TileBlocks(job, model)
    graph = {}
    for i in range(len(plan)):
        graph[(name, 0, *plan.tile(i).index)] = (blocks, i)
    chunks = ((channels,), *plan_chunks(plan))
    return da.Array(graph, name, chunks=chunks, dtype=np.float32)
