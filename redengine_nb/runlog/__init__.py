"""Run-log stores: where runs are recorded and status is read from.

:func:`open_runlog` turns the ``logs=`` argument of ``RedEngine`` into a store:

- ``None`` -- the SQLite file :data:`DEFAULT_LOG_FILE` in the current working directory;
- a :class:`RunLog` instance -- used as it is;
- ``':memory:'`` -- an in-memory SQLite database (nothing kept after the process);
- a path (``str`` or :class:`os.PathLike`), or ``'sqlite:///path'`` -- that SQLite file,
  created if new.

- a PostgreSQL URL (``'postgresql+psycopg://user@host/db'``, or ``postgresql://``) -- a
  :class:`~redengine_nb.runlog.postgres.PostgresRunLog`, shared by several schedulers on
  several machines (needs the ``postgres`` extra: SQLAlchemy 2 and psycopg 3).

Other URLs are refused with a :class:`~redengine_nb.errors.RunLogError`.
"""

from __future__ import annotations

import os

from ..errors import RunLogError
from .base import History, RunLog
from .memory import MemoryRunLog
from .sqlite import SQLiteRunLog

__all__ = [
    "DEFAULT_LOG_FILE",
    "History",
    "MemoryRunLog",
    "RunLog",
    "SQLiteRunLog",
    "open_runlog",
]

#: The run log used when ``logs`` is not given, relative to the current working directory.
DEFAULT_LOG_FILE = "redengine_nb.db"

_SQLITE_URL = "sqlite:///"


def _open_postgres(url: str) -> RunLog:
    try:
        from .postgres import PostgresRunLog
    except ImportError as exc:
        raise RunLogError(
            f"logs={url!r} needs SQLAlchemy 2 and psycopg 3 ({exc}); install them with "
            "pip install 'redengine_nb[postgres]'."
        ) from None
    return PostgresRunLog(url)


def open_runlog(logs: str | os.PathLike[str] | RunLog | None = None) -> RunLog:
    """The run-log store that ``logs`` names (see the module docstring)."""
    if logs is None:
        return SQLiteRunLog(os.path.join(os.getcwd(), DEFAULT_LOG_FILE))
    if isinstance(logs, (str, os.PathLike)):
        text = os.fspath(logs)
        if text == ":memory:":
            return SQLiteRunLog(":memory:")
        if text.startswith(_SQLITE_URL):
            path = text[len(_SQLITE_URL) :]
            if not path:
                raise RunLogError(f"logs={text!r} names no file; use 'sqlite:///path/to/file.db'.")
            return SQLiteRunLog(path)
        if text.startswith(("postgresql:", "postgresql+", "postgres:", "postgres+")):
            return _open_postgres(text)
        if "://" in text:
            raise RunLogError(
                f"logs={text!r}: only PostgreSQL URLs are supported "
                "('postgresql+psycopg://user@host/db'). Use a file path (or "
                "'sqlite:///path'), ':memory:', or a RunLog instance."
            )
        return SQLiteRunLog(text)
    if isinstance(logs, RunLog):
        return logs
    raise RunLogError(
        f"logs= takes a file path, ':memory:', or a RunLog instance; got {type(logs).__name__}."
    )
