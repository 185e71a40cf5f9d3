"""The ``main`` executor: a run happens inline, in the scheduler's own thread.

No parallelism: the scheduler waits for the run. Output is captured per run like a
thread run's. :func:`execute` is the one place where a main/thread run's outcome (success,
fail with traceback, inaction, terminate) is decided.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..clock import Clock
from ..errors import TaskInaction
from ..records import Action
from .base import Executor, RunHandle, RunOutcome, RunSpec
from .capture import begin_capture, end_capture
from .tracebacks import user_traceback

__all__ = ["MainExecutor", "execute"]


def execute(spec: RunSpec, clock: Clock) -> RunOutcome:
    """Call ``spec.target`` in this thread with its output captured; say how it ended."""
    value: object = None
    exc_text: str | None = None
    buffer, ident, previous = begin_capture(spec.output_limit)
    try:
        value = spec.target()
        action = Action.SUCCESS
    except TaskInaction:
        action = Action.INACTION
    except BaseException as exc:  # a task's SystemExit must not end the scheduler
        action = Action.FAIL
        exc_text = user_traceback(exc)
        if isinstance(exc, KeyboardInterrupt):
            exc_text += "(interrupted)\n"
    finally:
        end_capture(ident, previous)
    if spec.flag.is_set() and action is not Action.INACTION:
        # Asked to stop (timeout, end_cond, terminate()): the run is a termination
        # whatever it returned; an exception it raised on the way out is kept.
        action = Action.TERMINATE
    output = buffer.getvalue() or None
    return RunOutcome(
        action, clock.time(), value if action is Action.SUCCESS else None, exc_text, output
    )


class _DoneHandle(RunHandle):
    __slots__ = ("done", "spec")

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.done = threading.Event()

    def is_alive(self) -> bool:
        return not self.done.is_set()


class MainExecutor(Executor):
    """Runs each run inline; ``start`` returns when the run has ended."""

    kind = "main"

    def start(self, spec: RunSpec, on_done: Callable[[RunOutcome], None]) -> RunHandle:
        handle = _DoneHandle(spec)
        try:
            on_done(execute(spec, self.clock))
        finally:
            handle.done.set()
        return handle
