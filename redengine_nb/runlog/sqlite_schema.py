"""The SQLite run log's file: its schema, its checks and how it is opened.

The file is marked as ours with ``PRAGMA application_id`` and carries the schema version
in ``PRAGMA user_version``; an older version of ours is migrated when opened, in one
transaction (version 1 had four more indexes). A file that is not SQLite, or is another
application's database, is refused with an error and left byte-for-byte untouched.

The functions here raise :class:`sqlite3.Error` as it comes (the store turns it into a
:class:`~redengine_nb.errors.RunLogError` that names the file) and ``RunLogError`` for a
file that is not a run log of ours.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import RunLogError
from ..records import Action

__all__ = [
    "ANY_ACTION",
    "APPLICATION_ID",
    "COLUMNS",
    "NAMES",
    "PAIRS",
    "SCHEMA_VERSION",
    "TIME",
    "Row",
    "check_file",
    "check_readable",
    "connect_readonly",
    "create_private",
    "prepare",
    "prepare_readonly",
    "run_id_key",
]

APPLICATION_ID = 0x52454E42
#: ``PRAGMA user_version``: the schema version this module writes and reads.
SCHEMA_VERSION = 3

_SQLITE_HEADER = b"SQLite format 3\x00"

# The instant a row's action refers to (RunRecord.time): its end once ended, else its start.
# Indexes on this expression are used only by queries that spell it the same way.
TIME = "COALESCE(CASE WHEN action <> 'run' THEN \"end\" END, start, created)"

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
CREATE INDEX IF NOT EXISTS ix_runs_task_action_time ON runs (task_name, action, {TIME});
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
ANY_ACTION = "action IN (" + ", ".join(f"'{a.value}'" for a in Action) + ")"

# The distinct task names, one index probe each (a skip scan over (task_name, start)).
NAMES = (
    "WITH RECURSIVE names(name) AS ("
    " SELECT MIN(task_name) FROM runs"
    " UNION ALL"
    " SELECT (SELECT MIN(task_name) FROM runs WHERE task_name > names.name)"
    " FROM names WHERE names.name IS NOT NULL)"
)

# Every (task, action) pair the file holds, by a skip scan of the (task_name, action,
# <time>) index: one probe per name, then one per pair -- bounded by the pairs, not the
# rows, whether or not the planner has statistics (a plain DISTINCT may scan the index).
PAIRS = (
    NAMES + ", pairs(name, action) AS ("
    " SELECT name, (SELECT MIN(action) FROM runs WHERE task_name = names.name)"
    " FROM names WHERE names.name IS NOT NULL"
    " UNION ALL"
    " SELECT name, (SELECT MIN(action) FROM runs"
    " WHERE task_name = pairs.name AND action > pairs.action)"
    " FROM pairs WHERE pairs.action IS NOT NULL)"
    " SELECT name, action FROM pairs WHERE action IS NOT NULL"
)

COLUMNS = 'run_id, task_name, action, created, start, "end", exc_text, output, owner'

Row = tuple[Any, ...]


def run_id_key(run_id: str) -> int:
    """The integer key of ``run_id``; a ``KeyError`` (like an unknown id) if it is not one."""
    try:
        return int(run_id)
    except (TypeError, ValueError):
        raise KeyError(run_id) from None


def connect_readonly(location: str, busy_timeout: float) -> sqlite3.Connection:
    """A read-only connection. A WAL file needs its ``-shm`` index, which a reader
    creates if it is missing; where it cannot (a read-only folder, so nobody can be
    writing the log either), the file is opened as immutable: read as it is."""
    base = "file:" + urllib.parse.quote(os.path.abspath(location))
    last: sqlite3.Error | None = None
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(
            base + query,
            uri=True,
            timeout=busy_timeout,
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


def create_private(location: str) -> None:
    """Create the file with mode 0600 if it does not exist (SQLite would make it
    with the umask's mode, usually readable by everyone)."""
    try:
        fd = os.open(location, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # SQLite's own open says what is wrong, with our hint
    os.close(fd)


def check_readable(path: Path) -> None:
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


def prepare_readonly(conn: sqlite3.Connection, location: str, busy_timeout: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA query_only = 1")
    if not _in_transaction(conn, "BEGIN", lambda: _is_ours(conn, location)):
        raise RunLogError(f"{location!r} is an empty SQLite file, not a run log.")


def check_file(path: Path) -> None:
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


def prepare(conn: sqlite3.Connection, location: str, busy_timeout: float) -> None:
    """Check that the file is ours (or empty), create the schema, switch to WAL.

    Two processes may open a new file at once: each looks inside a read transaction
    (a consistent view), and the schema is created in one write transaction that
    looks again first, so the loser finds the winner's complete schema.
    """
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    if not _in_transaction(conn, "BEGIN", lambda: _is_ours(conn, location)):
        _in_transaction(conn, "BEGIN IMMEDIATE", lambda: _create_schema(conn, location))
    if _scalar(conn, "PRAGMA user_version") < SCHEMA_VERSION:
        _in_transaction(conn, "BEGIN IMMEDIATE", lambda: _migrate(conn))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")


def _in_transaction(conn: sqlite3.Connection, begin: str, body: Callable[[], bool]) -> bool:
    conn.execute(begin)
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _create_schema(conn: sqlite3.Connection, location: str) -> bool:
    if _is_ours(conn, location):  # another process has just created it
        return True
    # one statement at a time: executescript() would commit the transaction first
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    return True


def _migrate(conn: sqlite3.Connection) -> bool:
    """Bring an older file of ours to ``SCHEMA_VERSION``, in one transaction (looking
    at the version again first: another process may have just done it).

    1 -> 2: drop four indexes that every run's end had to update; the lookups they
    served use the remaining ones. 2 -> 3: the ``leases`` table."""
    version = _scalar(conn, "PRAGMA user_version")
    if version < 2:
        for name in _DROPPED_IN_2:
            conn.execute(f"DROP INDEX IF EXISTS {name}")
    if version < 3:
        conn.execute(_LEASES)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return True


def _is_ours(conn: sqlite3.Connection, location: str) -> bool:
    """``True`` for our schema, ``False`` for an empty database; else raise."""
    objects = _scalar(conn, "SELECT COUNT(*) FROM sqlite_master")
    app_id = _scalar(conn, "PRAGMA application_id")
    version = _scalar(conn, "PRAGMA user_version")
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise RunLogError(
                f"the run log {location!r} has schema version {version}, newer "
                f"than this redengine_nb understands ({SCHEMA_VERSION}); it was left "
                "untouched. Upgrade redengine_nb or pass another logs= path."
            )
        return True
    if app_id == 0 and version == 0 and objects == 0:
        return False
    raise RunLogError(
        f"{location!r} is a SQLite database of some other application (it has "
        "tables but is not a redengine_nb run log); it was left untouched. Pass "
        "logs= a new file path instead."
    )


def _scalar(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]
