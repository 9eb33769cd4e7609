"""Feeding an executor: a bounded window of futures, results handled as they finish.

Work is submitted as one future per batch of tiles (or blocks), at most a few per worker
in flight, so millions of tiles cost neither client memory nor scheduler time; progress is
driven by completed futures on every scheduler. What a task does lives with its caller
(:func:`run_plan_distributed`, :mod:`stitchsafe.labels`).

Lost workers are reported here, once for every stage that runs on an executor: whatever
way a pool or a cluster fails when its workers die (a broken process pool, dask's
``KilledWorker``, a closed connection, tasks cancelled because the data they needed died
with a worker), :func:`drive` raises :class:`WorkersLost`, one paragraph saying what
happened; the caller that knows how its command continues gives the advice.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from ..errors import StitchsafeError
from ._executors import Executor

__all__ = ["WorkersLost", "drive"]

T = TypeVar("T")
W = TypeVar("W")

_NOTHING: Any = object()

# What to do when nothing better is known (``segment``, the Python API).
RERUN = (
    "Nothing that was complete before is lost. Make sure the workers can run (enough "
    "memory; a cluster with workers), then rerun the same command."
)


class WorkersLost(StitchsafeError):
    """The workers running a stage were lost: killed, out of memory, or their cluster gone.

    The message is one paragraph: what happened (:attr:`what`), then what to do
    (:attr:`advice`). A caller that knows how its command continues replaces the advice
    with :meth:`advise`.

    >>> lost = WorkersLost("the workers running the tiles were lost (killed).")
    >>> str(lost.advise("Rerun with --resume."))
    'the workers running the tiles were lost (killed). Rerun with --resume.'
    """

    def __init__(self, what: str, advice: str = RERUN) -> None:
        super().__init__(f"{what} {advice}")
        self.what = what
        self.advice = advice

    def advise(self, advice: str) -> WorkersLost:
        """The same report with ``advice`` as what to do."""
        return WorkersLost(self.what, advice)


def drive(
    executor: Executor,
    fn: Callable[..., T],
    items: Iterable[W],
    *,
    on_result: Callable[[W, T], None],
    per_worker: int = 2,
    shared: Any = _NOTHING,
    stage: str = "tasks",
) -> None:
    """Run ``fn(item)`` for every item on ``executor``; ``on_result`` as each finishes.

    With ``shared`` (an object; the executor must offer ``share``, as dask clusters do),
    ``fn(handle, item)`` instead: the object travels to each worker once, not with every
    task.

    At most ``per_worker`` futures per worker are in flight (enough to keep workers busy
    while the next is shipped; few enough that client and scheduler memory stay flat for
    millions of items). ``on_result`` runs in the caller's thread, in completion order.
    The first failure cancels what is still pending and is raised; a failure that means
    the workers were lost (``executor.lost``) is raised as :class:`WorkersLost` naming
    ``stage`` (e.g. ``"tiles"``).
    """
    queue = iter(items)
    pending: dict[Any, W] = {}
    try:
        handle = _NOTHING if shared is _NOTHING else cast(Any, executor).share(shared)

        def top_up() -> None:
            window = max(1, executor.workers * per_worker)
            for item in itertools.islice(queue, max(0, window - len(pending))):
                args = (item,) if handle is _NOTHING else (handle, item)
                pending[executor.submit(fn, *args)] = item

        top_up()
        while pending:
            for future in executor.wait_first(list(pending)):
                item = pending.pop(future)
                on_result(item, future.result())
            top_up()
    except Exception as exc:
        cause = executor.lost(exc)
        if cause is None:
            raise
        raise WorkersLost(f"the workers running the {stage} were lost: {cause}.") from exc
    finally:
        for future in pending:
            with contextlib.suppress(Exception):  # a lost cluster may not answer
                future.cancel()
