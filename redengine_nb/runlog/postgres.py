"""A run log shared by several schedulers on several machines: PostgreSQL, through
SQLAlchemy 2 Core and psycopg 3 (``logs='postgresql+psycopg://user@host/db'``).

The store is one class built in layers, a module each: ``pg_schema`` (the tables, in their
own PostgreSQL schema, and their migrations), ``pg_core`` (the connections, errors and
reconnecting, the events from other schedulers), ``pg_listen`` (the ``LISTEN`` thread),
``pg_writer`` (every write, and run ends held during an outage), ``pg_leases`` (leases and
claims), and this module: the reads and :class:`PostgresRunLog` itself.

Lookups never scan: ``runs`` has the indexes of the SQLite store plus a partial index on
the open runs. The distinct task names are found by a recursive skip scan (one index
probe per name).

Caching and other schedulers. ``last()`` answers are cached per task
(:mod:`~redengine_nb.runlog.lastcache`), as in the SQLite store. Statement triggers on
``runs`` send a ``NOTIFY`` at each committed write that carries the writing connection's
``application_name`` and, per row written, its task, action, time and start. A listener
thread (its own connection, ``LISTEN``) applies the rows written by *others* to the cache
exactly as this process's own writes are applied (answers only move forward), so the
cache stays true without a query, and calls the callbacks given to
:meth:`PostgresRunLog.on_change` -- the session hooks its wake event there, so a run that
ends on one scheduler wakes the others at once. When the listener cannot know what
changed (it was disconnected, a delete), :meth:`~PostgresRunLog.refresh` drops the cache;
it also does so always while the listener is not connected. A notification arrives a
little after its commit: the cache may lag the log by that much, which the claim protocol
(``pg_leases``) makes harmless for starting runs.

Connections: one for reads (autocommit), one for write transactions, one for the
listener. A connection that breaks (server restart, ``pg_terminate_backend``, network)
is made again, with backoff, for up to ``retry_for`` seconds before a call fails with
:class:`~redengine_nb.errors.RunLogError`. Run ends that cannot be written in that time
are kept in memory (and answered from the cache) and written when the server is back:
the outcome of a run that ended during an outage is not lost unless this process dies
before then (its runs then become ``crash`` when its lease expires).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..errors import RunLogError
from ..records import Action, RunRecord
from .base import LeaseInfo, LeaseLost
from .pg_leases import PostgresLeases
from .pg_schema import SCHEMA_VERSION, normalize_url

__all__ = [
    "SCHEMA_VERSION",
    "LeaseInfo",
    "LeaseLost",
    "PostgresRunLog",
    "normalize_url",
]

log = logging.getLogger(__name__)


class PostgresRunLog(PostgresLeases):
    """A :class:`~redengine_nb.runlog.base.RunLog` in a PostgreSQL database.

    ``url``: a SQLAlchemy URL (``postgresql+psycopg://user:pw@host:port/db``).
    ``schema``: the PostgreSQL schema of the tables. ``cache_size``: most ``last()``
    answers kept. ``retry_for``: seconds a call keeps reconnecting after the connection
    broke. ``listen``: run the ``LISTEN`` thread (without it, :meth:`refresh` always
    drops the cache). ``connect_timeout``: seconds to wait for the server at each connect.
    Thread safe.
    """

    # -- History ---------------------------------------------------------------------------
    def count(
        self,
        task: str,
        action: Action | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        r = self._runs.c
        where: list[Any] = [r.task_name == task]
        col = r.time
        if action is not None:
            action = Action.parse(action)
        if action is Action.RUN:
            col = r.start
            where.append(r.start.is_not(None))
        elif action is not None:
            where.append(r.action == action.value)
        elif since is not None or until is not None:
            where.append(r.action.in_([a.value for a in Action]))
        if since is not None:
            where.append(col >= since)
        if until is not None:
            where.append(col < until)
        stmt = sa.select(sa.func.count()).select_from(self._runs).where(*where)
        return int(self._reading("reading", lambda c: c.execute(stmt).scalar_one()))

    # -- reading ---------------------------------------------------------------------------
    def records(
        self,
        task: str | None = None,
        action: Action | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        if limit is not None and limit <= 0:
            return []
        s = f'"{self.schema}"'
        where: list[str] = []
        params: dict[str, Any] = {}
        prefix, source = "", f"{s}.runs AS r"
        if task is not None:
            where.append("r.task_name = :task")
            params["task"] = task
        elif action is not None or since is not None:
            # Per task name, through the (task_name, action, time) index.
            prefix = self._names_cte + " "
            source = f"names JOIN {s}.runs AS r ON r.task_name = names.name"
        if action is not None:
            where.append("r.action = :action")
            params["action"] = Action.parse(action).value
        elif since is not None:
            where.append("r.action = ANY(:actions)")
            params["actions"] = [a.value for a in Action]
        if since is not None:
            where.append("r.time >= :since")
            params["since"] = since
        cols = 'r.run_id, r.task_name, r.action, r.created, r.start, r."end", '
        cols += "r.exc_text, r.output, r.owner"
        sql = f"{prefix}SELECT {cols} FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            sql += " ORDER BY r.created DESC, r.run_id DESC LIMIT :limit"
            params["limit"] = limit
        else:
            sql += " ORDER BY r.created, r.run_id"
        compiled = sa.text(sql)
        rows = list(self._reading("reading", lambda c: c.execute(compiled, params).all()))
        if limit is not None:
            rows.reverse()
        return [self._record(row) for row in rows]

    def open_runs(self) -> Sequence[RunRecord]:
        r = self._runs.c
        stmt = sa.select(*self._cols).where(r.action == "run").order_by(r.run_id)
        rows = self._reading("reading", lambda c: c.execute(stmt).all())
        return [self._record(row) for row in rows]

    def task_names(self) -> list[str]:
        stmt = sa.text(self._names_cte + " SELECT name FROM names WHERE name IS NOT NULL")
        return list(self._reading("reading", lambda c: c.execute(stmt).scalars().all()))

    def refresh(self) -> None:
        """Drop the cache if another scheduler wrote since (or if we cannot know: the
        listener is not connected); write run ends held during an outage."""
        self._flush_pending()
        with self._lock:
            if self._dirty or not self.listening:
                self._dirty = False
                self._clear_cache()

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._wlock, self._lock:
            if self._closed:
                return
            if self._pending:
                try:
                    self._flush_pending()
                except RunLogError:
                    pass
                if self._pending:
                    log.error(
                        "run log %s: %d run end(s) could not be written before closing",
                        self.location,
                        len(self._pending),
                    )
            self._closed = True
            if self._listener is not None:
                self._listener.stop()
            self._drop(True)
            self._drop(False)
            self._cache.clear()
        if self._listener is not None:
            self._listener.join(timeout=2.0)
        self._engine.dispose()

    def __enter__(self) -> PostgresRunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresRunLog({self.location!r})"
