"""An in-memory run log: for tests, and for ``logs=':memory:'``-style throwaway sessions.

Lookups are indexed: the newest time per ``(task, action)`` is kept in a dict, and the
times per ``(task, action)`` in sorted lists for counting in a span. ``RUN`` is indexed by
start for every run that started (ended or not), like ``last(task, RUN)``; the record
times per task (the end once ended, else the start) are a separate list, so that
``count(task)`` of any action counts each record once.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterable, Sequence

from ..records import Action, RunRecord
from .base import start_times

__all__ = ["MemoryRunLog"]


class MemoryRunLog:
    """A :class:`~redengine_nb.runlog.base.RunLog` held in this process's memory."""

    location = ":memory:"

    def __init__(self, records: Iterable[RunRecord] = ()) -> None:
        self._lock = threading.RLock()
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

    def mark_crashed(self, run_ids: Iterable[str], *, end: float) -> int:
        done = 0
        for run_id in run_ids:
            try:
                self.finish_run(run_id, Action.CRASH, end=end)
                done += 1
            except (KeyError, ValueError):
                continue
        return done

    def task_names(self) -> list[str]:
        with self._lock:
            return sorted({r.task_name for r in self._records.values()})

    def refresh(self) -> None:
        """Nothing to do: no other process writes to this store."""

    def close(self) -> None:
        """Nothing to release."""
