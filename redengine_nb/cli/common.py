"""What the ``redengine-nb`` commands share: their error, the run log they open, and the
plain-text lines and tables they print."""

from __future__ import annotations

import argparse
import os
import re
import select
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import RedEngineError
from ..records import Action, RunRecord
from ..timetext import parse_duration

if TYPE_CHECKING:
    from ..runlog.base import RunLog

__all__ = [
    "READER_GONE_EXIT",
    "Output",
    "ServeError",
    "format_run_line",
    "format_table",
    "log_status_rows",
    "open_existing_log",
    "parse_config_pairs",
]


class ServeError(RedEngineError):
    """``serve`` cannot go on; ``exit_code`` says how the process exits."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


#: Exit status when standard output's reader went away (``serve NB | head``): 128 + SIGPIPE,
#: the status a shell shows for ``cat`` in ``cat big.txt | head``.
READER_GONE_EXIT = 141


def reader_closed(stream: object) -> bool:
    """True when ``stream`` is a pipe or socket whose reading end has been closed."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no fd (a StringIO), no poll (Windows)
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


class Output:
    """A command's standard output that notices when its reader has gone.

    Writing to a pipe whose reader has exited raises ``BrokenPipeError`` (Python ignores
    SIGPIPE). The first one marks the output :attr:`gone`, points the stream's file
    descriptor at ``os.devnull`` — so whatever else this process writes to it (a cell's
    ``print``, the interpreter's flush at exit) goes nowhere instead of raising — and calls
    the callbacks given to :meth:`on_gone` (serve stops its scheduler). Later writes are
    dropped. Thread-safe: serve writes from the runner, the end writer and timer threads.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self.reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self.reader_gone()

    def on_gone(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once when the reader goes (at once if it has gone already)."""
        with self._lock:
            if not self.gone:
                self._callbacks.append(callback)
                return
        callback()

    def reader_gone(self) -> None:
        """Record that the reader has gone: drop further output and tell the callbacks."""
        with self._lock:
            if self.gone:
                return
            self.gone = True
            callbacks, self._callbacks = self._callbacks, []
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
        if fd >= 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)
        for callback in callbacks:
            callback()


# -- small helpers ------------------------------------------------------------------------


def fmt_time(ts: float | None, *, date: bool = True) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def fmt_runtime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m{secs:04.1f}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h{int(minutes):02d}m{int(secs):02d}s"


# Control characters but newline and tab: C0, DEL and C1 (an escape sequence in a task's
# output must not move the cursor, recolour or retitle the terminal that reads the log).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with terminal control characters shown as escapes (``\\x1b``), newlines
    and tabs kept: what ``serve`` and ``log`` print comes from tasks, and is data."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def format_run_line(record: RunRecord) -> str:
    """One progress line: ``time  task  status  runtime`` (fixed columns, plain text)."""
    when = record.end if record.end is not None else record.time
    line = (
        f"{fmt_time(when)}  {record.task_name:<24} {record.action.value:<9} "
        f"{fmt_runtime(record.runtime):>9}"
    )
    if record.exc_text:
        last = [s for s in record.exc_text.strip().splitlines() if s.strip()]
        if last:
            line += f"  {last[-1].strip()[:120]}"
    return printable(line)


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    return text


def parse_config_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``['max_process_count=2', 'instant_shutdown=true', 'timeout=30 minutes']`` → a dict.

    Values: ``true``/``false`` (also yes/no, on/off), ``none``, integers, decimals, else
    text (durations and conditions stay text; the app validates them).
    """
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ServeError(f"--config {pair!r}: expected KEY=VALUE, e.g. instant_shutdown=true")
        config[key.strip()] = _parse_value(value)
    return config


def positive_duration(text: str) -> float:
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be positive")
    return seconds


def logs_arg(logs: str | None) -> str:
    from ..runlog import DEFAULT_LOG_FILE

    text = logs if logs is not None else DEFAULT_LOG_FILE
    if text == ":memory:" or "://" in text:
        return text
    if text.endswith(".ipynb"):  # a notebook: its own log, beside it
        from ..notebook.nbfile import notebook_log_file

        text = str(notebook_log_file(text))
    return str(Path(text).expanduser().resolve())


def open_existing_log(logs: str | None, *, write: bool = False) -> RunLog:
    """The run log ``logs`` names, which must exist. To read it (``status``, ``log``), a
    file this user may not write is opened read-only."""
    from ..runlog import SQLiteRunLog, open_runlog

    location = logs_arg(logs)
    if location != ":memory:" and "://" not in location and not Path(location).exists():
        hint = "" if logs is not None else " (the default; pass --logs PATH for another)"
        raise ServeError(
            f"no run log at {location}{hint}: serve writes one when it runs a notebook", 1
        )
    path = location[len("sqlite:///") :] if location.startswith("sqlite:///") else location
    if not write and location != ":memory:" and "://" not in path:
        folder = os.path.dirname(path) or "."
        if not (os.access(path, os.W_OK) and os.access(folder, os.W_OK)):
            return SQLiteRunLog(path, readonly=True)
    return open_runlog(location)


# -- the status table from a run log ------------------------------------------------------


def log_status_rows(
    runlog: RunLog, conditions: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per task with records (and per task in ``conditions``), read from the log.

    Works from any process: it needs only the run log, not the session that wrote it.
    """
    runlog.refresh()
    # The session's tasks in their order, then any other task the log knows, by name.
    names = list(conditions or {})
    names += sorted(n for n in runlog.task_names() if n not in (conditions or {}))
    rows: list[dict[str, Any]] = []
    for name in names:
        newest = runlog.records(task=name, limit=1)
        last = newest[-1] if newest else None
        status = None if last is None else last.action.value
        if status == Action.RUN.value:
            status = "running"
        finished = [r for r in runlog.records(task=name, limit=5) if r.runtime is not None]
        row: dict[str, Any] = {"task": name}
        if conditions is not None:
            row["condition"] = conditions.get(name, "-")
        row.update(
            status=status or "-",
            last_run=fmt_time(runlog.last(name, Action.RUN)),
            last_success=fmt_time(runlog.last(name, Action.SUCCESS)),
            last_fail=fmt_time(runlog.last(name, Action.FAIL)),
            runtime=fmt_runtime(finished[-1].runtime if finished else None),
            runs=runlog.count(name),
            fails=runlog.count(name, Action.FAIL),
        )
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text columns (readable in a terminal and in a service log)."""
    if not rows:
        return "(no runs recorded)"
    headers = list(rows[0])
    cells = [[printable(str(row.get(h, ""))) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    return "\n".join(lines)
