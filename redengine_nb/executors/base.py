"""The executor seam: how one run of a task is carried out.

The session turns a due task into a :class:`RunSpec` (what to call, already bound to its
resolved arguments) and hands it to the executor named by the task's ``execution``. The
executor starts the run and returns a :class:`RunHandle`; when the run ends it calls
``on_done`` with a :class:`RunOutcome` (from whichever thread noticed the end). The
session writes the run log; executors never touch it.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..clock import Clock
from ..records import Action

__all__ = ["Executor", "RunFlag", "RunHandle", "RunOutcome", "RunSpec"]

_EVENT_LOCK = threading.Lock()


class RunFlag:
    """A run's stop flag: :meth:`set` asks the run to stop, :meth:`is_set` reads it.

    The ``threading.Event`` a task gets as its ``TerminationFlag()`` argument is made only
    when asked for (:meth:`event`): most runs never look at it, and an Event (a Condition,
    a lock, a deque) costs more to make than the rest of a launch. ``on_set`` hooks run
    once, when the flag is set (at once if it is set already).
    """

    __slots__ = ("_event", "_hooks", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None
        self._hooks: list[Callable[[], None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with _EVENT_LOCK:
            if self._set:
                return
            self._set = True
            event, hooks = self._event, self._hooks
        if event is not None:
            event.set()
        for hook in hooks or ():
            hook()

    def event(self) -> threading.Event:
        """The flag as a ``threading.Event`` (made on the first call, set with the flag)."""
        with _EVENT_LOCK:
            if self._event is None:
                self._event = threading.Event()
                if self._set:
                    self._event.set()
            return self._event

    def made_event(self) -> threading.Event | None:
        """The Event if :meth:`event` made one, else ``None``."""
        return self._event

    def wait(self, timeout: float | None = None) -> bool:
        return self.event().wait(timeout)

    def on_set(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` (no arguments) when the flag is set; now, if it is set already."""
        with _EVENT_LOCK:
            if not self._set:
                if self._hooks is None:
                    self._hooks = []
                self._hooks.append(hook)
                return
        hook()

    def __repr__(self) -> str:
        return f"RunFlag({'set' if self._set else 'clear'})"


@dataclass(slots=True)
class RunSpec:
    """One run, ready to go.

    ``target`` is a zero-argument callable that does the work (its return value is the
    run's return value; raising ``TaskInaction`` means inaction, any other exception a
    failure). For ``process`` runs it must be picklable with cloudpickle: the session
    builds it from the task's function and resolved arguments only.
    """

    task_name: str
    run_id: str
    target: Callable[[], Any]
    timeout: float | None = None
    #: Set when the run should stop (timeout, end_cond, terminate()); passed to the task
    #: as its ``TerminationFlag()`` argument for main/thread runs.
    flag: RunFlag = field(default_factory=RunFlag)
    #: Largest number of characters of captured output kept (the tail).
    output_limit: int = 64_000


@dataclass(slots=True)
class RunOutcome:
    """How a run ended. ``end`` is epoch seconds read from the session's clock."""

    action: Action
    end: float
    return_value: Any = None
    exc_text: str | None = None
    output: str | None = None


class RunHandle(ABC):
    """A live run: its spec, whether it is alive, how to ask it to stop."""

    __slots__ = ()

    spec: RunSpec

    @abstractmethod
    def is_alive(self) -> bool: ...

    def terminate(self) -> None:
        """Ask the run to stop. The default sets its flag, which is all an in-process run
        can be told; an executor that can do more (kill a process) overrides it."""
        self.spec.flag.set()


class Executor(ABC):
    """The base of every executor: starts runs of one kind (``main``, ``thread``,
    ``process``, ``dask``).

    A subclass names its ``kind`` and gives :meth:`start`; the rest has defaults written
    here once: ``clock`` (the session's, for the outcome's ``end``), :meth:`capacity` (no
    limit), :meth:`shutdown` (nothing to stop). Every executor passes the contract suite
    in ``tests/executors/test_executor_contract.py``; a new one is a module here, its line
    in :func:`~redengine_nb.executors.make_executor` and its line in that suite.
    """

    kind: str

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    @abstractmethod
    def start(self, spec: RunSpec, on_done: Callable[[RunOutcome], None]) -> RunHandle:
        """Start ``spec``; call ``on_done`` exactly once when it ends. ``main`` runs inline."""

    def capacity(self) -> int | None:
        """How many more runs may start now (``None``: no limit)."""
        return None

    def warm(self) -> None:
        """Get ready for runs before the first is due (the scheduler starts): by default
        nothing."""
        return None

    def shutdown(self, *, terminate: bool) -> None:
        """Stop accepting runs; with ``terminate``, stop the running ones. The default has
        nothing to stop."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self.kind!r}>"
