"""The SQLite run log's writer: group commit, and every write the store makes.

Group commit. A commit is the costly part of a write, so writes from concurrent threads
share one: :meth:`~SQLiteWriter.start_run`, :meth:`~SQLiteWriter.finish_run` and
:meth:`~SQLiteWriter.log_run` queue their write, and whichever caller gets the connection
first writes everything queued so far in one transaction and commits it; each caller
returns only once the transaction holding its own write has committed (or raises if it
did not). A write that is refused on its own (an unknown or already ended run) fails only
its caller. :meth:`~SQLiteWriter.start_runs` writes a whole batch of starts (what one
scheduler step launches) in one transaction, :meth:`~SQLiteWriter.end_runs` a batch of
ends in one statement.

Every write notes what it wrote in the ``last()`` cache (and the counts); a write that
fails empties them, as it may have noted what is not written.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import RunLogError
from ..records import Action, RunRecord
from .base import RunLogLost, record_of, start_times
from .sqlite_core import SQLiteCore
from .sqlite_schema import COLUMNS, TIME, run_id_key

__all__ = ["SQLiteWriter"]

T = TypeVar("T")


class _Queued:
    """One write waiting for a group commit: ``op`` runs inside the shared transaction."""

    __slots__ = ("doing", "done", "error", "lead", "op", "result", "signal")

    def __init__(self, doing: str, op: Callable[[sqlite3.Connection], Any]) -> None:
        self.doing = doing
        self.op = op
        self.done = False
        self.lead = False  # handed the leader's role: commit what is queued
        self.result: Any = None
        self.error: BaseException | None = None
        # Held until the item is done or made leader; its waiter blocks acquiring it.
        self.signal = threading.Lock()
        self.signal.acquire()


def _raiser(exc: Exception) -> Callable[[sqlite3.Connection], Any]:
    def op(conn: sqlite3.Connection) -> Any:
        raise exc

    return op


class SQLiteWriter(SQLiteCore):
    """The writes of :class:`~redengine_nb.runlog.sqlite.SQLiteRunLog`."""

    # -- transactions ----------------------------------------------------------------
    @contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken with the write lock at once, so that concurrent
        writers wait in SQLite's busy handler rather than fail on a snapshot upgrade).
        The body may note its write in the cache: a failed commit empties the cache."""
        with self._lock, self._guard(doing):
            if self._lost is not None:
                raise RunLogLost(self._lost)
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
                self._committed()
                self._check_identity()
            except BaseException:
                # The body may have updated the cache for a write that is not made.
                self._cache.clear()
                self._counts.clear()
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the original error says more
                raise

    def _group_write(self, doing: str, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` in a write transaction shared with concurrent callers; return its
        result once that transaction has committed.

        ``op`` makes at most one change, with its last statement, so that an ``op`` that
        raises (e.g. ``KeyError`` for an unknown run) has changed nothing and fails alone.
        It may note its write in the cache: a failed commit empties the cache.

        One caller at a time leads: it takes the connection and commits everything queued
        so far. The others wait on their own item (not on the connection lock, where a
        convoy of already-committed writers would make every other user of the connection,
        the scheduler's reads and start batches, wait behind them); when a leader is done
        and more is queued, it hands the role to the oldest waiter.
        """
        item = _Queued(doing, op)
        with self._queue_lock:
            self._queue.append(item)
            if self._leading and not self._lock._is_owned():  # type: ignore[attr-defined]
                lead = False
            else:
                lead = self._leading = True
        if not lead:
            item.signal.acquire()  # released when done, or when made leader
        if not item.done:
            self._lead()
        if item.error is not None:
            raise item.error
        result: T = item.result
        return result

    def _lead(self) -> None:
        """Commit what is queued, then wake its writers and pass the lead on."""
        batch: list[_Queued] = []
        try:
            with self._lock:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit_group(batch)
        finally:
            for done in batch:
                done.done = True
                if not done.lead:  # a promoted item's signal was released already
                    done.signal.release()
            with self._queue_lock:
                if self._queue:
                    nxt = self._queue[0]
                    if not nxt.lead:
                        nxt.lead = True
                        nxt.signal.release()
                else:
                    self._leading = False

    def _commit_group(self, batch: list[_Queued]) -> None:
        """Write ``batch`` in one transaction (the caller holds ``self._lock``)."""
        conn = self._conn
        try:
            try:
                if self._lost is not None:
                    raise RunLogLost(self._lost)
                conn.execute("BEGIN IMMEDIATE")
                for item in batch:
                    try:
                        item.result = item.op(conn)
                    except Exception as exc:
                        if not self._in_tx():
                            raise  # the transaction is gone: nothing of it is written
                        item.error = exc  # refused alone; it changed nothing
                conn.execute("COMMIT")
                self._committed()
                self._check_identity()
            except BaseException as exc:
                self._cache.clear()
                self._counts.clear()
                if self._in_tx():
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the original error says more
                for item in batch:
                    item.result = None
                    if isinstance(exc, RunLogError):
                        item.error = exc
                    elif isinstance(exc, sqlite3.Error):
                        item.error = self._error(item.doing, exc)
                    elif isinstance(exc, Exception):
                        item.error = RunLogError(
                            f"run log {self.location!r}: {item.doing} failed: "
                            f"{type(exc).__name__}: {exc}"
                        )
                    else:  # interrupted (KeyboardInterrupt): the others were not written
                        item.error = RunLogError(
                            f"run log {self.location!r}: {item.doing} failed: the shared "
                            f"write was interrupted ({type(exc).__name__})"
                        )
                if not isinstance(exc, Exception):
                    raise
        finally:
            for item in batch:
                item.done = True

    # -- writing ---------------------------------------------------------------------
    def start_run(self, task: str, *, created: float, start: float, owner: str) -> RunRecord:
        def op(conn: sqlite3.Connection) -> RunRecord:
            return self._insert_start(conn, task, created, start, owner)

        return self._group_write(f"recording the start of {task!r}", op)

    def start_runs(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
    ) -> list[RunRecord]:
        """Record one started run per name in ``tasks``, all in one transaction (``start``:
        one time for all, or one per task)."""
        if not tasks:
            return []
        starts = start_times(start, tasks)
        doing = f"recording the start of {len(tasks)} run(s) ({tasks[0]!r}, ...)"
        with self._write(doing) as conn:
            return self._insert_starts(conn, list(zip(tasks, starts, strict=True)), created, owner)

    def _insert_starts(
        self,
        conn: sqlite3.Connection,
        pairs: Sequence[tuple[str, float]],
        created: float,
        owner: str,
    ) -> list[RunRecord]:
        # One statement for the batch: the ids are ours to give, as this transaction
        # holds the write lock (no other writer can take the next ones meanwhile).
        first = int(conn.execute("SELECT COALESCE(MAX(run_id), 0) + 1 FROM runs").fetchone()[0])
        conn.executemany(
            "INSERT INTO runs (run_id, task_name, action, created, start, owner) "
            "VALUES (?, ?, 'run', ?, ?, ?)",
            [(first + i, task, created, at, owner) for i, (task, at) in enumerate(pairs)],
        )
        note = self._cache_note
        for task, at in pairs:
            note(task, Action.RUN, at)
        run = Action.RUN
        return [
            RunRecord(str(first + i), task, run, created, at, owner=owner)
            for i, (task, at) in enumerate(pairs)
        ]

    def _insert_start(
        self, conn: sqlite3.Connection, task: str, created: float, start: float, owner: str
    ) -> RunRecord:
        cur = conn.execute(
            "INSERT INTO runs (task_name, action, created, start, owner) "
            "VALUES (?, 'run', ?, ?, ?)",
            (task, created, start, owner),
        )
        self._cache_note(task, Action.RUN, start)
        return RunRecord(str(cur.lastrowid), task, Action.RUN, created, start, owner=owner)

    def finish_run(
        self,
        run_id: str,
        action: Action,
        *,
        end: float,
        exc_text: str | None = None,
        output: str | None = None,
    ) -> RunRecord:
        op = self._finish_op(run_id, action, end, exc_text, output)
        return self._group_write(f"recording the end of run {run_id}", op)

    def finish_runs(
        self, ends: Sequence[tuple[str, Action, float, str | None, str | None]]
    ) -> list[RunRecord | Exception]:
        """Close many runs in one transaction: ``ends`` holds ``(run_id, action, end,
        exc_text, output)`` tuples. Returns, in order, each run's record or the error that
        refused it alone (an unknown or already ended run); all accepted ones are durable
        when this returns. Raises :class:`RunLogError` if the transaction failed (then
        none of them is written)."""
        items = []
        for run_id, action, end, exc_text, output in ends:
            try:
                op = self._finish_op(run_id, action, end, exc_text, output)
            except Exception as exc:  # refused alone, reported in order
                op = _raiser(exc)
            items.append(_Queued(f"recording the end of run {run_id}", op))
        if not items:
            return []
        with self._lock:
            self._commit_group(items)
        out: list[RunRecord | Exception] = []
        for item in items:
            error = item.error
            if error is not None:
                if isinstance(error, RunLogError) or not isinstance(error, Exception):
                    raise error  # the transaction failed: nothing was written
                out.append(error)
            else:
                out.append(item.result)
        return out

    def end_runs(
        self, ends: Sequence[tuple[str, str, Action, float, str | None, str | None]]
    ) -> list[Exception | None]:
        """:meth:`finish_runs` without the records: ``ends`` holds ``(task, run_id,
        action, end, exc_text, output)``. One statement closes the batch; only if one of
        them is refused (unknown or already ended) is the batch done again one by one, to
        say which. Returns ``None`` or that error per run, in order."""
        if not ends:
            return []
        rows: list[tuple[str, float, str | None, str | None, int]] = []
        try:
            for _task, run_id, action, end, exc_text, output in ends:
                rows.append((Action.final(action).value, end, exc_text, output, run_id_key(run_id)))
        except (KeyError, ValueError):
            rows = []  # a bad id or action: the one-by-one path names it
        with self._lock:
            if rows and self._end_all(rows):
                for task, _id, action, end, _exc, _out in ends:
                    self._cache_note(task, Action.parse(action), end)
                return [None] * len(ends)
        done = self.finish_runs([end[1:] for end in ends])
        return [r if isinstance(r, Exception) else None for r in done]

    def _end_all(self, rows: list[tuple[str, float, str | None, str | None, int]]) -> bool:
        """Close every run of ``rows`` in one transaction, or none (False) if any of them
        is not open (the caller holds ``self._lock``)."""
        conn = self._conn
        with self._guard(f"recording the end of {len(rows)} run(s)"):
            if self._lost is not None:
                raise RunLogLost(self._lost)
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(
                    'UPDATE runs SET action = ?, "end" = ?, exc_text = ?, output = ? '
                    "WHERE run_id = ? AND action = 'run'",
                    rows,
                )
                if conn.total_changes - before != len(rows):
                    conn.execute("ROLLBACK")
                    return False
                conn.execute("COMMIT")
                self._committed()
                self._check_identity()
                return True
            except BaseException:
                if self._in_tx():
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the original error says more
                raise

    def _finish_op(
        self,
        run_id: str,
        action: Action,
        end: float,
        exc_text: str | None,
        output: str | None,
    ) -> Callable[[sqlite3.Connection], RunRecord]:
        action = Action.final(action)
        key = run_id_key(run_id)

        def op(conn: sqlite3.Connection) -> RunRecord:
            row = conn.execute(
                f'UPDATE runs SET action = ?, "end" = ?, exc_text = ?, output = ? '
                f"WHERE run_id = ? AND action = 'run' RETURNING {COLUMNS}",
                (action.value, end, exc_text, output, key),
            ).fetchone()
            if row is None:
                found = conn.execute(
                    "SELECT task_name, action FROM runs WHERE run_id = ?", (key,)
                ).fetchone()
                if found is None:
                    raise KeyError(run_id)
                raise ValueError(f"run {run_id} of {found[0]!r} already ended ({found[1]})")
            record = record_of(row)
            self._cache_note(record.task_name, action, record.time)
            return record

        return op

    def log_run(self, record: RunRecord) -> RunRecord:
        """Append ``record``; it keeps its ``run_id`` if that is a free integer, else gets
        a new one (set on the record, which is returned)."""
        wanted: int | None = None
        if record.run_id and record.run_id.isdigit():
            wanted = int(record.run_id)

        def op(conn: sqlite3.Connection) -> RunRecord:
            key = wanted
            if (
                key is not None
                and conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (key,)).fetchone()
            ):
                key = None
            cur = conn.execute(
                f"INSERT INTO runs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    record.task_name,
                    record.action.value,
                    record.created,
                    record.start,
                    record.end,
                    record.exc_text,
                    record.output,
                    record.owner,
                ),
            )
            record.run_id = str(cur.lastrowid)
            self._cache_note(record.task_name, Action.RUN, record.start)
            if record.action is not Action.RUN:
                self._cache_note(record.task_name, record.action, record.time)
            return record

        return self._group_write(f"recording a run of {record.task_name!r}", op)

    def mark_crashed(self, run_ids: Iterable[str], *, end: float) -> int:
        keys = []
        for run_id in run_ids:
            try:
                keys.append(run_id_key(run_id))
            except KeyError:
                continue
        if not keys:
            return 0
        tasks: list[str] = []
        with self._write("marking crashed runs") as conn:
            for key in keys:
                row = conn.execute(
                    "UPDATE runs SET action = 'crash', \"end\" = ? "
                    "WHERE run_id = ? AND action = 'run' RETURNING task_name",
                    (end, key),
                ).fetchone()
                if row is not None:
                    tasks.append(row[0])
            for task in set(tasks):
                self._cache_note(task, Action.CRASH, end)
        return len(tasks)

    # -- upkeep ----------------------------------------------------------------------
    def prune(self, *, before: float | None = None, keep: int | None = None) -> int:
        """Delete ended records older than ``before`` and, per task, all but the newest
        ``keep`` ended ones (one transaction; one indexed statement per task)."""
        if before is None and keep is None:
            return 0
        deleted = 0
        with self._write("deleting old records (log_retention)") as conn:
            for name in self.task_names():
                if before is not None:
                    deleted += conn.execute(
                        f"DELETE FROM runs WHERE task_name = ? AND action <> 'run' AND {TIME} < ?",
                        (name, before),
                    ).rowcount
                if keep is not None:
                    deleted += conn.execute(
                        "DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs "
                        "WHERE task_name = ? AND action <> 'run' "
                        "ORDER BY created DESC, run_id DESC LIMIT -1 OFFSET ?)",
                        (name, keep),
                    ).rowcount
            if deleted:
                # An answer of last() may have been a deleted record: look again.
                self._cache.clear()
                self._present = None
                self._counts.clear()
        return deleted

    def vacuum(self) -> None:
        """Rebuild the file without the space of deleted records (takes the write lock
        for as long as it copies the file)."""
        with self._lock, self._guard("vacuuming"):
            if self._lost is not None:
                raise RunLogLost(self._lost)
            self._conn.execute("VACUUM")
            self._check_identity()
