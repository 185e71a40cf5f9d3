"""Run-log stores: where runs are recorded and status is read from.

:func:`open_runlog` turns the ``logs=`` argument of ``RedEngine`` into a store:

- ``None`` -- the SQLite file :data:`DEFAULT_LOG_FILE` in the current working directory;
- a :class:`RunLog` instance -- used as it is;
- ``':memory:'`` -- an in-memory SQLite database (nothing kept after the process);
- a path (``str`` or :class:`os.PathLike`), or ``'sqlite:///path'`` -- that SQLite file,
  created if new.

Other URLs (``postgresql://...``: a SQLAlchemy store shared by several machines) are
planned and refused with a :class:`~redengine_nb.errors.RunLogError` for now.
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
        if "://" in text:
            raise RunLogError(
                f"logs={text!r}: SQLAlchemy URLs are planned, not yet supported. Use a file "
                "path (or 'sqlite:///path'), ':memory:', or a RunLog instance."
            )
        return SQLiteRunLog(text)
    if isinstance(logs, RunLog):
        return logs
    raise RunLogError(
        f"logs= takes a file path, ':memory:', or a RunLog instance; got {type(logs).__name__}."
    )
