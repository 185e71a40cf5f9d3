"""What a process run's handle is on both start paths (the template process and
multiprocessing's forkserver/spawn): its deadline, its termination state, its end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import RunHandle, RunOutcome, RunSpec

if TYPE_CHECKING:
    from .process import ProcessExecutor

__all__ = ["ProcessRunHandle"]


class ProcessRunHandle(RunHandle):
    """A live process run. Its state changes happen on its executor's watcher thread,
    under the executor's lock."""

    def __init__(
        self, executor: ProcessExecutor, spec: RunSpec, on_done: Callable[[RunOutcome], None]
    ) -> None:
        self.spec = spec
        self._executor = executor
        self.on_done = on_done
        self.deadline = None if spec.timeout is None else time.monotonic() + spec.timeout
        #: Why termination was asked for (``None``: it was not).
        self.term_reason: str | None = None
        self.term_sent = False
        self.kill_at: float | None = None
        self.killed = False
        #: Taken off the watch list: its outcome is being decided, terminate() is too late.
        self.reaped = False
        self.done = threading.Event()

    def _shown_pid(self) -> int | None:
        """The pid its ``repr`` shows."""
        raise NotImplementedError

    def is_alive(self) -> bool:
        return not self.done.is_set()

    def terminate(self) -> None:
        self._executor._request_terminate(self, "terminated on request")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``on_done`` has been called; return whether it has."""
        return self.done.wait(timeout)

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "done"
        return f"<process run {self.spec.task_name!r} pid={self._shown_pid()} {state}>"
