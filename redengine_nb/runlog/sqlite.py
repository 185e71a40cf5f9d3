"""The default run log: one SQLite file (stdlib :mod:`sqlite3`), shared safely by processes.

One row per run in the table ``runs``: ``action`` is ``'run'`` while the run lives and is
updated to its final action when it ends. Times are epoch seconds (``REAL``).

Durability. The file uses the WAL journal with ``synchronous=NORMAL``: a write is durable
when its call returns as far as a crash of *the process* (or the kernel being killed) is
concerned. A power loss or an operating-system crash may lose the last few commits (the
database stays consistent). Several processes may write at once; each waits up to
``busy_timeout`` seconds for another's write lock, and a write that cannot be made raises
:class:`~redengine_nb.errors.RunLogError` -- it is never silently dropped.

Group commit. A commit is the costly part of a write, so writes from concurrent threads
share one: :meth:`SQLiteRunLog.start_run`, :meth:`~SQLiteRunLog.finish_run` and
:meth:`~SQLiteRunLog.log_run` queue their write, and whichever caller gets the connection
first writes everything queued so far in one transaction and commits it; each caller
returns only once the transaction holding its own write has committed (or raises if it
did not). A write that is refused on its own (an unknown or already ended run) fails only
its caller. :meth:`~SQLiteRunLog.start_runs` writes a whole batch of starts (what one
scheduler step launches) in one transaction.

Lookups never scan the table. The indexes (see ``_SCHEMA``) are few, as each costs every
write; only one of them holds the columns a run's end changes:

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

A small in-memory cache answers ``last()`` again without a query. It holds, per task, the
answer for each action; it is bounded (``cache_size`` answers, i.e. that many tasks' worth
divided by the number of actions, least recently used task dropped; the session grows it
with :meth:`SQLiteRunLog.fit_cache` to hold every task, so that a scheduler step does not
evict what it reads), kept up to date by this process's own writes, and emptied by
:meth:`SQLiteRunLog.refresh` when ``PRAGMA data_version`` says another connection has
written. Beside it, which actions each task has records of (loaded with one skip scan at
the first miss, grown by our writes), so that a task's first look at an action it has
never logged costs no query. Nothing else is cached, so memory stays bounded however many
runs the file holds.

The file is marked as ours with ``PRAGMA application_id`` and carries the schema version
in ``PRAGMA user_version``; an older version of ours is migrated when opened, in one
transaction (version 1 had four more indexes). A file that is not SQLite, or is another
application's database, is refused with an error and left byte-for-byte untouched.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import RunLogError
from ..records import Action, RunRecord
from .base import (
    LeaseInfo,
    LeaseLost,
    Recheck,
    RunLogBase,
    RunLogLost,
    is_lease_id,
    new_lease_id,
    start_times,
)
from .checkpoint import Checkpointer

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "RunLogLost", "SQLiteRunLog"]

#: ``PRAGMA application_id`` of a redengine_nb run log (the bytes ``RENB``).
APPLICATION_ID = 0x52454E42
#: ``PRAGMA user_version``: the schema version this module writes and reads.
SCHEMA_VERSION = 3

_SQLITE_HEADER = b"SQLite format 3\x00"

# The instant a row's action refers to (RunRecord.time): its end once ended, else its start.
# Indexes on this expression are used only by queries that spell it the same way.
_TIME = "COALESCE(CASE WHEN action <> 'run' THEN \"end\" END, start, created)"

# Who is alive (schema version 3): one row per scheduler, renewed at its heartbeat.
_LEASES = """
CREATE TABLE IF NOT EXISTS leases (
    lease_id TEXT PRIMARY KEY,
    host     TEXT NOT NULL,
    pid      INTEGER NOT NULL,
    started  REAL NOT NULL,
    renewed  REAL NOT NULL,
    expires  REAL NOT NULL,
    info     TEXT NOT NULL DEFAULT ''
);
"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id    INTEGER PRIMARY KEY,
    task_name TEXT NOT NULL,
    action    TEXT NOT NULL,
    created   REAL NOT NULL,
    start     REAL,
    "end"     REAL,
    exc_text  TEXT,
    output    TEXT,
    owner     TEXT
);
CREATE INDEX IF NOT EXISTS ix_runs_task_start ON runs (task_name, start);
CREATE INDEX IF NOT EXISTS ix_runs_task_action_time ON runs (task_name, action, {_TIME});
CREATE INDEX IF NOT EXISTS ix_runs_task_created ON runs (task_name, created);
CREATE INDEX IF NOT EXISTS ix_runs_created ON runs (created);
{_LEASES}
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""

#: Indexes of schema version 1 that version 2 dropped: each was updated by every end.
_DROPPED_IN_2 = (
    "ix_runs_task_time",
    "ix_runs_task_action_created",
    "ix_runs_time",
    "ix_runs_action_created",
)

# Every action, for ``action IN (...)``: it lets a lookup of any action use the
# (task_name, action, <time>) index with a range on <time>.
_ANY_ACTION = "action IN (" + ", ".join(f"'{a.value}'" for a in Action) + ")"

# The distinct task names, one index probe each (a skip scan over (task_name, start)).
_NAMES = (
    "WITH RECURSIVE names(name) AS ("
    " SELECT MIN(task_name) FROM runs"
    " UNION ALL"
    " SELECT (SELECT MIN(task_name) FROM runs WHERE task_name > names.name)"
    " FROM names WHERE names.name IS NOT NULL)"
)

# Every (task, action) pair the file holds, by a skip scan of the (task_name, action,
# <time>) index: one probe per name, then one per pair -- bounded by the pairs, not the
# rows, whether or not the planner has statistics (a plain DISTINCT may scan the index).
_PAIRS = (
    _NAMES + ", pairs(name, action) AS ("
    " SELECT name, (SELECT MIN(action) FROM runs WHERE task_name = names.name)"
    " FROM names WHERE names.name IS NOT NULL"
    " UNION ALL"
    " SELECT name, (SELECT MIN(action) FROM runs"
    " WHERE task_name = pairs.name AND action > pairs.action)"
    " FROM pairs WHERE pairs.action IS NOT NULL)"
    " SELECT name, action FROM pairs WHERE action IS NOT NULL"
)

_COLUMNS = 'run_id, task_name, action, created, start, "end", exc_text, output, owner'

Row = tuple[Any, ...]
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


_ACTIONS: dict[str, Action] = {a.value: a for a in Action}


_UNKNOWN: Any = object()  # a cache slot not looked up yet
_N_ACTIONS = len(Action)
_ALL = range(_N_ACTIONS)
_INDEX = {action: i for i, action in enumerate(Action)}
_INDEX_OF_VALUE = {action.value: i for i, action in enumerate(Action)}
_BIT_RUN = 1 << _INDEX[Action.RUN]


class _Guard:
    """``with log._guard(doing):`` turns an ``sqlite3.Error`` into a :class:`RunLogError`
    (a class, not a generator: it is on every lookup)."""

    __slots__ = ("doing", "log")

    def __init__(self, log: SQLiteRunLog, doing: str) -> None:
        self.log = log
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise self.log._error(self.doing, exc) from exc


def _record(row: Row) -> RunRecord:
    run_id, task, action, created, start, end, exc_text, output, owner = row
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


def _raiser(exc: Exception) -> Callable[[sqlite3.Connection], Any]:
    def op(conn: sqlite3.Connection) -> Any:
        raise exc

    return op


def _run_id(run_id: str) -> int:
    """The integer key of ``run_id``; a ``KeyError`` (like an unknown id) if it is not one."""
    try:
        return int(run_id)
    except (TypeError, ValueError):
        raise KeyError(run_id) from None


class SQLiteRunLog(RunLogBase):
    """A :class:`~redengine_nb.runlog.base.RunLogBase` in a SQLite file (or ``':memory:'``).

    ``busy_timeout``: seconds to wait for another process's lock before a call fails with
    :class:`RunLogError`. ``cache_size``: most ``last()`` answers kept (``0``: no cache).
    ``readonly``: open an existing file for reading only (``status``/``log`` on a file
    they may not write); every write then raises. Thread safe: one connection, guarded by
    a lock.

    A new file is created with mode 0600 (task output can hold secrets; SQLite gives its
    ``-wal`` and ``-shm`` files the same mode). The file's identity (device, inode) is
    kept at open and checked after every commit: a file deleted or replaced while open
    raises :class:`RunLogLost` at the first write after it, and on every write after that.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        cache_size: int = 1024,
        readonly: bool = False,
    ) -> None:
        self._memory = os.fspath(path) == ":memory:"
        self.readonly = readonly and not self._memory
        self._identity: tuple[int, int] | None = None
        self._lost: str | None = None
        # Leases taken through this handle and not deleted through it since: with no
        # other writer since we last looked (data_version), these are surely still there.
        self._held: set[str] = set()
        self._shared = False  # another writer seen (see the ``shared`` property)
        # reap_expired looks at the open runs only when a lease may have gone without its
        # runs being reaped: at its first call, after it deleted expired leases, or after
        # another scheduler's lease was released through this handle.
        self._reap_all = True
        self.location: str = ":memory:" if self._memory else os.fspath(path)
        self.busy_timeout = float(busy_timeout)
        self.cache_size = int(cache_size)
        self._lock = threading.RLock()
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._leading = False  # a writer is committing the queue (under _queue_lock)
        self._cache: OrderedDict[str, list[Any]] = OrderedDict()
        # Every (task, action) the file may hold a record of: a superset, loaded at the
        # first cache miss (one skip scan) and grown by our writes. A miss for a pair not
        # in it is answered None without a query (a new task's first look at its
        # history). Only kept with the cache on; dropped with it when others write.
        self._present: dict[str, int] | None = None
        # Per task, its count of runs (records with a start) and of fails, each None until
        # counted once, then kept by our own writes (status() asks for both for every task:
        # two COUNT(*) per task were 160 ms at 1M records and 1,000 tasks). Emptied with
        # the last() cache: when others write, or a write of ours fails.
        self._counts: dict[str, list[int | None]] = {}
        self._closed = False
        if self.readonly:
            self._check_readable(Path(path))
        elif not self._memory:
            self._check_file(Path(path))
            self._create_private(self.location)
        try:
            if self.readonly:
                self._conn = self._connect_readonly()
            else:
                self._conn = sqlite3.connect(
                    self.location,
                    timeout=self.busy_timeout,
                    check_same_thread=False,
                    isolation_level=None,
                )
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            if self.readonly:
                self._prepare_readonly()
            else:
                self._prepare()
        except BaseException:
            self._conn.close()
            raise
        self._data_version = self._scalar("PRAGMA data_version")
        if not self._memory:
            st = os.stat(self.location)
            self._identity = (st.st_dev, st.st_ino)
        # WAL checkpoints on a thread of their own, not in one of our commits.
        self._checkpointer: Checkpointer | None = None
        if not self._memory and not self.readonly:
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            page_size = int(self._scalar("PRAGMA page_size"))
            self._checkpointer = Checkpointer(self.location, self.busy_timeout, page_size)
            # Started over after a checkpoint, the -wal file is cut back to the limit
            # (its size then says how much is waiting).
            self._conn.execute(f"PRAGMA journal_size_limit = {self._checkpointer.limit}")

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection. A WAL file needs its ``-shm`` index, which a reader
        creates if it is missing; where it cannot (a read-only folder, so nobody can be
        writing the log either), the file is opened as immutable: read as it is."""
        base = "file:" + urllib.parse.quote(os.path.abspath(self.location))
        last: sqlite3.Error | None = None
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = sqlite3.connect(
                base + query,
                uri=True,
                timeout=self.busy_timeout,
                check_same_thread=False,
                isolation_level=None,
            )
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as exc:
                conn.close()
                last = exc
                continue
            return conn
        assert last is not None
        raise last

    @staticmethod
    def _create_private(location: str) -> None:
        """Create the file with mode 0600 if it does not exist (SQLite would make it
        with the umask's mode, usually readable by everyone)."""
        try:
            fd = os.open(location, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        except OSError:
            return  # SQLite's own open says what is wrong, with our hint
        os.close(fd)

    def _check_readable(self, path: Path) -> None:
        if not path.is_file():
            raise RunLogError(
                f"cannot read the run log {str(path)!r}: no such file. Pass the path of an "
                "existing run log."
            )
        with open(path, "rb") as fh:
            header = fh.read(len(_SQLITE_HEADER))
        if header != _SQLITE_HEADER:
            raise RunLogError(
                f"the run log {str(path)!r} is not a SQLite database (corrupt, or some "
                "other kind of file)."
            )

    def _prepare_readonly(self) -> None:
        with self._guard("open"):
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._conn.execute("PRAGMA query_only = 1")
            if not self._in_transaction("BEGIN", self._is_ours):
                raise RunLogError(f"{self.location!r} is an empty SQLite file, not a run log.")

    def _check_identity(self) -> None:
        """Raise :class:`RunLogLost` if the file we write is no longer the file at our
        path (deleted, or replaced by another). Called after each commit: one ``stat``."""
        if self._lost is None and self._identity is not None:
            try:
                st = os.stat(self.location)
                same = (st.st_dev, st.st_ino) == self._identity
            except OSError:
                same = False
            if not same:
                self._lost = (
                    f"run log {self.location!r}: the file was deleted or replaced while "
                    "this scheduler was writing to it; the records written since are lost "
                    "(they went to the old, unlinked file). Stop, restore the file or "
                    "start with a new log, and check what ran meanwhile."
                )
        if self._lost is not None:
            raise RunLogLost(self._lost)

    # -- opening ---------------------------------------------------------------------
    def _check_file(self, path: Path) -> None:
        """Refuse what SQLite would misuse, without writing a byte to it."""
        folder = path.parent
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise RunLogError(
                f"cannot open the run log {str(path)!r}: the folder {str(folder)!r} {what}. "
                "Create the folder first, pass logs= a path in an existing folder, "
                "or logs=':memory:' for a history that is not kept."
            )
        if path.is_dir():
            raise RunLogError(
                f"cannot open the run log {str(path)!r}: it is a folder. "
                "Pass logs= a file path, e.g. os.path.join(folder, 'redengine_nb.db')."
            )
        if not path.exists():
            if not os.access(folder, os.W_OK):
                raise RunLogError(
                    f"cannot create the run log {str(path)!r}: the folder {str(folder)!r} "
                    "is not writable. Fix its permissions or choose another logs= path."
                )
            return
        try:
            with open(path, "rb") as fh:
                header = fh.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise RunLogError(
                f"cannot read the run log {str(path)!r}: {exc.strerror or exc}. "
                "Fix its permissions or choose another logs= path."
            ) from exc
        if header and header != _SQLITE_HEADER:
            raise RunLogError(
                f"the run log {str(path)!r} is not a SQLite database (corrupt, or some "
                "other kind of file); it was left untouched. Move it aside or pass "
                "another logs= path."
            )
        if not os.access(path, os.W_OK) or not os.access(folder, os.W_OK):
            raise RunLogError(
                f"the run log {str(path)!r} (or its folder) is read-only; the scheduler "
                "must write its runs. Fix the permissions or choose another logs= path."
            )

    def _prepare(self) -> None:
        """Check that the file is ours (or empty), create the schema, switch to WAL.

        Two processes may open a new file at once: each looks inside a read transaction
        (a consistent view), and the schema is created in one write transaction that
        looks again first, so the loser finds the winner's complete schema.
        """
        with self._guard("open"):
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if not self._in_transaction("BEGIN", self._is_ours):
                self._in_transaction("BEGIN IMMEDIATE", self._create_schema)
            if self._scalar("PRAGMA user_version") < SCHEMA_VERSION:
                self._in_transaction("BEGIN IMMEDIATE", self._migrate)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")

    def _in_transaction(self, begin: str, body: Callable[[], bool]) -> bool:
        self._conn.execute(begin)
        try:
            result = body()
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        return result

    def _create_schema(self) -> bool:
        if self._is_ours():  # another process has just created it
            return True
        # one statement at a time: executescript() would commit the transaction first
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._conn.execute(statement)
        return True

    def _migrate(self) -> bool:
        """Bring an older file of ours to ``SCHEMA_VERSION``, in one transaction (looking
        at the version again first: another process may have just done it).

        1 -> 2: drop four indexes that every run's end had to update; the lookups they
        served use the remaining ones. 2 -> 3: the ``leases`` table."""
        version = self._scalar("PRAGMA user_version")
        if version < 2:
            for name in _DROPPED_IN_2:
                self._conn.execute(f"DROP INDEX IF EXISTS {name}")
        if version < 3:
            self._conn.execute(_LEASES)
        if version < SCHEMA_VERSION:
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return True

    def _is_ours(self) -> bool:
        """``True`` for our schema, ``False`` for an empty database; else raise."""
        objects = self._scalar("SELECT COUNT(*) FROM sqlite_master")
        app_id = self._scalar("PRAGMA application_id")
        version = self._scalar("PRAGMA user_version")
        if app_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise RunLogError(
                    f"the run log {self.location!r} has schema version {version}, newer "
                    f"than this redengine_nb understands ({SCHEMA_VERSION}); it was left "
                    "untouched. Upgrade redengine_nb or pass another logs= path."
                )
            return True
        if app_id == 0 and version == 0 and objects == 0:
            return False
        raise RunLogError(
            f"{self.location!r} is a SQLite database of some other application (it has "
            "tables but is not a redengine_nb run log); it was left untouched. Pass "
            "logs= a new file path instead."
        )

    # -- plumbing --------------------------------------------------------------------
    def _error(self, doing: str, exc: sqlite3.Error) -> RunLogError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            hint = (
                f"another process held a lock on it for longer than the busy timeout "
                f"({self.busy_timeout:g} s). Stop that process, or pass another "
                "logs= path."
            )
        elif "not a database" in text or "malformed" in text or "corrupt" in text:
            hint = (
                "the file is corrupt; it was left as it is. Move it aside (keep it for "
                "recovery with the sqlite3 '.recover' command) and start a new log."
            )
        elif "readonly" in text or "read-only" in text or "unable to open" in text:
            hint = "check the permissions of the file and its folder, or pass another path."
        elif "closed" in text:
            hint = "the run log was closed; open it again."
        else:
            hint = "check the disk (space, permissions) or pass another logs= path."
        return RunLogError(f"run log {self.location!r}: {doing} failed: {text}; {hint}")

    def _guard(self, doing: str) -> _Guard:
        return _Guard(self, doing)

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

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

    def _in_tx(self) -> bool:
        try:
            return self._conn.in_transaction
        except sqlite3.Error:  # closed
            return False

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

    # -- the last() cache ------------------------------------------------------------
    # One entry per task: a list of answers by action (_UNKNOWN where not looked up yet),
    # least recently used task dropped first. The pairs the file holds are a bit mask per
    # task. Per task, that is one tracked object rather than a dozen tuples: ten thousand
    # tasks' caches are then a small part of what each full garbage collection walks.
    def fit_cache(self, tasks: int) -> None:
        """Grow the ``last()`` cache (never shrink it, never turn it on) to hold every
        action of ``tasks`` tasks: a cache smaller than what one scheduler step reads is
        emptied by that step itself, and every lookup becomes a query."""
        if self.cache_size > 0:
            self.cache_size = max(self.cache_size, len(Action) * tasks)

    def _entry(self, task: str) -> list[Any] | None:
        """``task``'s cache entry, made (and the oldest dropped) if it has none; ``None``
        with the cache off (under the lock)."""
        cache = self._cache
        entry = cache.get(task)
        if entry is not None:
            cache.move_to_end(task)
            return entry
        if self.cache_size <= 0:
            return None
        if self._present is None:
            with self._guard("reading"):
                self._known_pairs()
        assert self._present is not None
        # What the file holds no record of is known now: None, not a lookup to make.
        mask = self._present.get(task, 0)
        entry = cache[task] = (
            [None] * _N_ACTIONS if not mask else [_UNKNOWN if mask >> i & 1 else None for i in _ALL]
        )
        limit = max(1, self.cache_size // _N_ACTIONS)
        while len(cache) > limit:
            cache.popitem(last=False)
        return entry

    def _cache_note(self, task: str, action: Action, when: float | None) -> None:
        """Our own write made a record of ``action`` at ``when``: keep a cached answer true.
        (A ``RUN`` note with a time is a new record with a start; a ``FAIL`` note, a
        record that is now a fail.)"""
        counts = self._counts.get(task)
        if counts is not None:
            slot = 0 if action is Action.RUN and when is not None else 1
            n = counts[slot]
            if n is not None and (slot == 0 or action is Action.FAIL):
                counts[slot] = n + 1
        index = _INDEX[action]
        present = self._present
        if present is not None:
            present[task] = present.get(task, 0) | _BIT_RUN | (1 << index)
        entry = self._cache.get(task)
        if when is None or entry is None:
            return
        old = entry[index]
        if old is not _UNKNOWN and (old is None or when > old):
            entry[index] = when

    def _known_pairs(self) -> dict[str, int]:
        """``_present``, loaded if it is not (under the lock)."""
        if self._present is None:
            present: dict[str, int] = {}
            for task, action in self._conn.execute(_PAIRS):
                index = _INDEX_OF_VALUE.get(action)
                if index is None:
                    continue  # not an action of ours: last() never asks for it
                # It may have a start, too (a superset is safe).
                present[task] = present.get(task, 0) | _BIT_RUN | (1 << index)
            self._present = present
        return self._present

    def _lookup(self, task: str, action: Action, entry: list[Any] | None) -> float | None:
        """A cache miss: answer ``last(task, action)`` from the file (under the lock)."""
        index = _INDEX[action]
        with self._guard("reading"):
            if entry is not None and not self._known_pairs().get(task, 0) & (1 << index):
                entry[index] = None
                return None
            if action is Action.RUN:
                value = self._scalar(
                    "SELECT start FROM runs WHERE task_name = ? AND start IS NOT NULL "
                    "ORDER BY start DESC LIMIT 1",
                    (task,),
                )
            else:
                value = self._scalar(
                    f"SELECT {_TIME} FROM runs WHERE task_name = ? AND action = ? "
                    f"ORDER BY {_TIME} DESC LIMIT 1",
                    (task, action.value),
                )
        result = None if value is None else float(value)
        if entry is not None:
            entry[index] = result
        return result

    # -- History ---------------------------------------------------------------------
    def last(self, task: str, action: Action) -> float | None:
        if action.__class__ is not Action:
            action = Action.parse(action)
        with self._lock:
            cache = self._cache
            entry = cache.get(task)
            if entry is not None:  # the common case, once per condition look: kept lean
                cache.move_to_end(task)
                value = entry[_INDEX[action]]
                if value is not _UNKNOWN:
                    return value  # type: ignore[no-any-return]
            else:
                entry = self._entry(task)
            return self._lookup(task, action, entry)

    def last_of(self, task: str, actions: Iterable[Action]) -> float | None:
        """The newest of ``last(task, a)`` over ``actions`` (one lock for all of them)."""
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
                f"SELECT {_TIME} FROM runs WHERE task_name = ? AND action = ? "
                f"AND {_TIME} < ? ORDER BY {_TIME} DESC LIMIT 1"
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
            sql, col = "SELECT COUNT(*) FROM runs WHERE task_name = ?", _TIME
            if since is not None or until is not None:
                sql += f" AND {_ANY_ACTION}"
        else:
            sql = "SELECT COUNT(*) FROM runs WHERE task_name = ? AND action = ?"
            col = _TIME
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

    def claim_starts(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
        recheck: Recheck,
    ) -> list[RunRecord]:
        """:meth:`start_runs` as a claim (see :meth:`RunLogBase.claim_starts`).

        ``BEGIN IMMEDIATE`` takes the write lock; then ``PRAGMA data_version`` (no I/O: a
        counter in the shared memory) says whether another connection committed since we
        last looked. If none did -- one scheduler on the file -- nothing we read can be
        stale and our lease cannot have been reaped: the starts are written as by
        :meth:`start_runs`. Otherwise the cache is dropped, the lease looked up, and
        ``recheck`` decides, all before anyone else can write."""
        if not tasks:
            return []
        starts = start_times(start, tasks)
        doing = f"claiming the start of {len(tasks)} run(s) ({tasks[0]!r}, ...)"
        with self._write(doing) as conn:
            pairs = list(zip(tasks, starts, strict=True))
            version = self._scalar("PRAGMA data_version")
            foreign = version != self._data_version
            if foreign:
                self._shared = True
                self._data_version = version
                self._cache.clear()
                self._present = None
                self._counts.clear()
            if foreign or owner not in self._held:
                found = conn.execute("SELECT 1 FROM leases WHERE lease_id = ?", (owner,))
                if found.fetchone() is None:
                    raise LeaseLost(
                        f"run log {self.location!r}: this scheduler's lease {owner!r} is gone "
                        "(it expired and another scheduler marked its runs crash); it must "
                        "stop starting runs"
                    )
            if foreign:
                keep = set(recheck(tasks))
                pairs = [(t, at) for t, at in pairs if t in keep]
                if not pairs:
                    return []
            return self._insert_starts(conn, pairs, created, owner)

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

    # -- leases ----------------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return self._shared

    def acquire_lease(self, *, now: float, ttl: float, host: str, pid: int, info: str = "") -> str:
        lease_id = new_lease_id()
        with self._write("taking a lease") as conn:
            conn.execute(
                "INSERT INTO leases (lease_id, host, pid, started, renewed, expires, info) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (lease_id, host, pid, now, now, now + ttl, info),
            )
            others = conn.execute("SELECT 1 FROM leases WHERE expires >= ? LIMIT 2", (now,))
            if len(others.fetchall()) > 1:
                self._shared = True
        self._held.add(lease_id)
        return lease_id

    def renew_lease(self, lease_id: str, *, now: float, ttl: float) -> bool:
        with self._write("renewing the lease") as conn:
            cur = conn.execute(
                "UPDATE leases SET renewed = ?, expires = ? WHERE lease_id = ?",
                (now, now + ttl, lease_id),
            )
            if cur.rowcount != 1:
                self._held.discard(lease_id)
                return False
            return True

    def release_lease(self, lease_id: str) -> None:
        with self._write("releasing the lease") as conn:
            conn.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))
        if lease_id not in self._held:
            self._reap_all = True
        self._held.discard(lease_id)

    def leases(self, now: float) -> list[LeaseInfo]:
        with self._lock, self._guard("reading"):
            if self.readonly and self._scalar("PRAGMA user_version") < 3:
                return []  # an older file, read as it is: it has no leases table
            rows = self._conn.execute(
                "SELECT lease_id, host, pid, started, renewed, expires, info FROM leases "
                "ORDER BY started, lease_id"
            ).fetchall()
        return [LeaseInfo(*row) for row in rows]

    def reap_expired(self, *, now: float) -> list[str]:
        with self._write("marking the runs of expired leases crash") as conn:
            expired = conn.execute("DELETE FROM leases WHERE expires < ?", (now,)).rowcount
            if not expired and not self._reap_all:
                return []  # no lease went: no run to reap (one statement per heartbeat)
            self._reap_all = False
            alive = {row[0] for row in conn.execute("SELECT lease_id FROM leases")}
            self._held &= alive
            dead: list[tuple[int, str]] = []
            for name in self.task_names():
                for run_id, owner in conn.execute(
                    "SELECT run_id, owner FROM runs WHERE task_name = ? AND action = 'run'",
                    (name,),
                ):
                    if is_lease_id(owner) and owner not in alive:
                        dead.append((run_id, name))
            conn.executemany(
                "UPDATE runs SET action = 'crash', \"end\" = ? WHERE run_id = ? AND action = 'run'",
                [(now, run_id) for run_id, _ in dead],
            )
            for name in {name for _, name in dead}:
                self._cache_note(name, Action.CRASH, now)
        return [str(run_id) for run_id, _ in dead]

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
                        f"DELETE FROM runs WHERE task_name = ? AND action <> 'run' AND {_TIME} < ?",
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
                rows.append((Action.final(action).value, end, exc_text, output, _run_id(run_id)))
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
        key = _run_id(run_id)

        def op(conn: sqlite3.Connection) -> RunRecord:
            row = conn.execute(
                f'UPDATE runs SET action = ?, "end" = ?, exc_text = ?, output = ? '
                f"WHERE run_id = ? AND action = 'run' RETURNING {_COLUMNS}",
                (action.value, end, exc_text, output, key),
            ).fetchone()
            if row is None:
                found = conn.execute(
                    "SELECT task_name, action FROM runs WHERE run_id = ?", (key,)
                ).fetchone()
                if found is None:
                    raise KeyError(run_id)
                raise ValueError(f"run {run_id} of {found[0]!r} already ended ({found[1]})")
            record = _record(row)
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
                f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                keys.append(_run_id(run_id))
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
            return [_record(row) for row in rows]
        with self._lock:
            rows = self._record_rows(task, action, since, limit)
        if limit is not None:
            rows.reverse()
        return [_record(row) for row in rows]

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
            where.append(_ANY_ACTION)
        if since is not None:
            where.append(f"{_TIME} >= ?")
            params.append(since)
        sql = f"SELECT {_COLUMNS} FROM runs"
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
                    f"SELECT {_COLUMNS} FROM runs WHERE task_name = ? AND action = 'run'",
                    (name,),
                ).fetchall()
        rows.sort(key=lambda row: row[0])
        return [_record(row) for row in rows]

    def task_names(self) -> list[str]:
        # A skip scan over the (task_name, start) index: one probe per distinct name.
        sql = _NAMES + " SELECT name FROM names WHERE name IS NOT NULL"
        with self._lock, self._guard("reading"):
            return [row[0] for row in self._conn.execute(sql)]

    def refresh_if_free(self) -> bool:
        """:meth:`refresh` unless the connection is busy (this process's own writer holds
        it: a scheduler step then does not wait behind a commit; the step that follows
        that writer's acknowledgements refreshes). True if it refreshed."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self.refresh()
        finally:
            self._lock.release()
        return True

    def refresh(self) -> None:
        """Drop the ``last()`` cache if another connection has written since we looked."""
        with self._lock, self._guard("reading"):
            version = self._scalar("PRAGMA data_version")
            if version != self._data_version:
                self._shared = True
                self._data_version = version
                self._cache.clear()
                self._counts.clear()
                self._present = None

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed(self._conn)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.close()
            try:
                self._conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass  # only a planner hint; closing matters more
            self._conn.close()
            self._cache.clear()

    def __enter__(self) -> SQLiteRunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteRunLog({self.location!r})"
