"""The run-log seam: what conditions read (:class:`History`) and the one base every store
subclasses (:class:`RunLogBase`). Stores live beside this module: ``memory.py``,
``sqlite.py`` and ``postgres.py`` (the last two on ``lastcache.LastCacheBase``, each with
its parts in modules of their own); a new store is a module subclassing
:class:`RunLogBase` plus one line in the contract suite
(``tests/runlog/test_runlog_contract.py``).

Times are epoch seconds (floats). A record's *time* for an action is its start for
``RUN`` (the run started) and its end for the final actions.

The shared-log protocol (several schedulers on one store; docs/reliability.md):

- **Leases** say who is alive. Each scheduler takes a lease at start
  (:meth:`RunLogBase.acquire_lease`), renews it at its heartbeat
  (:meth:`~RunLogBase.renew_lease`) and releases it at a clean stop. A run's ``owner`` is
  the lease id of the scheduler that started it; :meth:`~RunLogBase.reap_expired` turns the
  open runs of expired (or missing) leases into ``crash`` and deletes those leases, in one
  write transaction. A renewal that finds its lease gone returns ``False``: that scheduler
  was presumed dead and must stop writing (fencing).
- **Claims** make a start exactly-once: :meth:`~RunLogBase.claim_starts` writes starts in
  one write transaction after checking, if another writer committed since this store last
  looked, that each task is still due against the history as stored (``recheck``).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import RunLogError
from ..records import Action, RunRecord

#: One run's end for :meth:`RunLogBase.finish_runs`: ``(run_id, action, end, exc_text, output)``.
RunEnd = tuple[str, Action, float, str | None, str | None]
#: One run's end for :meth:`RunLogBase.end_runs`: its task's name, then as :data:`RunEnd`.
TaskRunEnd = tuple[str, str, Action, float, str | None, str | None]
#: ``claim_starts``' ``recheck``: given the names about to start, the ones still due.
Recheck = Callable[[Sequence[str]], Sequence[str]]

__all__ = [
    "History",
    "LeaseInfo",
    "LeaseLost",
    "Recheck",
    "RunEnd",
    "RunLog",
    "RunLogBase",
    "RunLogLost",
    "TaskRunEnd",
    "end_runs",
    "finish_runs",
    "is_lease_id",
    "last_of",
    "new_lease_id",
    "record_of",
    "start_runs",
    "start_times",
]


class LeaseLost(RunLogError):
    """This scheduler's lease is gone (it expired and another scheduler reaped it): its
    runs were marked ``crash`` and it must not write starts any more."""


class RunLogLost(RunLogError):
    """The store lost records it had acknowledged (its file was deleted or replaced while
    open): every later write is refused, and the scheduler stops with this error."""


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """One scheduler's lease as stored."""

    lease_id: str
    host: str
    pid: int
    started: float
    renewed: float
    expires: float
    info: str = ""

    def alive(self, now: float) -> bool:
        return self.expires >= now


def new_lease_id() -> str:
    """A fresh lease id (random; ``L`` then 24 hex digits, never a host:pid owner token)."""
    return "L" + os.urandom(12).hex()  # not secrets: it imports hashlib (OpenSSL)


def is_lease_id(owner: str | None) -> bool:
    """Whether a run's ``owner`` is a lease id (runs written before leases carry a
    ``host:pid:start`` token instead; see :mod:`redengine_nb.runlog.owner`)."""
    return owner is not None and owner[:1] == "L" and ":" not in owner


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


class RunLogBase(abc.ABC):
    """A store of run records: the one base of every store, with the defaults written once.

    A store implements the abstract methods; the others have defaults built on them that
    a store overrides where it can do better (one transaction for a batch, say).
    """

    #: Human-readable location, used in error messages (a path or ``':memory:'``).
    location: str = ":memory:"

    @property
    def shared(self) -> bool:
        """Whether another scheduler may be writing this store (one was seen: another
        lease, or another connection's commit). Until then the session skips the checks
        that only matter between schedulers."""
        return True

    # -- History -----------------------------------------------------------------------
    @abc.abstractmethod
    def last(self, task: str, action: Action) -> float | None:
        """Time of the newest record of ``action`` for ``task`` (``RUN``: newest start)."""

    def last_of(self, task: str, actions: Iterable[Action]) -> float | None:
        """The newest of ``last(task, a)`` over ``actions``."""
        return newest(self.last, task, actions)

    def last_before(self, task: str, action: Action, until: float) -> float | None:
        """Like :meth:`last`, among the records with a time before ``until`` (used only
        after a backward clock step, to ignore records from the future)."""
        best: float | None = None
        for r in self.records(task=task, action=None if action is Action.RUN else action):
            t = r.start if action is Action.RUN else r.time
            if t is not None and t < until and (best is None or t > best):
                best = t
        return best

    @abc.abstractmethod
    def count(
        self,
        task: str,
        action: Action | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        """How many of ``task``'s records have ``action`` (any, if ``None``) with their
        time in ``[since, until)``."""

    # -- writing -----------------------------------------------------------------------
    @abc.abstractmethod
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

    def start_run(self, task: str, *, created: float, start: float, owner: str) -> RunRecord:
        """Record that a run started (``action=RUN``) and return it with its ``run_id``."""
        return self.start_runs([task], created=created, start=start, owner=owner)[0]

    @abc.abstractmethod
    def claim_starts(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
        recheck: Recheck,
    ) -> list[RunRecord]:
        """Write the starts of ``tasks`` that are still due, in one write transaction.

        If another writer committed since this store last read, the store first drops what
        it cached, then calls ``recheck(tasks)`` (inside the transaction: the history it
        reads is the stored one, and nobody can write meanwhile) and writes only the names
        it returns. With no other writer ``recheck`` is not called. Returns the records
        written, in ``tasks``' order. Raises :class:`LeaseLost` (writing nothing) if the
        lease ``owner`` does not exist any more."""

    @abc.abstractmethod
    def finish_run(
        self,
        run_id: str,
        action: Action,
        *,
        end: float,
        exc_text: str | None = None,
        output: str | None = None,
    ) -> RunRecord:
        """Close a run with its final action. Durable when this returns. ``KeyError`` for
        an unknown run, ``ValueError`` for one already ended."""

    def finish_runs(self, ends: Sequence[RunEnd]) -> list[RunRecord | Exception]:
        """Close many runs. Returns, in order, each run's record or the error that refused
        it alone (an unknown or already ended run). Raises if a shared write failed."""
        out: list[RunRecord | Exception] = []
        for run_id, action, end, exc_text, output in ends:
            try:
                out.append(
                    self.finish_run(run_id, action, end=end, exc_text=exc_text, output=output)
                )
            except (KeyError, ValueError) as exc:
                out.append(exc)
        return out

    def end_runs(self, ends: Sequence[TaskRunEnd]) -> list[Exception | None]:
        """:meth:`finish_runs` when the caller needs no records back (the session's end
        writer). Returns, in order, ``None`` or the error that refused a run alone."""
        done = self.finish_runs([end[1:] for end in ends])
        return [r if isinstance(r, Exception) else None for r in done]

    @abc.abstractmethod
    def log_run(self, record: RunRecord) -> RunRecord:
        """Append a complete record in one write (a run that failed before it started)."""

    def mark_crashed(self, run_ids: Iterable[str], *, end: float) -> int:
        """Turn open runs into ``CRASH`` records (their owner is gone); how many it did."""
        done = 0
        for run_id in run_ids:
            try:
                self.finish_run(run_id, Action.CRASH, end=end)
                done += 1
            except (KeyError, ValueError):
                continue
        return done

    # -- leases ------------------------------------------------------------------------
    @abc.abstractmethod
    def acquire_lease(self, *, now: float, ttl: float, host: str, pid: int, info: str = "") -> str:
        """Insert a new lease, alive until ``now + ttl``; return its (fresh, random) id."""

    @abc.abstractmethod
    def renew_lease(self, lease_id: str, *, now: float, ttl: float) -> bool:
        """Extend the lease to ``now + ttl``; ``False`` if it is gone (reaped): its holder
        must stop writing."""

    @abc.abstractmethod
    def release_lease(self, lease_id: str) -> None:
        """Delete the lease (a clean stop). Its runs, if any were left open, are reaped
        at the next :meth:`reap_expired`."""

    @abc.abstractmethod
    def leases(self, now: float) -> list[LeaseInfo]:
        """Every stored lease, alive or expired, oldest first."""

    @abc.abstractmethod
    def reap_expired(self, *, now: float) -> list[str]:
        """In one write transaction: the open runs whose owner is a lease id that is
        expired or gone become ``crash`` (``end = now``), and expired leases are deleted.
        Returns the ids of the runs crashed. (Runs owned by an old ``host:pid`` token are
        left to :meth:`~redengine_nb.session.Session.mark_crashed_runs`.)"""

    # -- reading -----------------------------------------------------------------------
    @abc.abstractmethod
    def records(
        self,
        task: str | None = None,
        action: Action | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Records, oldest first; with ``limit``, the newest ``limit`` of them."""

    @abc.abstractmethod
    def open_runs(self) -> Sequence[RunRecord]:
        """Records still marked ``RUN``."""

    @abc.abstractmethod
    def task_names(self) -> list[str]:
        """Every task name with at least one record."""

    # -- upkeep ------------------------------------------------------------------------
    @abc.abstractmethod
    def prune(self, *, before: float | None = None, keep: int | None = None) -> int:
        """Delete ended records older than ``before`` (their time) and, per task, all
        but the newest ``keep`` ended ones; open runs are never deleted. Returns how many."""

    def vacuum(self) -> None:
        """Give the space of deleted records back (a no-op where nothing is kept on disk)."""
        return None

    def refresh(self) -> None:
        """See writes made by other processes (cheap when there were none)."""
        return None

    def refresh_if_free(self) -> bool:
        """:meth:`refresh` unless that would wait behind this process's own writer."""
        self.refresh()
        return True

    def fit_cache(self, tasks: int) -> None:
        """Size any cache to hold ``tasks`` tasks' answers (a no-op without a cache)."""
        return None

    def close(self) -> None:
        """Release what the store holds."""
        return None

    def __enter__(self) -> RunLogBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: The name the rest of the package (and users' type hints) use for a store.
RunLog = RunLogBase


def last_of(history: History, task: str, actions: Iterable[Action]) -> float | None:
    """The newest of ``history.last(task, a)`` over ``actions``: one call where the history
    has ``last_of`` (every store has; so has the session's read tracker), else one
    ``last`` per action (:class:`History` itself requires only ``last`` and ``count``)."""
    batch = getattr(history, "last_of", None)
    if batch is not None:
        found: float | None = batch(task, actions)
        return found
    return newest(history.last, task, actions)


def newest(
    last: Callable[[str, Action], float | None], task: str, actions: Iterable[Action]
) -> float | None:
    """The newest of ``last(task, a)`` over ``actions`` (``None`` if none has a record)."""
    best: float | None = None
    for action in actions:
        t = last(task, action)
        if t is not None and (best is None or t > best):
            best = t
    return best


_ACTIONS: dict[str, Action] = {a.value: a for a in Action}


def record_of(row: Sequence[Any], text: Callable[[Any], str | None] | None = None) -> RunRecord:
    """The record of a stored row ``(run_id, task_name, action, created, start, end,
    exc_text, output, owner)``; ``text`` decodes ``exc_text`` and ``output`` where a
    store keeps them as something else (PostgreSQL: UTF-8 bytes)."""
    run_id, task, action, created, start, end, exc_text, output, owner = row
    if text is not None:
        exc_text, output = text(exc_text), text(output)
    return RunRecord(
        str(run_id),
        task,
        _ACTIONS.get(action) or Action(action),
        created,
        start,
        end,
        exc_text,
        output,
        owner,
    )


def start_times(start: float | Sequence[float], tasks: Sequence[str]) -> Sequence[float]:
    """``start_runs``' ``start``, one time per task (``ValueError`` if the counts differ)."""
    if isinstance(start, int | float):
        return [float(start)] * len(tasks)
    if len(start) != len(tasks):
        raise ValueError(f"start_runs: {len(start)} start times for {len(tasks)} tasks")
    return start


def start_runs(
    log: RunLogBase,
    tasks: Sequence[str],
    *,
    created: float,
    start: float | Sequence[float],
    owner: str,
) -> list[RunRecord]:
    """``log.start_runs(...)`` (kept for callers of the function form)."""
    return log.start_runs(tasks, created=created, start=start, owner=owner)


def finish_runs(log: RunLogBase, ends: Sequence[RunEnd]) -> list[RunRecord | Exception]:
    """``log.finish_runs(ends)`` (kept for callers of the function form)."""
    return log.finish_runs(ends)


def end_runs(log: RunLogBase, ends: Sequence[TaskRunEnd]) -> list[Exception | None]:
    """``log.end_runs(ends)`` (kept for callers of the function form)."""
    return log.end_runs(ends)
