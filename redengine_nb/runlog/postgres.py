"""A run log shared by several schedulers on several machines: PostgreSQL, through
SQLAlchemy 2 Core and psycopg 3 (``logs='postgresql+psycopg://user@host/db'``).

Tables, in their own schema (``redengine_nb`` unless told otherwise, so that they never
meet a user's tables):

- ``runs`` -- one row per run, as in the SQLite store; ``time`` is a stored generated
  column (the end once ended, else the start) so that its index is used by plain
  ``time >= ...`` lookups. ``exc_text`` and ``output`` are ``bytea`` (UTF-8): PostgreSQL
  ``text`` cannot hold a NUL character, and a task's output may;
- ``tasks`` -- one row per task that was ever claimed: the row a claim locks, and a
  ``stamp`` bumped by every claim, so that a scheduler knows whether anyone else started
  the task since it last did (then it re-checks the condition, see :meth:`claim_starts`);
- ``leases`` -- one row per live scheduler (see ``docs/scale-out.md``);
- ``meta`` -- the schema version; an older schema of ours is migrated when opened, a
  newer one refused, a schema of the same name that is not ours refused untouched.

Lookups never scan: ``runs`` has the indexes of the SQLite store (``(task_name, start)``,
``(task_name, action, time)``, ``(task_name, created)``, ``(created)``) plus a partial
index on the open runs (``WHERE action = 'run'``) for ``open_runs()`` and reaping. The
distinct task names are found by a recursive skip scan (one index probe per name).

Caching and other schedulers. ``last()`` answers are cached per task as in the SQLite
store. Statement triggers on ``runs`` send a ``NOTIFY`` at each committed write that
carries the writing connection's ``application_name`` and, per row written, its task,
action, time and start. A listener thread (its own connection, ``LISTEN``) applies the
rows written by *others* to the cache exactly as this process's own writes are applied
(answers only move forward), so the cache stays true without a query, and calls the
callbacks given to :meth:`PostgresRunLog.on_change` -- the session hooks its wake event
there, so a run that ends on one scheduler wakes the others at once. When the listener
cannot know what changed (it was disconnected, a delete), :meth:`refresh` drops the
cache; it also does so always while the listener is not connected. A notification
arrives a little after its commit: the cache may lag the log by that much, which the
claim protocol (below) makes harmless for starting runs.

Connections: one for reads (autocommit), one for write transactions, one for the
listener. A connection that breaks (server restart, ``pg_terminate_backend``, network)
is made again, with backoff, for up to ``retry_for`` seconds before a call fails with
:class:`~redengine_nb.errors.RunLogError`. Run ends that cannot be written in that time
are kept in memory (and answered from the cache) and written when the server is back:
the outcome of a run that ended during an outage is not lost unless this process dies
before then (its runs then become ``crash`` when its lease expires).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg

from ..errors import RunLogError
from ..records import Action, RunRecord
from .base import LeaseInfo, LeaseLost, RunLogBase, new_lease_id, start_times

__all__ = [
    "SCHEMA_VERSION",
    "LeaseInfo",
    "LeaseLost",
    "PostgresRunLog",
    "normalize_url",
]

log = logging.getLogger(__name__)

#: The version of the tables this module writes and reads (``meta.schema_version``).
SCHEMA_VERSION = 1
#: The default PostgreSQL schema (namespace) of the tables.
DEFAULT_SCHEMA = "redengine_nb"
# pg_advisory_xact_lock key taken while the tables are created or migrated ('RENB').
_DDL_LOCK = 0x52454E42

T = TypeVar("T")


def _tables(schema: str) -> tuple[sa.MetaData, sa.Table, sa.Table, sa.Table, sa.Table]:
    md = sa.MetaData(schema=schema)
    runs = sa.Table(
        "runs",
        md,
        sa.Column("run_id", sa.BigInteger, sa.Identity(start=1), primary_key=True),
        sa.Column("task_name", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("start", sa.Double),
        sa.Column("end", sa.Double),
        sa.Column(
            "time",
            sa.Double,
            sa.Computed(
                "COALESCE(CASE WHEN action <> 'run' THEN \"end\" END, start, created)",
                persisted=True,
            ),
        ),
        sa.Column("exc_text", sa.LargeBinary),
        sa.Column("output", sa.LargeBinary),
        sa.Column("owner", sa.Text),
    )
    sa.Index("ix_runs_task_start", runs.c.task_name, runs.c.start)
    sa.Index("ix_runs_task_action_time", runs.c.task_name, runs.c.action, runs.c.time)
    sa.Index("ix_runs_task_created", runs.c.task_name, runs.c.created)
    sa.Index("ix_runs_created", runs.c.created)
    sa.Index("ix_runs_open", runs.c.owner, postgresql_where=runs.c.action == "run")
    tasks = sa.Table(
        "tasks",
        md,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("stamp", sa.BigInteger, nullable=False, server_default="0"),
    )
    leases = sa.Table(
        "leases",
        md,
        sa.Column("lease_id", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started", sa.Double, nullable=False),
        sa.Column("renewed", sa.Double, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        sa.Column("info", sa.Text, nullable=False, server_default=""),
    )
    meta = sa.Table(
        "meta",
        md,
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    return md, runs, tasks, leases, meta


_ACTIONS: dict[str, Action] = {a.value: a for a in Action}
_UNKNOWN: Any = object()  # a cache slot not looked up yet
_N_ACTIONS = len(Action)
_INDEX = {action: i for i, action in enumerate(Action)}
_BIT_RUN = 1 << _INDEX[Action.RUN]
_ALL_BITS = (1 << _N_ACTIONS) - 1

# SQLSTATE classes/codes after which the call is tried again on a new connection:
# connection exceptions (08...), the server shutting down or starting (57P01..57P03).
_RETRY_STATES = ("57P01", "57P02", "57P03")


def normalize_url(url: str) -> sa.engine.URL:
    """The SQLAlchemy URL for ``url``, with the psycopg 3 driver; RunLogError if it is not
    a PostgreSQL URL this store can use."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise RunLogError(
            f"logs={url!r} is not a database URL ({exc}); a PostgreSQL run log is "
            "'postgresql+psycopg://user:password@host:port/database'."
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise RunLogError(
            f"logs={url!r}: the {backend!r} database is not supported. A shared run log is "
            "PostgreSQL ('postgresql+psycopg://user@host/db'); one machine can use a SQLite "
            "file path or 'sqlite:///path'."
        )
    if driver not in ("", "psycopg"):
        raise RunLogError(
            f"logs={url!r}: the driver {driver!r} is not supported; use psycopg 3 "
            "('postgresql+psycopg://...', installed by the 'postgres' extra)."
        )
    if not parsed.database:
        raise RunLogError(
            f"logs={url!r} names no database; add it after the host: "
            "'postgresql+psycopg://user@host:5432/database'."
        )
    return parsed.set(drivername="postgresql+psycopg")


def _text(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8", "surrogatepass")


def _untext(value: bytes | memoryview | None) -> str | None:
    return None if value is None else bytes(value).decode("utf-8", "surrogatepass")


class PostgresRunLog(RunLogBase):
    """A :class:`~redengine_nb.runlog.base.RunLog` in a PostgreSQL database.

    ``url``: a SQLAlchemy URL (``postgresql+psycopg://user:pw@host:port/db``).
    ``schema``: the PostgreSQL schema of the tables. ``cache_size``: most ``last()``
    answers kept. ``retry_for``: seconds a call keeps reconnecting after the connection
    broke. ``listen``: run the ``LISTEN`` thread (without it, :meth:`refresh` always
    drops the cache). ``connect_timeout``: seconds to wait for the server at each connect.
    Thread safe.
    """

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
        self._url = normalize_url(url) if isinstance(url, str) else url
        self.location: str = self._url.render_as_string(hide_password=True)
        if not schema.isidentifier():
            raise RunLogError(f"schema={schema!r}: a schema name is a plain identifier")
        self.schema = schema
        self.cache_size = int(cache_size)
        self.retry_for = float(retry_for)
        self.store_id = uuid.uuid4().hex[:16]
        self._app_name = f"redengine_nb:{self.store_id}"
        md, self._runs, self._tasks, self._leases, self._meta = _tables(schema)
        self._md = md
        self._engine = sa.create_engine(
            self._url,
            poolclass=sa.pool.NullPool,
            connect_args={
                "application_name": self._app_name,
                "connect_timeout": max(1, int(connect_timeout)),
            },
        )
        self._lock = threading.RLock()  # reads, the cache, and commits
        self._wlock = threading.RLock()  # the write connection
        self._read: sa.Connection | None = None
        self._write: sa.Connection | None = None
        self._cache: OrderedDict[str, list[Any]] = OrderedDict()
        self._stamps: dict[str, int] = {}  # tasks row stamps as our last claim left them
        self._pending: list[tuple[str, str, Action, float, str | None, str | None]] = []
        self._dirty = True
        self._listening = False
        self._callbacks: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
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
            self._listener = threading.Thread(
                target=self._listen_loop, name="redengine_nb:pg-listen", daemon=True
            )
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
        self._present: dict[str, int] | None = None
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
            found = self._schema_state(self._read)
            if found == SCHEMA_VERSION:
                return
            with self._engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_LOCK})
                found = self._schema_state(conn)  # another process may have just done it
                if found is None:
                    self._create_schema(conn)
                elif found < SCHEMA_VERSION:
                    self._migrate(conn, found)
        except sa_exc.DBAPIError as exc:
            raise self._error("opening", exc) from exc

    def _schema_state(self, conn: sa.Connection) -> int | None:
        """Our schema version, ``None`` if there are no tables yet; raise if not ours."""
        meta = conn.execute(
            sa.text("SELECT to_regclass(:t), to_regclass(:r)"),
            {"t": f'"{self.schema}".meta', "r": f'"{self.schema}".runs'},
        ).one()
        if meta[0] is None:
            if meta[1] is not None:
                raise RunLogError(
                    f"run log {self.location!r}: the schema {self.schema!r} holds a 'runs' "
                    "table that is not a redengine_nb run log; it was left untouched. "
                    "Pass another schema (PostgresRunLog(url, schema=...))."
                )
            return None
        rows = dict(conn.execute(sa.select(self._meta.c.key, self._meta.c.value)).all())
        if rows.get("application") != "redengine_nb":
            raise RunLogError(
                f"run log {self.location!r}: the schema {self.schema!r} belongs to some "
                "other application; it was left untouched. Pass another schema."
            )
        version = int(rows.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise RunLogError(
                f"run log {self.location!r} has schema version {version}, newer than this "
                f"redengine_nb understands ({SCHEMA_VERSION}); it was left untouched. "
                "Upgrade redengine_nb on this machine."
            )
        return version

    def _create_schema(self, conn: sa.Connection) -> None:
        s = f'"{self.schema}"'
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {s}"))
        self._md.create_all(conn)
        # What changed, sent to the listeners of other schedulers at commit: the writer's
        # application_name on the first line, then one JSON line per written row:
        # [task, action, time, start] -- enough to keep their last() caches true without
        # a query. Split in several notifications below the 8000-byte payload limit. A
        # delete (retention) sends '*': drop every cache.
        channel = self.schema
        conn.execute(
            sa.text(
                f"CREATE OR REPLACE FUNCTION {s}.notify_rows() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ DECLARE "
                "me text := current_setting('application_name'); part text; "
                "BEGIN "
                "FOR part IN SELECT string_agg(item, '') FROM ("
                " SELECT item, sum(octet_length(item)) OVER (ORDER BY n) / 7000 AS chunk"
                " FROM (SELECT row_number() OVER () AS n, E'\\n' || json_build_array("
                " task_name, action, time, start)::text AS item FROM new_rows) AS rows"
                ") AS sized GROUP BY chunk LOOP "
                f"PERFORM pg_notify('{channel}', me || part); "
                "END LOOP; RETURN NULL; END $$"
            )
        )
        conn.execute(
            sa.text(
                f"CREATE OR REPLACE FUNCTION {s}.notify_all() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                f"PERFORM pg_notify('{channel}', current_setting('application_name') "
                "|| E'\\n*'); RETURN NULL; END $$"
            )
        )
        for event in ("INSERT", "UPDATE"):
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER runs_{event.lower()}_notify AFTER {event} ON {s}.runs "
                    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                    f"EXECUTE FUNCTION {s}.notify_rows()"
                )
            )
        conn.execute(
            sa.text(
                f"CREATE TRIGGER runs_delete_notify AFTER DELETE OR TRUNCATE ON {s}.runs "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.notify_all()"
            )
        )
        conn.execute(
            sa.insert(self._meta),
            [
                {"key": "application", "value": "redengine_nb"},
                {"key": "schema_version", "value": str(SCHEMA_VERSION)},
            ],
        )

    def _migrate(self, conn: sa.Connection, found: int) -> None:
        """Bring an older schema of ours to ``SCHEMA_VERSION`` (one transaction). There is
        one version so far; a later one adds its steps here."""
        conn.execute(
            sa.update(self._meta)
            .where(self._meta.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )

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

    # -- the last() cache ------------------------------------------------------------------
    def fit_cache(self, tasks: int) -> None:
        """Grow the ``last()`` cache (never shrink it, never turn it on) to hold every
        action of ``tasks`` tasks."""
        if self.cache_size > 0:
            self.cache_size = max(self.cache_size, _N_ACTIONS * tasks)

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._present = None

    def _forget(self, task: str) -> None:
        """Drop what is cached about ``task`` (its next lookups query the log)."""
        self._cache.pop(task, None)
        if self._present is not None:
            self._present[task] = _ALL_BITS

    def _known_pairs(self) -> dict[str, int]:
        if self._present is None:
            present: dict[str, int] = {}
            rows = self._call("reading", lambda c: c.execute(self._q_pairs).all(), write=False)
            for task, action in rows:
                index = _INDEX.get(_ACTIONS.get(action))  # type: ignore[arg-type]
                if index is None:
                    continue
                present[task] = present.get(task, 0) | _BIT_RUN | (1 << index)
            self._present = present
        return self._present

    def _entry(self, task: str) -> list[Any] | None:
        cache = self._cache
        entry = cache.get(task)
        if entry is not None:
            cache.move_to_end(task)
            return entry
        if self.cache_size <= 0:
            return None
        mask = self._known_pairs().get(task, 0)
        entry = cache[task] = [_UNKNOWN if mask >> i & 1 else None for i in range(_N_ACTIONS)]
        limit = max(1, self.cache_size // _N_ACTIONS)
        while len(cache) > limit:
            cache.popitem(last=False)
        return entry

    def _note(self, task: str, action: Action, when: float | None) -> None:
        """A write of ours made a record of ``action`` at ``when`` (under ``_lock``)."""
        index = _INDEX[action]
        if self._present is not None:
            self._present[task] = self._present.get(task, 0) | _BIT_RUN | (1 << index)
        entry = self._cache.get(task)
        if when is None or entry is None:
            return
        old = entry[index]
        if old is not _UNKNOWN and (old is None or when > old):
            entry[index] = when

    def _lookup(self, task: str, action: Action, entry: list[Any] | None) -> float | None:
        index = _INDEX[action]
        if entry is not None and not self._known_pairs().get(task, 0) & (1 << index):
            entry[index] = None
            return None
        if action is Action.RUN:
            stmt, params = self._q_last_run, {"task": task}
        else:
            stmt, params = self._q_last, {"task": task, "action": action.value}
        value = self._call("reading", lambda c: c.execute(stmt, params).scalar(), write=False)
        result = None if value is None else float(value)
        if entry is not None:
            entry[index] = result
        return result

    # -- History ---------------------------------------------------------------------------
    def last(self, task: str, action: Action) -> float | None:
        if action.__class__ is not Action:
            action = Action.parse(action)
        with self._lock:
            entry = self._entry(task)
            if entry is not None:
                value = entry[_INDEX[action]]
                if value is not _UNKNOWN:
                    return value  # type: ignore[no-any-return]
            return self._lookup(task, action, entry)

    def last_of(self, task: str, actions: Iterable[Action]) -> float | None:
        """The newest of ``last(task, a)`` over ``actions``."""
        best: float | None = None
        with self._lock:
            entry = self._entry(task)
            for action in actions:
                t = _UNKNOWN if entry is None else entry[_INDEX[action]]
                if t is _UNKNOWN:
                    t = self._lookup(task, action, entry)
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

    # -- writing ---------------------------------------------------------------------------
    def _insert_starts(
        self,
        conn: sa.Connection,
        tasks: Sequence[str],
        created: float,
        starts: Sequence[float],
        owner: str,
    ) -> list[RunRecord]:
        # One statement for the batch, its rows made in the order given (ORDER BY the
        # ordinality), so that the ids, drawn from the sequence as the rows are made,
        # ascend in that order.
        rows = list(
            conn.execute(
                self._q_insert_starts,
                {"tasks": list(tasks), "starts": list(starts), "created": created, "owner": owner},
            ).all()
        )
        rows.sort(key=lambda row: row[0])
        if [row[1] for row in rows] != list(tasks):  # not expected; then match by task
            by_task: dict[str, list[int]] = {}
            for run_id, task, _start in sorted(rows, key=lambda row: row[0]):
                by_task.setdefault(task, []).append(run_id)
            ids = [by_task[task].pop(0) for task in tasks]
        else:
            ids = [row[0] for row in rows]
        return [
            RunRecord(str(run_id), task, Action.RUN, created, at, owner=owner)
            for run_id, task, at in zip(ids, tasks, starts, strict=True)
        ]

    def _noted(self, records: Sequence[RunRecord]) -> None:
        with self._lock:
            for rec in records:
                self._note(rec.task_name, Action.RUN, rec.start)
                if rec.action is not Action.RUN:
                    self._note(rec.task_name, rec.action, rec.time)

    def start_run(self, task: str, *, created: float, start: float, owner: str) -> RunRecord:
        return self.start_runs([task], created=created, start=start, owner=owner)[0]

    def start_runs(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
    ) -> list[RunRecord]:
        """Record one started run per name in ``tasks``, in one transaction."""
        if not tasks:
            return []
        starts = start_times(start, tasks)
        doing = f"recording the start of {len(tasks)} run(s) ({tasks[0]!r}, ...)"
        records = self._writing(
            doing, lambda c: self._insert_starts(c, tasks, created, starts, owner)
        )
        self._noted(records)
        return records

    def _close_runs(
        self, conn: sa.Connection, ends: Sequence[tuple[str, Action, float, str | None, str | None]]
    ) -> list[RunRecord | Exception]:
        """Close the open runs of ``ends`` in one statement; the others get their error."""
        out: list[RunRecord | Exception | None] = [None] * len(ends)
        keys: list[int] = []
        rows_in: list[tuple[int, int, str, float, bytes | None, bytes | None]] = []
        seen: set[int] = set()
        for i, (run_id, action, end, exc_text, output) in enumerate(ends):
            try:
                final = Action.final(action)
            except ValueError as exc:
                out[i] = exc
                continue
            try:
                key = int(run_id)
            except (TypeError, ValueError):
                out[i] = KeyError(run_id)
                continue
            if key in seen:
                out[i] = ValueError(f"run {run_id} is ended twice in one batch")
                continue
            seen.add(key)
            keys.append(key)
            rows_in.append((i, key, final.value, end, _text(exc_text), _text(output)))
        s = f'"{self.schema}"'
        cols = 'r.run_id, r.task_name, r.action, r.created, r.start, r."end", '
        cols += "r.exc_text, r.output, r.owner"
        if rows_in:
            found = conn.execute(
                sa.text(
                    f'UPDATE {s}.runs AS r SET action = v.action, "end" = v.e, '
                    "exc_text = v.x, output = v.o FROM unnest(CAST(:ids AS bigint[]), "
                    "CAST(:acts AS text[]), CAST(:ends AS float8[]), CAST(:xs AS bytea[]), "
                    "CAST(:os AS bytea[])) AS v(id, action, e, x, o) "
                    f"WHERE r.run_id = v.id AND r.action = 'run' RETURNING {cols}"
                ),
                {
                    "ids": [row[1] for row in rows_in],
                    "acts": [row[2] for row in rows_in],
                    "ends": [row[3] for row in rows_in],
                    "xs": [row[4] for row in rows_in],
                    "os": [row[5] for row in rows_in],
                },
            ).all()
            done = {int(row[0]): self._record(row) for row in found}
            missing = [row[1] for row in rows_in if row[1] not in done]
            state: dict[int, tuple[str, str]] = {}
            if missing:
                state = {
                    int(k): (t, a)
                    for k, t, a in conn.execute(
                        sa.select(
                            self._runs.c.run_id, self._runs.c.task_name, self._runs.c.action
                        ).where(self._runs.c.run_id.in_(missing))
                    ).all()
                }
            for i, key, *_rest in rows_in:
                if key in done:
                    out[i] = done[key]
                elif key in state:
                    task, act = state[key]
                    out[i] = ValueError(f"run {key} of {task!r} already ended ({act})")
                else:
                    out[i] = KeyError(ends[i][0])
        return [x if x is not None else KeyError("?") for x in out]

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
        [result] = self.finish_runs([(run_id, action, end, exc_text, output)])
        if isinstance(result, Exception):
            raise result
        return result

    def finish_runs(
        self, ends: Sequence[tuple[str, Action, float, str | None, str | None]]
    ) -> list[RunRecord | Exception]:
        """Close many runs in one transaction; per run its record or the error that refused
        it alone. Raises :class:`RunLogError` if the transaction failed."""
        if not ends:
            return []
        results = self._writing(
            f"recording the end of {len(ends)} run(s)", lambda c: self._close_runs(c, ends)
        )
        self._noted([r for r in results if isinstance(r, RunRecord)])
        return results

    def end_runs(
        self, ends: Sequence[tuple[str, str, Action, float, str | None, str | None]]
    ) -> list[Exception | None]:
        """:meth:`finish_runs` for the session's end writer: ``(task, run_id, action, end,
        exc_text, output)``. If the server stays unreachable for ``retry_for`` seconds the
        ends are kept in memory, answered from the cache, and written with the next
        successful write or :meth:`refresh` (each is then ``None`` here: accepted)."""
        if not ends:
            return []
        batch = list(ends)
        with self._wlock:
            held = self._pending
            self._pending = []
            try:
                results = self.finish_runs([e[1:] for e in held + batch])
            except RunLogError as exc:
                if not self._unreachable(exc):
                    self._pending = held
                    raise
                self._pending = held + batch
                with self._lock:
                    for task, _id, action, end, _x, _o in batch:
                        self._note(task, Action.final(action), end)
                log.warning(
                    "run log %s unreachable: %d run end(s) kept in memory, written when it is back",
                    self.location,
                    len(self._pending),
                )
                return [None] * len(batch)
        for (task, run_id, *_), result in zip(held, results, strict=False):
            if isinstance(result, Exception):
                log.warning("kept end of run %s of %r not written: %s", run_id, task, result)
        return [r if isinstance(r, Exception) else None for r in results[len(held) :]]

    @staticmethod
    def _unreachable(exc: RunLogError) -> bool:
        cause = exc.__cause__
        return isinstance(cause, sa_exc.DBAPIError) and (
            cause.connection_invalidated or isinstance(cause, sa_exc.OperationalError)
        )

    @property
    def pending_ends(self) -> int:
        """Run ends accepted while the server was unreachable and not written yet."""
        return len(self._pending)

    def _flush_pending(self) -> None:
        if self._pending and self._wlock.acquire(blocking=False):
            try:
                if self._pending:
                    held, self._pending = self._pending, []
                    try:
                        results = self.finish_runs([e[1:] for e in held])
                    except RunLogError as exc:
                        self._pending = held + self._pending
                        if not self._unreachable(exc):
                            raise
                        return
                    for (task, run_id, *_), result in zip(held, results, strict=True):
                        if isinstance(result, Exception):
                            log.warning(
                                "kept end of run %s of %r not written: %s", run_id, task, result
                            )
            finally:
                self._wlock.release()

    def log_run(self, record: RunRecord) -> RunRecord:
        """Append ``record``; it keeps its ``run_id`` if that is a free integer, else gets
        a new one (set on the record, which is returned)."""
        wanted = int(record.run_id) if record.run_id and record.run_id.isdigit() else None
        values = {
            "task_name": record.task_name,
            "action": record.action.value,
            "created": record.created,
            "start": record.start,
            "end": record.end,
            "exc_text": _text(record.exc_text),
            "output": _text(record.output),
            "owner": record.owner,
        }
        r = self._runs.c
        seq = f"pg_get_serial_sequence('\"{self.schema}\".runs', 'run_id')"

        def op(conn: sa.Connection) -> int:
            if wanted is not None:
                got = conn.execute(
                    pg.insert(self._runs)
                    .values(run_id=wanted, **values)
                    .on_conflict_do_nothing(index_elements=["run_id"])
                    .returning(r.run_id)
                ).scalar()
                if got is not None:
                    # Later ids from the sequence must pass the one kept.
                    conn.execute(
                        sa.text(
                            f"SELECT setval({seq}, :k) WHERE :k >= "
                            f"(SELECT last_value FROM {self._sequence(conn)})"
                        ),
                        {"k": wanted},
                    )
                    return int(got)
            return int(
                conn.execute(
                    sa.insert(self._runs).values(**values).returning(r.run_id)
                ).scalar_one()
            )

        record.run_id = str(self._writing(f"recording a run of {record.task_name!r}", op))
        self._noted([record])
        return record

    def _sequence(self, conn: sa.Connection) -> str:
        name = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:t, 'run_id')"),
            {"t": f'"{self.schema}".runs'},
        ).scalar_one()
        return str(name)

    def mark_crashed(self, run_ids: Iterable[str], *, end: float) -> int:
        keys = [int(x) for x in run_ids if str(x).isdigit()]
        if not keys:
            return 0
        r = self._runs.c
        stmt = (
            sa.update(self._runs)
            .where(r.run_id.in_(keys), r.action == "run")
            .values(action="crash", end=end)
            .returning(r.task_name)
        )
        tasks = self._writing("marking crashed runs", lambda c: c.execute(stmt).scalars().all())
        with self._lock:
            for task in set(tasks):
                self._note(task, Action.CRASH, end)
        return len(tasks)

    # -- reading ---------------------------------------------------------------------------
    def _record(self, row: Sequence[Any]) -> RunRecord:
        run_id, task, action, created, start, end, exc_text, output, owner = row
        return RunRecord(
            str(run_id),
            task,
            _ACTIONS.get(action) or Action(action),
            created,
            start,
            end,
            _untext(exc_text),
            _untext(output),
            owner,
        )

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

    def refresh_if_free(self) -> bool:
        """:meth:`refresh` unless another thread is using the store. True if it did."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self.refresh()
        finally:
            self._lock.release()
        return True

    def refresh(self) -> None:
        """Drop the cache if another scheduler wrote since (or if we cannot know: the
        listener is not connected); write run ends held during an outage."""
        self._flush_pending()
        with self._lock:
            if self._dirty or not self._listening:
                self._dirty = False
                self._clear_cache()

    # -- upkeep ------------------------------------------------------------------------------
    def prune(self, *, before: float | None = None, keep: int | None = None) -> int:
        """Delete ended records whose time is older than ``before`` and, per task, all but
        the newest ``keep`` ended ones; open runs are never deleted. Returns how many.
        (The other schedulers' caches are dropped through the delete's notification.)"""
        if before is None and keep is None:
            return 0
        s = f'"{self.schema}"'
        where = ["action <> 'run'"]
        params: dict[str, Any] = {}
        if before is not None:
            where.append("time < :before")
            params["before"] = before
        sql = f"DELETE FROM {s}.runs WHERE " + " AND ".join(where)
        if keep is not None:
            params["keep"] = max(0, int(keep))
            surplus = (
                f"SELECT run_id FROM (SELECT run_id, row_number() OVER (PARTITION BY "
                f"task_name ORDER BY time DESC, run_id DESC) AS n FROM {s}.runs "
                "WHERE action <> 'run') AS ranked WHERE n > :keep"
            )
            if before is not None:
                sql = f"{sql} OR (run_id IN ({surplus}))"
            else:
                sql = f"DELETE FROM {s}.runs WHERE run_id IN ({surplus})"
        done = self._writing("pruning old records", lambda c: c.execute(sa.text(sql), params))
        with self._lock:
            self._clear_cache()
        return int(done.rowcount)

    def vacuum(self) -> None:
        """``VACUUM ANALYZE`` the runs table: the space of deleted rows is reused (the
        server's autovacuum does this too; a role that does not own the table gets a
        warning from the server and nothing done)."""
        s = f'"{self.schema}"'
        self._reading("vacuuming", lambda c: c.execute(sa.text(f"VACUUM ANALYZE {s}.runs")))

    # -- leases and claims (the shared-log protocol, see docs/scale-out.md) ----------------
    def acquire_lease(self, *, now: float, ttl: float, host: str, pid: int, info: str = "") -> str:
        """Insert a new lease (a fresh id) for a scheduler starting now; return its id."""
        lease_id = new_lease_id()
        stmt = sa.insert(self._leases).values(
            lease_id=lease_id,
            host=host,
            pid=pid,
            started=now,
            renewed=now,
            expires=now + ttl,
            info=info,
        )
        self._writing("taking a lease", lambda c: c.execute(stmt))
        return lease_id

    def renew_lease(self, lease_id: str, *, now: float, ttl: float) -> bool:
        """Extend the lease; False if it is gone (reaped): the scheduler must stop writing."""
        lc = self._leases.c
        stmt = (
            sa.update(self._leases)
            .where(lc.lease_id == lease_id)
            .values(renewed=now, expires=now + ttl)
            .returning(lc.lease_id)
        )
        return self._writing("renewing a lease", lambda c: c.execute(stmt).first()) is not None

    def release_lease(self, lease_id: str) -> None:
        stmt = sa.delete(self._leases).where(self._leases.c.lease_id == lease_id)
        self._writing("releasing a lease", lambda c: c.execute(stmt))

    def leases(self, now: float) -> list[LeaseInfo]:
        """Every lease in the table, alive and expired (not yet reaped), oldest first."""
        lc = self._leases.c
        stmt = sa.select(
            lc.lease_id, lc.host, lc.pid, lc.started, lc.renewed, lc.expires, lc.info
        ).order_by(lc.started, lc.lease_id)
        rows = self._reading("reading the leases", lambda c: c.execute(stmt).all())
        return [LeaseInfo(*row) for row in rows]

    def reap_expired(self, *, now: float) -> list[str]:
        """In one transaction: delete expired leases and turn the open runs whose owner is
        a lease id without a lease (expired or gone) into ``crash`` (end = now). Runs owned
        by an old ``host:pid`` token are left to the session's own check. Returns the
        crashed run ids."""
        s = f'"{self.schema}"'

        def op(conn: sa.Connection) -> list[tuple[int, str]]:
            conn.execute(sa.delete(self._leases).where(self._leases.c.expires < now))
            rows = conn.execute(
                sa.text(
                    f"UPDATE {s}.runs AS r SET action = 'crash', \"end\" = :now "
                    "WHERE r.action = 'run' AND r.owner LIKE 'L%' "
                    "AND strpos(r.owner, ':') = 0 AND NOT EXISTS ("
                    f"SELECT 1 FROM {s}.leases AS l WHERE l.lease_id = r.owner) "
                    "RETURNING r.run_id, r.task_name"
                ),
                {"now": now},
            ).all()
            return [(int(a), str(b)) for a, b in rows]

        crashed = self._writing("reaping expired leases", op)
        with self._lock:
            for _key, task in crashed:
                self._note(task, Action.CRASH, now)
        return [str(key) for key, _task in crashed]

    def claim_starts(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
        recheck: Callable[[Sequence[str]], Sequence[str]],
    ) -> list[RunRecord]:
        """Start the runs of ``tasks`` that no other scheduler is starting or has started
        since this one last looked, in one transaction:

        1. the lease ``owner`` is locked (``FOR SHARE``: a reaper waits for this
           transaction) and checked -- gone (reaped) raises :class:`LeaseLost`, nothing
           written (fencing);
        2. each task's row in ``tasks`` is locked, ``FOR UPDATE SKIP LOCKED``: a task that
           another scheduler is claiming right now is left to it;
        3. for the tasks whose ``stamp`` moved since our last claim (another scheduler
           started them), what is cached about them is dropped and ``recheck(names)``
           returns the ones still due against their now current history (other tasks'
           history is as the latest notifications left it); the others need no re-check;
        4. the starts are written. (The stamps of every row locked are bumped in step 2:
           one statement both locks and bumps.)

        Returns the records written (a subset of ``tasks``, in order)."""
        if not tasks:
            return []
        starts = start_times(start, tasks)
        s = f'"{self.schema}"'
        lc = self._leases.c
        tc = self._tasks.c

        def op(conn: sa.Connection) -> tuple[list[RunRecord], dict[str, int]]:
            expires = conn.execute(
                sa.select(lc.expires).where(lc.lease_id == owner).with_for_update(read=True)
            ).scalar()
            if expires is None:
                raise LeaseLost(
                    f"run log {self.location!r}: the lease {owner!r} is gone (it expired "
                    "and another scheduler reaped it, its runs marked crash); this "
                    "scheduler must stop starting runs."
                )
            # An expired lease not reaped yet may still claim: a reaper waits for this
            # transaction (the row lock above) and then crashes what it wrote.
            names = sorted(set(tasks))
            unknown = [n for n in names if n not in self._stamps]
            fresh: Sequence[str] = []
            if unknown:  # make the rows to lock (once per task and process)
                fresh = (
                    conn.execute(
                        pg.insert(self._tasks)
                        .from_select(
                            ["name"],
                            sa.select(sa.func.unnest(sa.bindparam("n", type_=pg.ARRAY(sa.Text)))),
                        )
                        .on_conflict_do_nothing(index_elements=["name"])
                        .returning(tc.name),
                        {"n": unknown},
                    )
                    .scalars()
                    .all()
                )
            # Lock the rows (skipping those another claim holds) and bump their stamps
            # in one statement; a stamp as it was before is the one to compare.
            bumped: dict[str, int] = {
                name: int(stamp)
                for name, stamp in conn.execute(
                    sa.text(
                        f"UPDATE {s}.tasks AS t SET stamp = t.stamp + 1 FROM ("
                        f"SELECT name FROM {s}.tasks WHERE name = ANY(:n) "
                        "ORDER BY name FOR UPDATE SKIP LOCKED) AS l "
                        "WHERE t.name = l.name RETURNING t.name, t.stamp"
                    ),
                    {"n": names},
                ).all()
            }
            known = dict(self._stamps)
            for name in fresh:
                known[name] = 0  # made by us just now: nobody else claimed it
            moved = [n for n in tasks if n in bumped and known.get(n) != bumped[n] - 1]
            keep = {n for n in tasks if n in bumped and known.get(n) == bumped[n] - 1}
            if moved:
                with self._lock:
                    for name in moved:  # read again: their history is current now
                        self._forget(name)
                keep.update(recheck(list(dict.fromkeys(moved))))
            chosen = [(t, at) for t, at in zip(tasks, starts, strict=True) if t in keep]
            records = []
            if chosen:
                records = self._insert_starts(
                    conn, [t for t, _ in chosen], created, [at for _, at in chosen], owner
                )
            return records, bumped

        with self._wlock:
            try:
                records, seen = self._writing(f"claiming {len(tasks)} start(s)", op)
            except BaseException:
                self._stamps.clear()  # what we knew may be wrong now: re-check next time
                raise
            self._stamps.update(seen)
        self._noted(records)
        return records

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
        return self._listening

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

    def _listen_loop(self) -> None:
        import psycopg

        dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        delay = 0.1
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(
                    dsn,
                    autocommit=True,
                    application_name=self._app_name + ":listen",
                    connect_timeout=5,
                )
            except psycopg.Error:
                self._listening = False
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                conn.execute(f'LISTEN "{self.schema}"')
                delay = 0.1
                self._changed(None)  # what happened while we were not listening
                self._listening = True
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.2):
                        self._changed(note.payload)
            except psycopg.Error:
                pass  # connect again
            finally:
                self._listening = False
                try:
                    conn.close()
                except psycopg.Error:
                    pass

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
            self._stop.set()
            self._drop(True)
            self._drop(False)
            self._cache.clear()
        if self._listener is not None and self._listener is not threading.current_thread():
            self._listener.join(timeout=2.0)
        self._engine.dispose()

    def __enter__(self) -> PostgresRunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresRunLog({self.location!r})"
