"""Executors: how one run is carried out (``main``, ``thread``, ``process``).

The seam is in :mod:`.base`; :func:`make_executor` builds one by name. The ``process``
executor is imported only when a process run is asked for.
"""

from __future__ import annotations

from ..clock import Clock
from .base import Executor, RunFlag, RunHandle, RunOutcome, RunSpec

# Imported with the package (stdlib only, a few ms), not at the first run: that would
# delay the first runs after a start by as much. The process executor (multiprocessing,
# cloudpickle) stays lazy.
from .main import MainExecutor
from .thread import ThreadExecutor

__all__ = [
    "EXECUTIONS",
    "Executor",
    "RunFlag",
    "RunHandle",
    "RunOutcome",
    "RunSpec",
    "make_executor",
]

EXECUTIONS = ("process", "thread", "main")


def make_executor(kind: str, clock: Clock, *, max_processes: int = 1) -> Executor:
    """An executor of ``kind`` (one of :data:`EXECUTIONS`)."""
    if kind == "main":
        return MainExecutor(clock)
    if kind == "thread":
        return ThreadExecutor(clock)
    if kind == "process":
        from .process import ProcessExecutor

        executor: Executor = ProcessExecutor(max_processes, clock)
        return executor
    raise ValueError(f"unknown execution {kind!r}; expected one of {', '.join(EXECUTIONS)}")
