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

from ..records import Action

__all__ = ["Executor", "RunHandle", "RunOutcome", "RunSpec"]


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
    flag: threading.Event = field(default_factory=threading.Event)
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
    """A live run."""

    spec: RunSpec

    @abstractmethod
    def is_alive(self) -> bool: ...

    @abstractmethod
    def terminate(self) -> None:
        """Ask the run to stop: set its flag; a process is killed (TERM, then KILL)."""


class Executor(ABC):
    """Starts runs of one kind (``main``, ``thread`` or ``process``)."""

    kind: str

    @abstractmethod
    def start(self, spec: RunSpec, on_done: Callable[[RunOutcome], None]) -> RunHandle:
        """Start ``spec``; call ``on_done`` exactly once when it ends. ``main`` runs inline."""

    def capacity(self) -> int | None:
        """How many more runs may start now (``None``: no limit)."""
        return None

    @abstractmethod
    def shutdown(self, *, terminate: bool) -> None:
        """Stop accepting runs; with ``terminate``, stop the running ones."""
