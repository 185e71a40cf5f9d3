"""The ``thread`` executor: each run on its own daemon thread of this process.

A thread cannot be killed: ``terminate()`` (timeout, end_cond, asked to) sets the run's
``TerminationFlag`` and the run is logged ``terminate`` when its function returns.
Per-run threads rather than a pool: starting one costs tens of microseconds, a run that
never returns cannot starve the others, and nothing bounds the count but the tasks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..clock import Clock
from .base import Executor, RunHandle, RunOutcome, RunSpec
from .main import execute

__all__ = ["ThreadExecutor"]


class _ThreadHandle(RunHandle):
    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def is_alive(self) -> bool:
        return not self.done.is_set()

    def terminate(self) -> None:
        self.spec.flag.set()


class ThreadExecutor(Executor):
    """Starts each run on a new daemon thread named after its task."""

    kind = "thread"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._handles: set[_ThreadHandle] = set()
        self._lock = threading.Lock()

    def start(self, spec: RunSpec, on_done: Callable[[RunOutcome], None]) -> RunHandle:
        handle = _ThreadHandle(spec)

        def body() -> None:
            try:
                on_done(execute(spec, self.clock))
            finally:
                handle.done.set()
                with self._lock:
                    self._handles.discard(handle)

        thread = threading.Thread(target=body, name=f"redengine_nb:{spec.task_name}", daemon=True)
        handle.thread = thread
        with self._lock:
            self._handles.add(handle)
        thread.start()
        return handle

    def shutdown(self, *, terminate: bool) -> None:
        if terminate:
            with self._lock:
                handles = list(self._handles)
            for handle in handles:
                handle.terminate()
