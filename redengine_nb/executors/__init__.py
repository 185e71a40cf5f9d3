"""Executors: how one run is carried out (``main``, ``thread``, ``process``).

The seam is in :mod:`.base`; :func:`make_executor` builds one by name. The ``process``
executor is imported only when a process run is asked for.
"""

from __future__ import annotations

from ..clock import Clock
from .base import Executor, RunFlag, RunHandle, RunOutcome, RunSpec

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
        from .main import MainExecutor

        return MainExecutor(clock)
    if kind == "thread":
        from .thread import ThreadExecutor

        return ThreadExecutor(clock)
    if kind == "process":
        from .process import ProcessExecutor  # type: ignore[import-not-found,unused-ignore]

        executor: Executor = ProcessExecutor(max_processes, clock)
        return executor
    raise ValueError(f"unknown execution {kind!r}; expected one of {', '.join(EXECUTIONS)}")
