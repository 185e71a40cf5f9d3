"""The default run log: one SQLite file (stdlib :mod:`sqlite3`), shared safely by processes.

One row per run in the table ``runs``: ``action`` is ``'run'`` while the run lives and is
updated to its final action when it ends. Times are epoch seconds (``REAL``).

Durability. The file uses the WAL journal with ``synchronous=NORMAL``: a write is durable
when its call returns as far as a crash of *the process* (or the kernel being killed) is
concerned. A power loss or an operating-system crash may lose the last few commits (the
database stays consistent). Several processes may write at once; each waits up to
``busy_timeout`` seconds for another's write lock, and a write that cannot be made raises
:class:`~redengine_nb.errors.RunLogError` -- it is never silently dropped.

The store is one class built in layers, a module each: ``sqlite_schema`` (the file: its
schema, checks, migrations), ``sqlite_core`` (the connection, errors, the file's identity,
seeing others' writes), ``sqlite_writer`` (group commit and every write),
``sqlite_leases`` (leases and claims), ``sqlite_watch`` (noticing other schedulers'
writes), and this module: the reads and
:class:`SQLiteRunLog` itself.

Lookups never scan the table. The indexes (see ``sqlite_schema``) are few, as each costs
every write; only one of them holds the columns a run's end changes:

- ``(task_name, start)`` -- ``last(task, RUN)`` (newest start), ``count(task, RUN, ...)``
  (runs started in a span, whether they have ended since or not), ``count(task)`` and the
  distinct task names (a skip scan, one probe per name);
- ``(task_name, action, <time>)`` -- ``last`` / ``count`` of a final action, where
  ``<time>`` is the record's time (its end once it has ended, else its start); with
  ``action IN (<every action>)`` also a span of any action (``count(task, None, ...)``,
  ``records(since=...)``); and, per distinct task name, ``records(action=...)`` and
  ``open_runs()`` (the rows whose action is still ``'run'``);
- ``(task_name, created)`` and ``(created)`` -- ``records(...)`` in order, newest first
  with a limit.

``last()`` is answered from the cache of :mod:`~redengine_nb.runlog.lastcache`, kept up
to date by this process's own writes and emptied by :meth:`SQLiteRunLog.refresh` (and by
the watcher of :meth:`~SQLiteRunLog.on_change`, ``sqlite_watch``) when ``PRAGMA
data_version`` says another connection has written. Beside it, per task, the
count of runs and of fails (what ``status()`` asks for every task), kept the same way.
Nothing else is cached, so memory stays bounded however many runs the file holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..records import Action, RunRecord
from .base import RunLogLost, record_of
from .sqlite_leases import SQLiteLeases
from .sqlite_schema import (
    ANY_ACTION,
    APPLICATION_ID,
    COLUMNS,
    NAMES,
    SCHEMA_VERSION,
    TIME,
    Row,
)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "RunLogLost", "SQLiteRunLog"]


class SQLiteRunLog(SQLiteLeases):
    """A :class:`~redengine_nb.runlog.base.RunLogBase` in a SQLite file (or ``':memory:'``).

    ``busy_timeout``: seconds to wait for another process's lock before a call fails with
    :class:`RunLogError`. ``cache_size``: most ``last()`` answers kept (``0``: no cache).
    ``readonly``: open an existing file for reading only (``status``/``log`` on a file
    they may not write); every write then raises. ``watch_interval``: seconds between two
    looks for other schedulers' writes where inotify is not available (see
    :meth:`on_change`). Thread safe: one connection, guarded by a lock.

    A new file is created with mode 0600 (task output can hold secrets; SQLite gives its
    ``-wal`` and ``-shm`` files the same mode). The file's identity (device, inode) is
    kept at open and checked after every commit: a file deleted or replaced while open
    raises :class:`RunLogLost` at the first write after it, and on every write after that.
    """

    # -- History ---------------------------------------------------------------------
    def last_before(self, task: str, action: Action, until: float) -> float | None:
        action = Action.parse(action)
        if action is Action.RUN:
            sql = (
                "SELECT start FROM runs WHERE task_name = ? AND start IS NOT NULL "
                "AND start < ? ORDER BY start DESC LIMIT 1"
            )
            params: tuple[Any, ...] = (task, until)
        else:
            sql = (
                f"SELECT {TIME} FROM runs WHERE task_name = ? AND action = ? "
                f"AND {TIME} < ? ORDER BY {TIME} DESC LIMIT 1"
            )
            params = (task, action.value, until)
        with self._lock, self._guard("reading"):
            value = self._scalar(sql, params)
        return None if value is None else float(value)

    def count(
        self,
        task: str,
        action: Action | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        params: list[Any] = [task]
        if action is not None:
            action = Action.parse(action)
        if since is None and until is None and (action is Action.RUN or action is Action.FAIL):
            return self._total(task, action)
        if action is Action.RUN:
            sql = "SELECT COUNT(*) FROM runs WHERE task_name = ? AND start IS NOT NULL"
            col = "start"
        elif action is None:
            sql, col = "SELECT COUNT(*) FROM runs WHERE task_name = ?", TIME
            if since is not None or until is not None:
                sql += f" AND {ANY_ACTION}"
        else:
            sql = "SELECT COUNT(*) FROM runs WHERE task_name = ? AND action = ?"
            col = TIME
            params.append(action.value)
        if since is not None:
            sql += f" AND {col} >= ?"
            params.append(since)
        if until is not None:
            sql += f" AND {col} < ?"
            params.append(until)
        with self._lock, self._guard("reading"):
            return int(self._scalar(sql, params))

    def _total(self, task: str, action: Action) -> int:
        """All of ``task``'s runs (``RUN``) or fails, counted once, then kept."""
        slot = 0 if action is Action.RUN else 1
        with self._lock, self._guard("reading"):
            counts = self._counts.get(task)
            if counts is None:
                counts = self._counts[task] = [None, None]
            value = counts[slot]
            if value is None:
                if action is Action.RUN:
                    sql = "SELECT COUNT(*) FROM runs WHERE task_name = ? AND start IS NOT NULL"
                    value = counts[slot] = int(self._scalar(sql, (task,)))
                else:
                    sql = "SELECT COUNT(*) FROM runs WHERE task_name = ? AND action = ?"
                    value = counts[slot] = int(self._scalar(sql, (task, action.value)))
            return value

    # -- reading ---------------------------------------------------------------------
    def records(
        self,
        task: str | None = None,
        action: Action | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        if limit is not None and limit <= 0:
            return []
        if task is None and (action is not None or since is not None):
            # Per task name, each through the (task_name, action, <time>) index, merged
            # here. Not one ``names JOIN runs`` query: with the statistics ``PRAGMA
            # optimize`` writes, SQLite 3.40 plans that join with a Bloom filter on the
            # expression index and returns no rows (docs/reliability.md, item 4).
            with self._lock:
                names = self.task_names()
                rows: list[Row] = []
                for name in names:
                    rows += self._record_rows(name, action, since, limit)
            rows.sort(key=lambda row: (row[3], row[0]))
            if limit is not None:
                rows = rows[-limit:]
            return [record_of(row) for row in rows]
        with self._lock:
            rows = self._record_rows(task, action, since, limit)
        if limit is not None:
            rows.reverse()
        return [record_of(row) for row in rows]

    def _record_rows(
        self, task: str | None, action: Action | None, since: float | None, limit: int | None
    ) -> list[Row]:
        """The rows of one task (or, with neither ``action`` nor ``since``, of all), oldest
        first; with ``limit``, the newest ``limit`` newest first."""
        where: list[str] = []
        params: list[Any] = []
        if task is not None:
            where.append("task_name = ?")
            params.append(task)
        if action is not None:
            where.append("action = ?")
            params.append(Action.parse(action).value)
        elif since is not None:
            where.append(ANY_ACTION)
        if since is not None:
            where.append(f"{TIME} >= ?")
            params.append(since)
        sql = f"SELECT {COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # ``+created`` keeps the planner from walking the ``created`` index (a scan) to
        # avoid a sort: the rows are found by index and then sorted.
        order = "+created" if (since is not None or action is not None) else "created"
        if limit is not None:
            sql += f" ORDER BY {order} DESC, run_id DESC LIMIT ?"
            params.append(limit)
        else:
            sql += f" ORDER BY {order}, run_id"
        with self._lock, self._guard("reading"):
            return self._conn.execute(sql, params).fetchall()

    def open_runs(self) -> Sequence[RunRecord]:
        # One index probe per task name (see records() for why not one join).
        rows: list[Row] = []
        with self._lock, self._guard("reading"):
            for name in self.task_names():
                rows += self._conn.execute(
                    f"SELECT {COLUMNS} FROM runs WHERE task_name = ? AND action = 'run'",
                    (name,),
                ).fetchall()
        rows.sort(key=lambda row: row[0])
        return [record_of(row) for row in rows]

    def task_names(self) -> list[str]:
        # A skip scan over the (task_name, start) index: one probe per distinct name.
        sql = NAMES + " SELECT name FROM names WHERE name IS NOT NULL"
        with self._lock, self._guard("reading"):
            return [row[0] for row in self._conn.execute(sql)]

    def __enter__(self) -> SQLiteRunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteRunLog({self.location!r})"
