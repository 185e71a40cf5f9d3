"""The run-log seam: what conditions read (:class:`History`) and what the session writes
(:class:`RunLog`). Stores live beside this module: ``memory.py`` and ``sqlite.py``.

Times are epoch seconds (floats). A record's *time* for an action is its start for
``RUN`` (the run started) and its end for the final actions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from ..records import Action, RunRecord

#: One run's end for :func:`finish_runs`: ``(run_id, action, end, exc_text, output)``.
RunEnd = tuple[str, Action, float, str | None, str | None]
#: One run's end for :func:`end_runs`: its task's name, then as :data:`RunEnd`.
TaskRunEnd = tuple[str, str, Action, float, str | None, str | None]

__all__ = [
    "BatchRunLog",
    "History",
    "RunEnd",
    "RunLog",
    "TaskRunEnd",
    "end_runs",
    "finish_runs",
    "last_of",
    "start_runs",
    "start_times",
]


@runtime_checkable
class History(Protocol):
    """The read side the conditions use. Every lookup is indexed, never a scan."""

    def last(self, task: str, action: Action) -> float | None:
        """Time of the newest record of ``action`` for ``task`` (``RUN``: newest start)."""
        ...

    def count(
        self,
        task: str,
        action: Action | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        """How many of ``task``'s records have ``action`` (any, if ``None``), with their
        time in ``[since, until)`` (open-ended where ``None``)."""
        ...


@runtime_checkable
class RunLog(History, Protocol):
    """A store of run records; the session is its only writer within a process."""

    #: Human-readable location, used in error messages (a path or ``':memory:'``).
    location: str

    def start_run(self, task: str, *, created: float, start: float, owner: str) -> RunRecord:
        """Record that a run started (``action=RUN``) and return it with its ``run_id``."""
        ...

    def finish_run(
        self,
        run_id: str,
        action: Action,
        *,
        end: float,
        exc_text: str | None = None,
        output: str | None = None,
    ) -> RunRecord:
        """Close a run with its final action. Durable when this returns (a store may commit
        it together with other threads' concurrent writes, never later than that)."""
        ...

    def log_run(self, record: RunRecord) -> RunRecord:
        """Append a complete record in one write (a run that failed before it started)."""
        ...

    def records(
        self,
        task: str | None = None,
        action: Action | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Records, oldest first; with ``limit``, the newest ``limit`` of them."""
        ...

    def open_runs(self) -> Sequence[RunRecord]:
        """Records still marked ``RUN``."""
        ...

    def mark_crashed(self, run_ids: Iterable[str], *, end: float) -> int:
        """Turn open runs into ``CRASH`` records (their owner is gone)."""
        ...

    def task_names(self) -> list[str]:
        """Every task name with at least one record."""
        ...

    def refresh(self) -> None:
        """See writes made by other processes (cheap when there were none)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class BatchRunLog(RunLog, Protocol):
    """A run log that records many starts in one write (both stores here are one).

    Kept apart from :class:`RunLog` so that a store written before it still passes as a
    ``RunLog``; :func:`start_runs` falls back to one ``start_run`` per task for those.
    """

    def start_runs(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
    ) -> list[RunRecord]:
        """Record one started run per name in ``tasks`` (in order), all in one transaction:
        all are durable when this returns, or none is written and it raises. ``start`` is
        one time for all of them or one per task."""
        ...


def last_of(history: History, task: str, actions: Iterable[Action]) -> float | None:
    """The newest of ``history.last(task, a)`` over ``actions``: one call where the store
    has ``last_of`` (its lock taken once), else one ``last`` per action."""
    batch = getattr(history, "last_of", None)
    if batch is not None:
        found: float | None = batch(task, actions)
        return found
    best: float | None = None
    for action in actions:
        t = history.last(task, action)
        if t is not None and (best is None or t > best):
            best = t
    return best


def start_times(start: float | Sequence[float], tasks: Sequence[str]) -> Sequence[float]:
    """``start_runs``' ``start``, one time per task (``ValueError`` if the counts differ)."""
    if isinstance(start, int | float):
        return [float(start)] * len(tasks)
    if len(start) != len(tasks):
        raise ValueError(f"start_runs: {len(start)} start times for {len(tasks)} tasks")
    return start


def start_runs(
    log: RunLog,
    tasks: Sequence[str],
    *,
    created: float,
    start: float | Sequence[float],
    owner: str,
) -> list[RunRecord]:
    """``log.start_runs(...)`` where the store has it, else one ``start_run`` per task."""
    batch = getattr(log, "start_runs", None)
    if batch is not None:
        records: list[RunRecord] = batch(tasks, created=created, start=start, owner=owner)
        return records
    starts = start_times(start, tasks)
    return [
        log.start_run(task, created=created, start=at, owner=owner)
        for task, at in zip(tasks, starts, strict=True)
    ]


def finish_runs(log: RunLog, ends: Sequence[RunEnd]) -> list[RunRecord | Exception]:
    """Close many runs, in one transaction where the store has ``finish_runs`` (both
    stores here do), else one ``finish_run`` each. Returns, in order, each run's record or
    the error that refused it alone (an unknown or already ended run). Raises if the
    shared write failed (none of them is written then; with the fallback, the ones before
    the failing one are)."""
    batch = getattr(log, "finish_runs", None)
    if batch is not None:
        results: list[RunRecord | Exception] = batch(ends)
        return results
    out: list[RunRecord | Exception] = []
    for run_id, action, end, exc_text, output in ends:
        try:
            out.append(log.finish_run(run_id, action, end=end, exc_text=exc_text, output=output))
        except (KeyError, ValueError) as exc:
            out.append(exc)
    return out


def end_runs(log: RunLog, ends: Sequence[TaskRunEnd]) -> list[Exception | None]:
    """Close many runs when the caller needs no records back (the session's end writer):
    ``log.end_runs(...)`` where the store has it (one statement for the batch), else
    :func:`finish_runs`. Returns, in order, ``None`` or the error that refused a run alone;
    raises as :func:`finish_runs` does."""
    batch = getattr(log, "end_runs", None)
    if batch is not None:
        results: list[Exception | None] = batch(ends)
        return results
    done = finish_runs(log, [end[1:] for end in ends])
    return [r if isinstance(r, Exception) else None for r in done]
