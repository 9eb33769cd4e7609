"""Feeding an executor: a bounded window of futures, results handled as they finish.

Work is submitted as one future per batch of tiles (or blocks), at most a few per worker
in flight, so millions of tiles cost neither client memory nor scheduler time; progress is
driven by completed futures on every scheduler. What a task does lives with its caller
(:func:`run_plan_distributed`, :mod:`stitchsafe.labels`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ..errors import StitchsafeError
from ._executors import Executor

__all__ = ["drive"]

T = TypeVar("T")
W = TypeVar("W")

_NOTHING: Any = object()


def drive(
    executor: Executor,
    fn: Callable[..., T],
    items: Iterable[W],
    *,
    on_result: Callable[[W, T], None],
    per_worker: int = 2,
    shared: Any = _NOTHING,
) -> None:
    """Run ``fn(item)`` for every item on ``executor``; ``on_result`` as each finishes.

    With ``shared`` (a handle from ``executor.share``), ``fn(shared, item)`` instead: the
    shared object travels to each worker once, not with every task.

    At most ``per_worker`` futures per worker are in flight (enough to keep workers busy
    while the next is shipped; few enough that client and scheduler memory stay flat for
    millions of items). ``on_result`` runs in the caller's thread, in completion order.
    The first failure cancels what is still pending and is raised.
    """
    queue = iter(items)
    pending: dict[Any, W] = {}

    def top_up() -> None:
        window = max(1, executor.workers * per_worker)
        for item in itertools.islice(queue, max(0, window - len(pending))):
            args = (item,) if shared is _NOTHING else (shared, item)
            pending[executor.submit(fn, *args)] = item

    try:
        top_up()
        while pending:
            for future in executor.wait_first(list(pending)):
                item = pending.pop(future)
                on_result(item, _result(future))
            top_up()
    finally:
        for future in pending:
            future.cancel()


def _result(future: Any) -> Any:
    """``future.result()``, with the failures of a lost worker explained."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise StitchsafeError(
            "a worker process died (out of memory, or killed); finished tiles are kept: "
            "rerun the same command with --resume, with a smaller --tile-shape or "
            "--batch-size if memory ran out."
        ) from None
    except Exception as exc:
        if type(exc).__name__ == "KilledWorker":
            raise StitchsafeError(
                "dask workers died repeatedly on the same task (out of memory, or killed); "
                "finished tiles are kept: rerun with --resume, with a smaller --tile-shape "
                "or --batch-size if memory ran out."
            ) from None
        raise
