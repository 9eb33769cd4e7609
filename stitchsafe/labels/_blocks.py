"""Blocks of a volume and where a pass over them runs: the grid, the runner.

A blockwise labelling cuts the spatial shape into blocks, the output shards, in C order of
the block grid (:class:`BlockGrid`), and runs a function over every block index, one task
each, on a pool of threads here or on a dask cluster (:class:`BlockRunner`).

A pass that stops early (an error, Ctrl-C) submits nothing more, cancels what has not
started and joins its threads before the exception leaves :func:`run_blocks`: no thread
of a pass writes after it has returned or raised, so the caller may clean up at once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np

from ..engine import cpu_count, drive
from ..geometry import Box
from ..progress import progress_bar

__all__ = [
    "BlockGrid",
    "BlockRunner",
    "block_boxes",
    "block_runner",
    "face_plane",
    "grow_box",
    "inner_slices",
    "run_blocks",
]

T = TypeVar("T")


def block_boxes(shape: Sequence[int], block_shape: Sequence[int]) -> list[Box]:
    """The blocks of ``shape``, in C order of the block grid (the last ones may be cut).

    >>> [b.to_slices() for b in block_boxes((3, 4), (2, 4))]
    [(slice(0, 2, None), slice(0, 4, None)), (slice(2, 3, None), slice(0, 4, None))]
    """
    ranges = [range(0, s, b) for s, b in zip(shape, block_shape)]
    return [
        Box(begin, tuple(min(b + w, s) for b, w, s in zip(begin, block_shape, shape)))
        for begin in itertools.product(*ranges)
    ]


def face_plane(box: Box, axis: int, at: int) -> Box:
    """The one-voxel slab of ``box`` at coordinate ``at`` along ``axis``.

    >>> face_plane(Box((0, 0), (4, 3)), 1, 2)
    Box(begin=(0, 2), end=(4, 3))
    """
    begin, end = list(box.begin), list(box.end)
    begin[axis], end[axis] = at, at + 1
    return Box(tuple(begin), tuple(end))


def grow_box(box: Box, halo: int, shape: Sequence[int]) -> Box:
    """``box`` grown by ``halo`` voxels on every side, clipped to ``shape``.

    >>> grow_box(Box((0, 2), (2, 4)), 1, (3, 4))
    Box(begin=(0, 1), end=(3, 4))
    """
    return Box(
        tuple(max(0, b - halo) for b in box.begin),
        tuple(min(s, e + halo) for e, s in zip(box.end, shape)),
    )


def inner_slices(box: Box, window: Box) -> tuple[slice, ...]:
    """Where ``box`` lies inside ``window`` (both in volume coordinates).

    >>> inner_slices(Box((2,), (4,)), Box((1,), (5,)))
    (slice(1, 3, None),)
    """
    return tuple(slice(b - w, e - w) for b, e, w in zip(box.begin, box.end, window.begin))


@dataclass(frozen=True)
class BlockGrid:
    """A spatial ``shape`` cut into blocks of ``block`` voxels, numbered in C order.

    Examples
    --------
    >>> g = BlockGrid((3, 4), (2, 2))
    >>> len(g), g.grid, g.next_block(0, 0), g.next_block(3, 1)
    (4, (2, 2), 2, None)
    >>> list(g.blocks_in(Box((1, 1), (2, 3))))
    [0, 1]
    """

    shape: tuple[int, ...]
    block: tuple[int, ...]
    boxes: tuple[Box, ...] = field(init=False, repr=False)
    grid: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        block = tuple(int(b) for b in self.block)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "block", block)
        object.__setattr__(self, "boxes", tuple(block_boxes(shape, block)))
        object.__setattr__(self, "grid", tuple(math.ceil(s / b) for s, b in zip(shape, block)))

    def __len__(self) -> int:
        return len(self.boxes)

    def next_block(self, i: int, axis: int) -> int | None:
        """The block after block ``i`` along ``axis``, or None at the grid's end."""
        if np.unravel_index(i, self.grid)[axis] + 1 >= self.grid[axis]:
            return None
        return i + math.prod(self.grid[axis + 1 :])

    def window(self, i: int, halo: int) -> Box:
        """Block ``i`` grown by ``halo`` voxels on every side, clipped to the volume."""
        return grow_box(self.boxes[i], halo, self.shape)

    def blocks_in(self, window: Box) -> Iterator[int]:
        """The blocks that ``window`` overlaps, in C order."""
        lo = [b // s for b, s in zip(window.begin, self.block)]
        hi = [(e - 1) // s for e, s in zip(window.end, self.block)]
        for index in itertools.product(*(range(f, t + 1) for f, t in zip(lo, hi))):
            yield int(np.ravel_multi_index(index, self.grid))

    def global_index(self, i: int, local: np.ndarray) -> np.ndarray:
        """Flat C-order indices inside block ``i`` as ``int64`` indices in the volume."""
        box = self.boxes[i]
        coords = np.unravel_index(local, box.shape)
        shifted = tuple(c + b for c, b in zip(coords, box.begin))
        return np.ravel_multi_index(shifted, self.shape).astype(np.int64)


@dataclass(frozen=True)
class BlockRunner:
    """Where the blocks of a pass run.

    Attributes
    ----------
    num_workers
        Threads (default: the CPU count, at least 2), as for ``engine.run_plan``.
    progress
        Show tqdm bars on stderr.
    executor
        A dask cluster (:func:`stitchsafe.engine.open_executor`) to run the blocks on; its
        workers must see the arrays (zarr arrays on a shared file system). Anything else
        (``None``, a process pool) runs the blocks on threads in this process.
    """

    num_workers: int | None = None
    progress: bool = True
    executor: Any = None

    def __post_init__(self) -> None:
        if not hasattr(self.executor, "share"):
            object.__setattr__(self, "executor", None)

    def __call__(self, fn: Callable[[int], T], n: int, desc: str) -> list[T]:
        """``fn(0..n-1)``, one task per block index (:func:`run_blocks`)."""
        return run_blocks(
            fn,
            n,
            desc=desc,
            num_workers=self.num_workers,
            progress=self.progress,
            executor=self.executor,
        )


def block_runner(runner: BlockRunner | None, keywords: dict[str, Any], caller: str) -> BlockRunner:
    """``runner`` (default: the defaults) with the fields named in ``keywords`` replaced.

    >>> block_runner(None, {"progress": False}, "f").progress
    False
    >>> block_runner(None, {"workers": 2}, "f")
    Traceback (most recent call last):
    ...
    TypeError: f() got an unexpected keyword argument 'workers'
    """
    names = [f.name for f in fields(BlockRunner)]
    for key in keywords:
        if key not in names:
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")
    base = runner or BlockRunner()
    return BlockRunner(**{**{n: getattr(base, n) for n in names}, **keywords})


def run_blocks(
    fn: Callable[[int], T],
    n: int,
    *,
    desc: str,
    num_workers: int | None,
    progress: bool,
    executor: Any = None,
) -> list[T]:
    """Run ``fn(0..n-1)``: on a pool of threads here, or on a dask cluster.

    On a cluster (``executor`` from :func:`stitchsafe.engine.open_executor`), ``fn``
    (a closure over this pass's tables) is shipped to each worker once and tasks carry
    only groups of block indices. The first failure, or Ctrl-C, stops the pass: what has
    not started is cancelled, and on threads the tasks running are waited for, before the
    exception is raised.
    """
    bar = progress_bar(n, desc=desc, unit="block", enabled=progress)
    try:
        if executor is not None and hasattr(executor, "share"):
            return _run_on_cluster(fn, n, executor, bar, stage=desc)
        return _run_on_threads(fn, n, num_workers or max(2, cpu_count()), bar)
    finally:
        bar.close()


def _run_on_threads(fn: Callable[[int], T], n: int, workers: int, bar: Any) -> list[T]:
    """``fn(0..n-1)`` on ``workers`` threads, advancing ``bar``; joined however it ends."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="stitchsafe-labels")
    try:
        return _drive_threads(pool, fn, n, window=2 * workers, bar=bar)
    finally:
        # Whatever stopped the pass: nothing queued starts, the running tasks finish.
        pool.shutdown(wait=True, cancel_futures=True)


def _drive_threads(
    pool: ThreadPoolExecutor, fn: Callable[[int], T], n: int, *, window: int, bar: Any
) -> list[T]:
    """``fn(0..n-1)`` on ``pool``, at most ``window`` in flight; results in index order.

    The first failure (or an exception in this thread, such as ``KeyboardInterrupt``)
    cancels the tasks not yet started and is raised; the pool's owner joins its threads.
    """
    results: list[Any] = [None] * n
    indices = iter(range(n))
    pending: dict[Future[T], int] = {}
    try:
        while True:
            for i in itertools.islice(indices, max(0, window - len(pending))):
                pending[pool.submit(fn, i)] = i
            if not pending:
                return results
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                results[pending.pop(future)] = future.result()
                bar.update(1)
    finally:
        for future in pending:
            future.cancel()


def _run_on_cluster(
    fn: Callable[[int], T], n: int, executor: Any, bar: Any, *, stage: str
) -> list[T]:
    """``fn(0..n-1)`` on a dask cluster, ``fn`` shipped once, indices sent in groups.

    Lost workers raise :class:`stitchsafe.engine.WorkersLost` naming ``stage`` (the
    pass, e.g. ``"labels: components"``).
    """
    results: list[Any] = [None] * n
    size = max(1, min(64, n // max(1, 4 * executor.workers)))
    groups = [range(i, min(i + size, n)) for i in range(0, n, size)]

    def collect(group: range, values: list[T]) -> None:
        for i, value in zip(group, values):
            results[i] = value
        bar.update(len(group))

    kind, _, name = stage.partition(": ")  # "labels: faces" -> "labels (faces pass)"
    stage = f"{kind} ({name} pass)" if name else stage
    drive(executor, _apply, groups, on_result=collect, shared=fn, stage=stage)
    return results


def _apply(fn: Callable[[int], T], group: range) -> list[T]:
    """A cluster task: ``fn`` over a group of block indices."""
    return [fn(i) for i in group]
