"""A typed read API over a session, for the panel and the magics.

``session.status()`` and ``get_task_log()`` are DataFrames for people and for code that
wants pandas; the panel wants plain numbers. :class:`SessionReads` reads the same state
(tasks, the run log, the scheduler's stop/restart requests) as small frozen dataclasses and
the log's own :class:`~redengine_nb.records.RunRecord` values, with times as epoch seconds,
so nothing goes through datetimes and DataFrames only to come back as floats.
"""

from __future__ import annotations

import os
import socket
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any as AnyValue
from zoneinfo import ZoneInfo

from ..conditions.base import All, Any, BaseCondition, Not
from ..conditions.status import After, HasAction, Running
from ..records import Action, RunRecord

if TYPE_CHECKING:
    from .._engine.session import Session
    from ..app import RedEngine

__all__ = [
    "ClusterView",
    "SchedulerLease",
    "SchedulerView",
    "SessionReads",
    "TaskState",
    "named_tasks",
    "owner_name",
]


#: Lease names remembered per session at most (a lease id is 25 characters).
NAMES_KEPT = 1000
_LEASE_NAMES: weakref.WeakKeyDictionary[Session, dict[str, str]] = weakref.WeakKeyDictionary()


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


@dataclass(frozen=True, slots=True)
class SchedulerLease:
    """One scheduler holding a lease on the run log, as the panel shows it."""

    lease_id: str
    host: str
    pid: int
    #: Epoch seconds: when it took the lease, when the lease runs out unrenewed.
    started: float
    expires: float
    alive: bool
    #: This session's own lease.
    this: bool

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The Dask cluster this session's ``dask`` runs use."""

    address: str
    workers: int
    #: The dashboard's URL as Dask gives it (``None``: no dashboard).
    dashboard: str | None


def owner_name(owner: str | None, names: Mapping[str, str]) -> str:
    """``host:pid`` of the scheduler that wrote a run: a lease id through ``names`` (lease id
    to ``host:pid``), an old ``host:pid:start`` owner by its first two parts; a lease that
    is no longer on the log is ``lease L1a2b3c4d (gone)``; no owner, "" ."""
    if not owner:
        return ""
    if ":" in owner:
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        return f"{host}:{pid}" if pid.isdigit() else owner
    known = names.get(owner)
    if known is not None:
        return known
    return f"lease {owner[:9]} (gone)"


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
        #: ``host:pid`` by lease id, of every lease seen (bounded by :data:`NAMES_KEPT`):
        #: one dict per session, shared by its panels and magics.
        self._names = _LEASE_NAMES.setdefault(session, {})

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

    # -- the schedulers on the log, and the Dask cluster --------------------------------

    def _owns(self, lease_id: str) -> bool:
        return self.session.owns(lease_id)

    def schedulers(self) -> list[SchedulerLease]:
        """Every scheduler with a lease on the run log (alive and expired), oldest first."""
        now = self.now()
        found = [
            SchedulerLease(
                lease_id=lease.lease_id,
                host=lease.host,
                pid=int(lease.pid),
                started=lease.started,
                expires=lease.expires,
                alive=bool(lease.alive(now)),
                this=self._owns(lease.lease_id),
            )
            for lease in self.session.runlog.leases(now)
        ]
        for lease in found:
            self._names[lease.lease_id] = lease.name
        while len(self._names) > NAMES_KEPT:  # bounded: the oldest names go first
            del self._names[next(iter(self._names))]
        return found

    def shared(self) -> bool:
        """Whether another scheduler may write the run log (one was seen, or the store is
        shared by nature: PostgreSQL)."""
        return self.session.runlog.shared

    def scheduler_names(self, owners: Iterable[str | None]) -> dict[str, str]:
        """``host:pid`` by run owner for ``owners`` (see :func:`owner_name`). The leases are
        read at most once, and only when a lease id is not known yet; the names of leases
        seen before are remembered for the session (bounded), so a stopped scheduler's runs
        keep theirs."""
        wanted = {o for o in owners if o}
        unknown = {o for o in wanted if ":" not in o and o not in self._names}
        mine = {o for o in unknown if self._owns(o)}
        for lease_id in mine:  # this session's earlier leases: this process
            self._names[lease_id] = f"{socket.gethostname()}:{os.getpid()}"
        if unknown - mine:
            self.schedulers()
        return {o: owner_name(o, self._names) for o in wanted}

    def cluster(self) -> ClusterView | None:
        """The Dask cluster in use (``None`` until a ``dask`` run has connected)."""
        info: Mapping[str, AnyValue] | None = self.session.dask_cluster()
        if info is None:
            return None
        dashboard = info.get("dashboard")
        return ClusterView(
            address=str(info.get("address") or ""),
            workers=int(info.get("workers") or 0),
            dashboard=str(dashboard) if dashboard else None,
        )

    def task_names(self) -> list[str]:
        return [task.name for task in self.session.tasks]

    def logged_names(self) -> list[str]:
        """Every task name the run log has records of."""
        return self.session.runlog.task_names()
