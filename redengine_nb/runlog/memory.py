"""An in-memory run log: for tests, and for ``logs=':memory:'``-style throwaway sessions.

Lookups are indexed: the newest time per ``(task, action)`` is kept in a dict, and the
times per ``(task, action)`` in sorted lists for counting in a span. ``RUN`` is indexed by
start for every run that started (ended or not), like ``last(task, RUN)``; the record
times per task (the end once ended, else the start) are a separate list, so that
``count(task)`` of any action counts each record once.

Several sessions of one process may share a store; ``claim_starts`` then calls its
``recheck`` whenever more than one lease is held (it cannot tell whose write came last
more cheaply, and the in-memory recheck costs little).
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterable, Sequence

from ..records import Action, RunRecord
from .base import (
    LeaseInfo,
    LeaseLost,
    Recheck,
    RunLogBase,
    is_lease_id,
    new_lease_id,
    start_times,
)

__all__ = ["MemoryRunLog"]


class MemoryRunLog(RunLogBase):
    """A :class:`~redengine_nb.runlog.base.RunLogBase` held in this process's memory."""

    location = ":memory:"

    def __init__(self, records: Iterable[RunRecord] = ()) -> None:
        self._lock = threading.RLock()
        self._leases: dict[str, LeaseInfo] = {}
        self._reap_all = True  # reap_expired looks at every open run (see SQLiteRunLog)
        self._records: dict[str, RunRecord] = {}
        self._last: dict[tuple[str, Action], float] = {}
        self._times: dict[tuple[str, Action], list[float]] = {}
        self._record_times: dict[str, list[float]] = {}
        self._ids = itertools.count(1)
        for record in records:
            self.log_run(record)

    # -- History ---------------------------------------------------------------------
    def last(self, task: str, action: Action) -> float | None:
        return self._last.get((task, action))

    def last_of(self, task: str, actions: Iterable[Action]) -> float | None:
        """The newest of ``last(task, a)`` over ``actions``."""
        get = self._last.get
        best: float | None = None
        for action in actions:
            t = get((task, action))
            if t is not None and (best is None or t > best):
                best = t
        return best

    def last_before(self, task: str, action: Action, until: float) -> float | None:
        with self._lock:
            times = self._times.get((task, Action.parse(action)))
            if not times:
                return None
            i = bisect.bisect_left(times, until)
            return times[i - 1] if i > 0 else None

    def count(
        self,
        task: str,
        action: Action | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        with self._lock:
            if action is None:
                times = self._record_times.get(task)
            else:
                times = self._times.get((task, Action.parse(action)))
            if not times:
                return 0
            lo = 0 if since is None else bisect.bisect_left(times, since)
            hi = len(times) if until is None else bisect.bisect_left(times, until)
            return max(0, hi - lo)

    # -- writing ---------------------------------------------------------------------
    def _index(self, task: str, action: Action, when: float) -> None:
        key = (task, action)
        bisect.insort(self._times.setdefault(key, []), when)
        prev = self._last.get(key)
        if prev is None or when > prev:
            self._last[key] = when

    def _retime(self, task: str, old: float | None, new: float) -> None:
        """Move a record's time in the per-task list (``old=None``: a new record)."""
        times = self._record_times.setdefault(task, [])
        if old is not None:
            i = bisect.bisect_left(times, old)
            if i < len(times) and times[i] == old:
                del times[i]
        bisect.insort(times, new)

    def _new_id(self) -> str:
        while True:  # skip ids that log_run() kept from given records
            run_id = str(next(self._ids))
            if run_id not in self._records:
                return run_id

    def start_run(self, task: str, *, created: float, start: float, owner: str) -> RunRecord:
        with self._lock:
            record = RunRecord(self._new_id(), task, Action.RUN, created, start, owner=owner)
            self._records[record.run_id] = record
            self._index(task, Action.RUN, start)
            self._retime(task, None, record.time)
            return record

    def start_runs(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
    ) -> list[RunRecord]:
        """One started run per name in ``tasks`` (``start``: one time, or one per task)."""
        starts = start_times(start, tasks)
        with self._lock:
            return [
                self.start_run(task, created=created, start=at, owner=owner)
                for task, at in zip(tasks, starts, strict=True)
            ]

    def claim_starts(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
        recheck: Recheck,
    ) -> list[RunRecord]:
        starts = start_times(start, tasks)
        with self._lock:
            if owner not in self._leases:
                raise LeaseLost(f"run log {self.location!r}: the lease {owner!r} is gone")
            pairs = list(zip(tasks, starts, strict=True))
            if len(self._leases) > 1 and pairs:
                keep = set(recheck(tasks))
                pairs = [(t, at) for t, at in pairs if t in keep]
            return [self.start_run(t, created=created, start=at, owner=owner) for t, at in pairs]

    # -- leases ----------------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return len(self._leases) > 1

    def acquire_lease(self, *, now: float, ttl: float, host: str, pid: int, info: str = "") -> str:
        lease_id = new_lease_id()
        with self._lock:
            self._leases[lease_id] = LeaseInfo(lease_id, host, pid, now, now, now + ttl, info)
        return lease_id

    def renew_lease(self, lease_id: str, *, now: float, ttl: float) -> bool:
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is None:
                return False
            self._leases[lease_id] = LeaseInfo(
                lease_id, lease.host, lease.pid, lease.started, now, now + ttl, lease.info
            )
            return True

    def release_lease(self, lease_id: str) -> None:
        with self._lock:
            self._leases.pop(lease_id, None)
            self._reap_all = True

    def leases(self, now: float) -> list[LeaseInfo]:
        with self._lock:
            return sorted(self._leases.values(), key=lambda lease: lease.started)

    def reap_expired(self, *, now: float) -> list[str]:
        with self._lock:
            gone = [lease for lease in self._leases.values() if lease.expires < now]
            for lease in gone:
                del self._leases[lease.lease_id]
            if not gone and not self._reap_all:
                return []
            self._reap_all = False
            dead = [
                r.run_id
                for r in self._records.values()
                if r.action is Action.RUN and is_lease_id(r.owner) and r.owner not in self._leases
            ]
            for run_id in dead:
                self.finish_run(run_id, Action.CRASH, end=now)
            return dead

    # -- upkeep ----------------------------------------------------------------------
    def prune(self, *, before: float | None = None, keep: int | None = None) -> int:
        with self._lock:
            ended = [r for r in self._records.values() if r.action is not Action.RUN]
            drop: set[str] = set()
            if before is not None:
                drop.update(r.run_id for r in ended if r.time < before)
            if keep is not None:
                by_task: dict[str, list[RunRecord]] = {}
                for r in ended:
                    by_task.setdefault(r.task_name, []).append(r)
                for rs in by_task.values():
                    rs.sort(key=lambda r: (r.created, int(r.run_id) if r.run_id.isdigit() else 0))
                    drop.update(r.run_id for r in rs[: max(0, len(rs) - keep)])
            if not drop:
                return 0
            kept = [r for r in self._records.values() if r.run_id not in drop]
            self._records.clear()
            self._last.clear()
            self._times.clear()
            self._record_times.clear()
            for r in kept:
                self._add(r)
            return len(drop)

    def finish_run(
        self,
        run_id: str,
        action: Action,
        *,
        end: float,
        exc_text: str | None = None,
        output: str | None = None,
    ) -> RunRecord:
        action = Action.final(action)
        with self._lock:
            record = self._records[run_id]
            if record.action is not Action.RUN:
                raise ValueError(
                    f"run {run_id} of {record.task_name!r} already ended ({record.action.value})"
                )
            before = record.time
            record.action = action
            record.end = end
            record.exc_text = exc_text
            record.output = output
            self._index(record.task_name, action, end)
            self._retime(record.task_name, before, record.time)
            return record

    def finish_runs(
        self, ends: Sequence[tuple[str, Action, float, str | None, str | None]]
    ) -> list[RunRecord | Exception]:
        """Close many runs at once (see :meth:`SQLiteRunLog.finish_runs`)."""
        out: list[RunRecord | Exception] = []
        with self._lock:
            for run_id, action, end, exc_text, output in ends:
                try:
                    out.append(
                        self.finish_run(run_id, action, end=end, exc_text=exc_text, output=output)
                    )
                except (KeyError, ValueError) as exc:
                    out.append(exc)
        return out

    def log_run(self, record: RunRecord) -> RunRecord:
        with self._lock:
            if not record.run_id or record.run_id in self._records:
                record.run_id = self._new_id()
            return self._add(record)

    def _add(self, record: RunRecord) -> RunRecord:
        with self._lock:
            self._records[record.run_id] = record
            if record.start is not None:
                self._index(record.task_name, Action.RUN, record.start)
            if record.action is not Action.RUN:
                self._index(record.task_name, record.action, record.time)
            self._retime(record.task_name, None, record.time)
            return record

    # -- reading ---------------------------------------------------------------------
    def records(
        self,
        task: str | None = None,
        action: Action | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        with self._lock:
            found = [
                r
                for r in self._records.values()
                if (task is None or r.task_name == task)
                and (action is None or r.action is action)
                and (since is None or r.time >= since)
            ]
        found.sort(key=lambda r: (r.created, int(r.run_id) if r.run_id.isdigit() else 0))
        if limit is None:
            return found
        return found[-limit:] if limit > 0 else []  # found[-0:] would be everything

    def open_runs(self) -> Sequence[RunRecord]:
        with self._lock:
            return [r for r in self._records.values() if r.action is Action.RUN]

    def task_names(self) -> list[str]:
        with self._lock:
            return sorted({r.task_name for r in self._records.values()})
