"""A typed read API over a session, for the panel and the magics.

``session.status()`` and ``get_task_log()`` are DataFrames for people and for code that
wants pandas; the panel wants plain numbers. :class:`SessionReads` reads the same state
(tasks, the run log, the scheduler's stop/restart requests) as small frozen dataclasses and
the log's own :class:`~redengine_nb.records.RunRecord` values, with times as epoch seconds,
so nothing goes through datetimes and DataFrames only to come back as floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..conditions.base import All, Any, BaseCondition, Not
from ..conditions.status import After, HasAction, Running
from ..records import Action, RunRecord

if TYPE_CHECKING:
    from .._engine.session import Session
    from ..app import RedEngine

__all__ = ["SchedulerView", "SessionReads", "TaskState", "named_tasks"]


@dataclass(frozen=True, slots=True)
class TaskState:
    """One task as the panel shows it; times are epoch seconds."""

    name: str
    condition: str
    #: The last outcome in the log (``None``: never ran).
    status: str | None
    is_running: bool
    disabled: bool
    running_since: float | None
    last_run: float | None
    next_due: float | None
    runtime: float | None
    runs: int
    fails: int
    execution: str
    #: Task names its condition reads that are not registered in the session.
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SchedulerView:
    """Whether the scheduler thread lives, and what it was asked to do."""

    running: bool
    stop_requested: bool
    restart_requested: bool
    #: Names of the tasks with a live run.
    live_runs: tuple[str, ...]


def named_tasks(cond: BaseCondition) -> list[str]:
    """The task names a condition names explicitly (``after task 'x'``, ``task 'x' has …``)."""
    found: list[str] = []

    def walk(node: BaseCondition) -> None:
        if isinstance(node, All | Any):
            for part in node.parts:
                walk(part)
        elif isinstance(node, Not):
            walk(node.part)
        elif isinstance(node, After):
            found.extend(node.tasks)
        elif isinstance(node, HasAction | Running) and node.task is not None:
            found.append(node.task)

    walk(cond)
    return list(dict.fromkeys(found))


class SessionReads:
    """Typed reads of one session (and its app, for whether the scheduler runs)."""

    def __init__(self, session: Session, app: RedEngine | None = None) -> None:
        self.session = session
        self.app = app

    @property
    def tz(self) -> ZoneInfo:
        return self.session.tz

    def now(self) -> float:
        return self.session.clock.time()

    def scheduler(self) -> SchedulerView:
        session = self.session
        running = self.app.is_running if self.app is not None else session.runner is not None
        live = tuple(t.name for t in session.tasks if session.is_task_running(t.name))
        return SchedulerView(
            running=running,
            stop_requested=session.stop_requested,
            restart_requested=session.restart_requested,
            live_runs=live,
        )

    def tasks(self) -> list[TaskState]:
        session = self.session
        log = session.runlog
        names = {task.name for task in session.tasks}
        rows: list[TaskState] = []
        for task in session.tasks:
            try:
                due = task.next_due()
            except Exception:  # a custom condition that cannot say: shown as "on event"
                due = None
            since = task.running_since
            rows.append(
                TaskState(
                    name=task.name,
                    condition=str(task.start_cond),
                    status=task.status,
                    is_running=task.is_running,
                    disabled=task.disabled,
                    running_since=None if since is None else since.timestamp(),
                    last_run=log.last(task.name, Action.RUN),
                    next_due=None if due is None or task.disabled else due.timestamp(),
                    runtime=self._runtime(task.name),
                    runs=log.count(task.name, Action.RUN),
                    fails=log.count(task.name, Action.FAIL),
                    execution=task.execution,
                    missing=tuple(n for n in named_tasks(task.start_cond) if n not in names),
                )
            )
        return rows

    def _runtime(self, name: str) -> float | None:
        for record in reversed(self.session.runlog.records(task=name, limit=3)):
            if record.action is not Action.RUN and record.runtime is not None:
                return record.runtime
        return None

    def runs(
        self,
        task: str | None = None,
        *,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Run records, oldest first (the newest ``limit`` of them)."""
        return self.session.runlog.records(task=task, since=since, limit=limit)

    def task_names(self) -> list[str]:
        return [task.name for task in self.session.tasks]

    def logged_names(self) -> list[str]:
        """Every task name the run log has records of."""
        return self.session.runlog.task_names()
