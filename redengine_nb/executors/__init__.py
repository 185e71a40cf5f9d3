"""Executors: how one run is carried out (``main``, ``thread``, ``process``, ``dask``).

The seam is in :mod:`.base`; :func:`make_executor` builds one by name. The ``process``
and ``dask`` executors are imported only when such a run is asked for.
"""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from .base import Executor, RunFlag, RunHandle, RunOutcome, RunSpec

# Imported with the package (stdlib only, a few ms), not at the first run: that would
# delay the first runs after a start by as much. The process executor (multiprocessing,
# cloudpickle) stays lazy.
from .main import MainExecutor
from .thread import ThreadExecutor

__all__ = [
    "EXECUTIONS",
    "SEPARATE_MEMORY",
    "Executor",
    "RunFlag",
    "RunHandle",
    "RunOutcome",
    "RunSpec",
    "make_executor",
]

EXECUTIONS = ("process", "thread", "main", "dask")
#: Executions whose runs have their own memory: arguments are resolved as for a process
#: run (``Session()``/``Task()`` refused) and a cell body runs in a fresh namespace.
SEPARATE_MEMORY = frozenset({"process", "dask"})


def make_executor(
    kind: str, clock: Clock, *, max_processes: int = 1, config: Any = None
) -> Executor:
    """An executor of ``kind`` (one of :data:`EXECUTIONS`)."""
    if kind == "main":
        return MainExecutor(clock)
    if kind == "thread":
        return ThreadExecutor(clock)
    if kind == "process":
        from .process import ProcessExecutor

        executor: Executor = ProcessExecutor(max_processes, clock)
        return executor
    if kind == "dask":
        from .dask import DaskExecutor

        return DaskExecutor(
            clock,
            address=None if config is None else config.dask_address,
            max_runs=None if config is None else (lambda: config.dask_max_runs),
        )
    raise ValueError(f"unknown execution {kind!r}; expected one of {', '.join(EXECUTIONS)}")
