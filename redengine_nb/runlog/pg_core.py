"""The PostgreSQL run log's connections and what every other part of the store stands
on: opening (the tables of ``pg_schema``), the statements it prepares, errors and
reconnecting, the ``last()`` cache's reads, and the events from other schedulers.

Connections: one for reads (autocommit), one for write transactions, one for the
listener (``pg_listen``). A connection that breaks (server restart,
``pg_terminate_backend``, network) is made again, with backoff, for up to ``retry_for``
seconds before a call fails with :class:`~redengine_nb.errors.RunLogError`.

The store is built in layers, each a module: this one, then the writer (``pg_writer``),
the leases and claims (``pg_leases``), and the reads with the public class
(``postgres``: :class:`~redengine_nb.runlog.postgres.PostgresRunLog`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ..errors import RunLogError
from ..records import Action, RunRecord
from .base import record_of
from .lastcache import LastCacheBase
from .pg_listen import Listener
from .pg_schema import (
    DDL_LOCK,
    DEFAULT_SCHEMA,
    SCHEMA_VERSION,
    create_schema,
    migrate,
    normalize_url,
    schema_state,
    tables,
    text_of,
)

__all__ = ["PostgresCore"]

log = logging.getLogger("redengine_nb.runlog.postgres")

T = TypeVar("T")

_ACTIONS: dict[str, Action] = {a.value: a for a in Action}

# SQLSTATE classes/codes after which the call is tried again on a new connection:
# connection exceptions (08...), the server shutting down or starting (57P01..57P03).
_RETRY_STATES = ("57P01", "57P02", "57P03")


class PostgresCore(LastCacheBase):
    """The connections to one PostgreSQL run log and their plumbing; see
    :class:`~redengine_nb.runlog.postgres.PostgresRunLog` for the arguments."""

    def __init__(
        self,
        url: str | sa.engine.URL,
        *,
        schema: str = DEFAULT_SCHEMA,
        cache_size: int = 1024,
        retry_for: float = 10.0,
        listen: bool = True,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(cache_size=cache_size)
        self._url = normalize_url(url) if isinstance(url, str) else url
        self.location: str = self._url.render_as_string(hide_password=True)
        if not schema.isidentifier():
            raise RunLogError(f"schema={schema!r}: a schema name is a plain identifier")
        self.schema = schema
        self.retry_for = float(retry_for)
        self.store_id = uuid.uuid4().hex[:16]
        self._app_name = f"redengine_nb:{self.store_id}"
        md, self._runs, self._tasks, self._leases, self._meta = tables(schema)
        self._md = md
        self._engine = sa.create_engine(
            self._url,
            poolclass=sa.pool.NullPool,
            connect_args={
                "application_name": self._app_name,
                "connect_timeout": max(1, int(connect_timeout)),
            },
        )
        self._wlock = threading.RLock()  # the write connection
        self._read: sa.Connection | None = None
        self._write: sa.Connection | None = None
        self._stamps: dict[str, int] = {}  # tasks row stamps as our last claim left them
        self._pending: list[tuple[str, str, Action, float, str | None, str | None]] = []
        self._dirty = True
        self._callbacks: list[Callable[[], None]] = []
        self._listener: Listener | None = None
        self._closed = False
        self._build_statements()
        try:
            try:
                self._read = self._connect(autocommit=True)
            except sa_exc.DBAPIError as exc:
                raise self._error("opening", exc) from exc
            self._prepare()
        except BaseException:
            self._engine.dispose()
            raise
        if listen:
            dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = Listener(dsn, schema, self._app_name, self._changed)
            self._listener.start()

    # -- statements ----------------------------------------------------------------------
    def _build_statements(self) -> None:
        r = self._runs.c
        self._cols = [
            r.run_id,
            r.task_name,
            r.action,
            r.created,
            r.start,
            r.end,
            r.exc_text,
            r.output,
            r.owner,
        ]
        task: Any = sa.bindparam("task")
        action: Any = sa.bindparam("action")
        self._q_last_run = (
            sa.select(r.start)
            .where(r.task_name == task, r.start.is_not(None))
            .order_by(r.start.desc())
            .limit(1)
        )
        self._q_last = (
            sa.select(r.time)
            .where(r.task_name == task, r.action == action)
            .order_by(r.time.desc())
            .limit(1)
        )
        s = f'"{self.schema}"'
        self._names_cte = (
            "WITH RECURSIVE names(name) AS ("
            f" SELECT MIN(task_name) FROM {s}.runs"
            " UNION ALL"
            f" SELECT (SELECT MIN(task_name) FROM {s}.runs WHERE task_name > names.name)"
            " FROM names WHERE names.name IS NOT NULL)"
        )
        self._q_pairs = sa.text(
            self._names_cte + ", pairs(name, action) AS ("
            f" SELECT name, (SELECT MIN(action) FROM {s}.runs WHERE task_name = names.name)"
            " FROM names WHERE names.name IS NOT NULL"
            " UNION ALL"
            f" SELECT name, (SELECT MIN(action) FROM {s}.runs"
            " WHERE task_name = pairs.name AND action > pairs.action)"
            " FROM pairs WHERE pairs.action IS NOT NULL)"
            " SELECT name, action FROM pairs WHERE action IS NOT NULL"
        )
        self._q_insert_starts = sa.text(
            f"INSERT INTO {s}.runs (task_name, action, created, start, owner) "
            "SELECT v.task, 'run', :created, v.start, :owner FROM unnest("
            "CAST(:tasks AS text[]), CAST(:starts AS float8[])) WITH ORDINALITY "
            "AS v(task, start, i) ORDER BY v.i RETURNING run_id, task_name, start"
        )

    # -- opening ---------------------------------------------------------------------------
    def _connect(self, *, autocommit: bool) -> sa.Connection:
        conn = self._engine.connect()
        if autocommit:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def _prepare(self) -> None:
        """Check the schema (ours, or absent), create or migrate it."""
        assert self._read is not None
        try:
            found = schema_state(self._read, self.schema, self._meta, self.location)
            if found == SCHEMA_VERSION:
                return
            with self._engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": DDL_LOCK})
                found = schema_state(
                    conn, self.schema, self._meta, self.location
                )  # another process may have just done it
                if found is None:
                    create_schema(conn, self.schema, self._md, self._meta)
                elif found < SCHEMA_VERSION:
                    migrate(conn, self._meta, found)
        except sa_exc.DBAPIError as exc:
            raise self._error("opening", exc) from exc

    # -- errors and reconnecting -----------------------------------------------------------
    @staticmethod
    def _sqlstate(exc: BaseException) -> str | None:
        orig = getattr(exc, "orig", None)
        state = getattr(orig, "sqlstate", None)
        return state if isinstance(state, str) else None

    def _is_disconnect(self, exc: sa_exc.DBAPIError) -> bool:
        if exc.connection_invalidated:
            return True
        state = self._sqlstate(exc)
        if state is None:
            return isinstance(exc, sa_exc.OperationalError)
        return state.startswith("08") or state in _RETRY_STATES

    def _error(self, doing: str, exc: BaseException) -> RunLogError:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        first = text[0] if text else type(exc).__name__
        state = self._sqlstate(exc) or ""
        url = self._url
        if state == "42501" or "permission denied" in first:
            hint = (
                f"the role {url.username!r} lacks a right it needs. Grant it, e.g. "
                f"GRANT USAGE, CREATE ON SCHEMA {self.schema} TO {url.username}; GRANT "
                f"SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {self.schema} "
                f"TO {url.username} (and CREATE ON DATABASE {url.database} for a new log)."
            )
        elif state == "3D000" or ("database" in first and "does not exist" in first):
            hint = f"create the database first (createdb {url.database}) or fix the URL."
        elif state.startswith("28") or "authentication" in first or "role" in first:
            hint = "check the user name and password in the URL (or .pgpass)."
        elif state == "22021" or "0x00" in first:
            hint = "PostgreSQL text cannot hold a NUL character (in a task name)."
        elif isinstance(exc, sa_exc.OperationalError) or state.startswith(("08", "57P")):
            hint = (
                f"the server at {url.host or 'localhost'}:{url.port or 5432} is not "
                "reachable (is PostgreSQL running, and the host/port right?)"
            )
        else:
            hint = "see the server's message."
        return RunLogError(f"run log {self.location!r}: {doing} failed: {first}; {hint}")

    def _call(self, doing: str, fn: Callable[[sa.Connection], T], *, write: bool) -> T:
        """``fn(connection)`` on the read or write connection (connecting as needed); a
        broken connection is made again, with backoff, for up to ``retry_for`` seconds.
        Other database errors become :class:`RunLogError` at once. The caller holds the
        lock of that connection."""
        if self._closed:
            raise RunLogError(f"run log {self.location!r}: {doing} failed: it was closed")
        delay = 0.05
        deadline: float | None = None
        while True:
            conn = self._write if write else self._read
            try:
                if conn is None:
                    conn = self._connect(autocommit=not write)
                    if write:
                        self._write = conn
                    else:
                        self._read = conn
                if write:
                    with conn.begin():
                        return fn(conn)
                return fn(conn)
            except sa_exc.DBAPIError as exc:
                if not self._is_disconnect(exc):
                    raise self._error(doing, exc) from exc
                self._drop(write)
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.retry_for
                if now + delay > deadline:
                    raise self._error(doing, exc) from exc
                log.warning(
                    "run log %s: %s: connection lost (%s); trying again in %.2f s",
                    self.location,
                    doing,
                    str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                # Others may have written meanwhile: the next refresh() drops the cache
                # (kept until then: it answers during an outage).
                self._dirty = True

    def _drop(self, write: bool) -> None:
        conn = self._write if write else self._read
        if write:
            self._write = None
        else:
            self._read = None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                pass  # it is broken already

    def _reading(self, doing: str, fn: Callable[[sa.Connection], T]) -> T:
        with self._lock:
            return self._call(doing, fn, write=False)

    def _writing(self, doing: str, fn: Callable[[sa.Connection], T]) -> T:
        """One write transaction, under the read lock too: a cache miss read concurrently
        cannot then store an answer older than this write (the caller notes the write in
        the cache once this returns)."""
        with self._wlock, self._lock:
            return self._call(doing, fn, write=True)

    # -- the last() cache's reads -----------------------------------------------------------
    def _read_pairs(self) -> Iterable[tuple[str, str]]:
        return self._call("reading", lambda c: c.execute(self._q_pairs).all(), write=False)

    def _read_last(self, task: str, action: Action) -> float | None:
        if action is Action.RUN:
            stmt, params = self._q_last_run, {"task": task}
        else:
            stmt, params = self._q_last, {"task": task, "action": action.value}
        value = self._call("reading", lambda c: c.execute(stmt, params).scalar(), write=False)
        return None if value is None else float(value)

    # -- rows --------------------------------------------------------------------------------
    def _record(self, row: Sequence[Any]) -> RunRecord:
        return record_of(row, text_of)

    # -- events between schedulers -------------------------------------------------------
    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from the listener thread) whenever another connection
        commits a write to ``runs``; returns a function that removes it."""
        self._callbacks.append(callback)

        def remove() -> None:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                pass

        return remove

    @property
    def listening(self) -> bool:
        """Whether the listener is connected (``LISTEN`` active)."""
        return self._listener is not None and self._listener.listening

    def _changed(self, payload: str | None) -> None:
        """Another connection wrote (``payload``: a notification of ``notify_rows``), or
        we may have missed writes (``None``): keep the cache true, call the callbacks."""
        if payload is not None:
            sender, _, body = payload.partition("\n")
            if sender == self._app_name:
                return  # our own write, noted already
            if body and body != "*":
                try:
                    rows = [json.loads(line) for line in body.split("\n")]
                except ValueError:
                    rows = None
                if rows is not None:
                    with self._lock:
                        for task, action, when, start in rows:
                            act = _ACTIONS.get(action)
                            if act is None:
                                continue
                            self._note(task, Action.RUN, start)
                            if act is not Action.RUN:
                                self._note(task, act, when)
                    payload = ""
        if payload is None or payload:
            self._dirty = True  # unknown change: refresh() drops the cache
        for callback in list(self._callbacks):
            try:
                callback()
            except Exception:
                log.exception("run log change callback %r failed", callback)
