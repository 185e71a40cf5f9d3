"""Tracebacks for people: the task's frames, with the source lines of code tasks.

A task that raises is recorded with its traceback. The frames of the scheduler itself
(executors, the run launcher, the code-task runner) say nothing to the person who wrote the
task, so :func:`user_traceback` leaves them out, unless the error happened in the scheduler
(its innermost frame is ours): then the whole traceback is kept. Code tasks (``%%task``
cells) are compiled under the file name ``<task NAME>``; :func:`remember_source` puts their
text in :mod:`linecache`, so their frames show the line that failed.
"""

from __future__ import annotations

import linecache
import traceback
from pathlib import Path

__all__ = ["remember_source", "user_traceback"]

_PACKAGE = str(Path(__file__).resolve().parents[1])  # the redengine_nb folder


def remember_source(filename: str, code: str) -> None:
    """Let tracebacks (and debuggers) show lines of ``code`` compiled as ``filename``."""
    # An entry without a modification time is never dropped by linecache.checkcache().
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)


def _ours(filename: str) -> bool:
    return filename.startswith(_PACKAGE)


def _trim(te: traceback.TracebackException) -> None:
    stack = list(te.stack)
    if stack and not _ours(stack[-1].filename):
        te.stack = traceback.StackSummary.from_list([f for f in stack if not _ours(f.filename)])
    for nested in (te.__cause__, te.__context__):
        if nested is not None:
            _trim(nested)


def user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback without the scheduler's own frames (see the module's text)."""
    te = traceback.TracebackException.from_exception(exc)
    _trim(te)
    return "".join(te.format())
