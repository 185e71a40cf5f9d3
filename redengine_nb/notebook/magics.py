"""The notebook's magics: ``%%task`` cells, ``%tasks``, ``%task ...`` and ``%scheduler ...``.

Two halves. :func:`register_cell_task` turns a ``%%task`` cell into a task of an app and
knows nothing of IPython: ``redengine-nb serve`` calls it for the cells of a notebook file,
so a cell becomes the same task, under the same name, in a kernel and headless.
:class:`SchedulerMagics` is the thin IPython layer over it and over the session's API.
"""

from __future__ import annotations

import re
import shlex
import sys
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .cells import (
    TaskCellError,
    TaskCellOptions,
    default_task_name,
    parse_task_line,
    task_line_help,
)

if TYPE_CHECKING:
    from .._engine.tasks import BaseTask as Task
    from ..app import RedEngine
    from ..conditions.base import BaseCondition

__all__ = [
    "TasksTable",
    "cell_task_names",
    "describe_registration",
    "fleet_line",
    "install_input_transformer",
    "missing_task_warnings",
    "register_cell_task",
    "tasks_table",
    "uninstall_input_transformer",
]

# Which task each cell registered, per app: re-running a cell (edited or not, even if the
# name derived from it changed) updates that cell's task instead of adding another.
_CELL_TASKS: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def cell_task_names(app: RedEngine) -> dict[str, str]:
    """The ``cell id -> task name`` map of ``app`` (live; the magics keep it up to date)."""
    try:
        return _CELL_TASKS.setdefault(app, {})
    except TypeError:  # an app that cannot be weakly referenced: keep it on the app
        names: dict[str, str] = app.__dict__.setdefault("_cell_task_names", {})
        return names


def _session_has(app: RedEngine, name: str) -> bool:
    return name in app.session


def register_cell_task(
    app: RedEngine,
    line: str | TaskCellOptions,
    body: str,
    *,
    cell_id: str | None,
    namespace: dict[str, Any],
) -> Task:
    """Register the ``%%task`` cell ``line`` / ``body`` as a code task of ``app``.

    ``line`` is the text after ``%%task`` (condition and options, verbatim), or what
    :func:`~.cells.parse_task_line` made of it (the magic has read it already); ``cell_id``
    identifies the cell when the front end says which one it is (JupyterLab's ``cellId``)
    and ``namespace`` is where thread and main runs execute the body (the notebook's
    ``user_ns``; process runs get a fresh interpreter). The name is ``--name``, else the
    name this cell registered before, else :func:`default_task_name`.

    Re-registering a cell replaces its task (its history is kept: the run log is keyed
    by name). When the cell now asks for another name, the task it registered before is
    deleted once the new one is in. A bad line or condition raises (``TaskCellError``,
    ``ConditionParseError``, ``ValueError``) and changes nothing.
    """
    opts = parse_task_line(line) if isinstance(line, str) else line
    if opts.help:
        raise TaskCellError(task_line_help())
    # Parsed once, here: before anything changes (a bad condition leaves the old task).
    condition = app.session.parse_condition(opts.condition)
    owned = cell_task_names(app)
    previous = owned.get(cell_id) if cell_id else None
    name = opts.name.strip() if opts.name is not None else default_task_name(body, cell_id)

    kwargs: dict[str, Any] = {
        "name": name,
        "code": body,
        "priority": opts.priority,
        "disabled": opts.disabled,
        "namespace": namespace,
    }
    if opts.execution is not None:
        kwargs["execution"] = opts.execution
    if opts.timeout is not None:
        kwargs["timeout"] = opts.timeout

    # The same cell again: its task is replaced whatever ``task_pre_exist`` says (a
    # headless app may say 'raise'); a name held by another task follows the app's policy.
    if previous == name and _session_has(app, name) and _pre_exist(app) != "replace":
        task = _replace_task(app, condition, kwargs)
    else:
        task = app.task(condition, **kwargs)
    assert task is not None
    if cell_id:
        owned[cell_id] = name
        if previous is not None and previous != name and _session_has(app, previous):
            app.session.delete_task(previous)
    return task


def _pre_exist(app: RedEngine) -> str:
    try:
        return str(app.config.task_pre_exist)
    except AttributeError:  # pragma: no cover - engine without that option
        return "replace"


def _replace_task(app: RedEngine, condition: BaseCondition, kwargs: dict[str, Any]) -> Task:
    """Replace a task this cell owns on an app whose policy is not 'replace'."""
    old = app.session[kwargs["name"]]
    app.session.delete_task(old.name)
    task: Task = app.task(condition, **kwargs)
    return task


def _format_due(when: datetime | None, now: datetime | None) -> str:
    if when is None:
        return "due on an event (its condition has no time of its own)"
    if now is not None and when <= now:
        return "due now"
    if now is not None and when.date() == now.date():
        return f"next due {when:%H:%M:%S}"
    return f"next due {when:%Y-%m-%d %H:%M:%S}"


def describe_registration(task: Task, *, now: datetime | None = None) -> str:
    """The line a ``%%task`` cell prints: what was registered and when it is next due."""
    cond = str(task.start_cond)
    execution = getattr(task, "execution", None) or "default"
    head = f"registered task {task.name!r} ({cond}, {execution})"
    if task.disabled:
        return f"{head}; disabled (enable with %task enable {_quote(task.name)})"
    from ..conditions import explain

    reading = explain(task.start_cond)  # e.g. hourly times are minutes of the hour
    if reading:
        head = f"{head} [{reading}]"
    try:
        when = task.next_due()
    except Exception as exc:  # a custom condition may fail; still say what was registered
        return f"{head}; next due unknown ({type(exc).__name__}: {exc})"
    return f"{head}; {_format_due(when, now)}"


def missing_task_warnings(app: RedEngine, tasks: list[Task] | None = None) -> list[str]:
    """One line per task whose condition names a task the session does not have."""
    from .reads import named_tasks

    known = {t.name for t in app.session.tasks}
    lines = []
    for task in app.session.tasks if tasks is None else tasks:
        missing = [n for n in named_tasks(task.start_cond) if n not in known]
        if missing:
            names = ", ".join(repr(n) for n in missing)
            lines.append(
                f"warning: task {task.name!r} waits for {names}, which no task of this "
                "session is called: it will not start until such a task exists"
            )
    return lines


def _quote(name: str) -> str:
    return name if shlex.quote(name) == name else shlex.quote(name)


# ---------------------------------------------------------------------------------------
# The IPython layer. Everything above is pure; below, the magics a notebook user types.
# ---------------------------------------------------------------------------------------

from IPython.core.error import UsageError  # noqa: E402
from IPython.core.magic import (  # noqa: E402
    Magics,
    cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)

TASK_LINE_HELP = """usage: %task ACTION NAME

Act on one task of the kernel's scheduler session.

actions:
  run NAME         run it once at the next chance, whatever its condition
  disable NAME     stop it from starting (a running run goes on)
  enable NAME      let it start again when its condition is true
  delete NAME      remove it (its history stays in the run log)
  terminate NAME   ask its running run to stop (a process is killed; a thread's
                   TerminationFlag is set)
  log NAME [--limit N] [--verbose]
                   its runs, newest last: action (how each ended: success, fail,
                   terminate, inaction, crash; run while it lives), start, end,
                   runtime, scheduler (host:pid), output, traceback; --verbose
                   prints them in full

NAME may be quoted ('my task'). As a cell magic, %%task registers the cell as a task:
see %%task --help.
"""

TASKS_HELP = """usage: %tasks

The status table of the kernel's scheduler session, for reading: one row per task (task,
condition, status, last run, next due, took, runs, fails), times local to the second with
"in 4 min" / "3 s ago", empty cells blank, the status coloured; under it, the
schedulers on the run log when it is shared. For code, use app.session.status() (the raw
DataFrame).
"""

SCHEDULER_HELP = """usage: %scheduler start|stop|restart|status|panel

  start     start the scheduler thread (if it is not running)
  stop      stop it (running tasks are waited for; tasks stay registered)
  restart   stop and start it again in this kernel (restarting='recall')
  status    say whether it runs, how many tasks there are, and the schedulers
            on the run log when it is shared
  panel     show the live ipywidgets panel
"""

_TASK_CELL = re.compile(r"%%task(\s|$)")


def empty_task_cell(lines: list[str]) -> list[str]:
    """An input transformer: give a ``%%task`` cell with no body an empty line for body.

    IPython refuses a cell magic whose body is empty before calling it ("the cell body is
    empty. Did you mean the line magic %task?"), so ``%%task --help`` alone in a cell
    would never print the usage. With a blank body the magic is called and answers:
    the usage for ``--help``, else that the cell has no code to run.
    """
    if lines and _TASK_CELL.match(lines[0]) and not "".join(lines[1:]):
        first = lines[0] if lines[0].endswith("\n") else lines[0] + "\n"
        return [first, "\n"]
    return lines


def install_input_transformer(shell: Any) -> None:
    """Add :func:`empty_task_cell` to ``shell``'s input cleanup (once)."""
    cleanup = getattr(shell, "input_transformers_cleanup", None)
    if cleanup is not None and empty_task_cell not in cleanup:
        cleanup.append(empty_task_cell)


def uninstall_input_transformer(shell: Any) -> None:
    cleanup = getattr(shell, "input_transformers_cleanup", None)
    while cleanup is not None and empty_task_cell in cleanup:
        cleanup.remove(empty_task_cell)


_TASK_ACTIONS = ("run", "disable", "enable", "delete", "terminate", "log")


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot read {line!r}: {exc}") from None


def _cell_id_of(shell: Any) -> str | None:
    """The id of the cell being executed, when the front end sends it (JupyterLab does)."""
    parent: Any = None
    kernel = getattr(shell, "kernel", None)
    get_parent = getattr(kernel, "get_parent", None)
    if callable(get_parent):
        try:
            parent = get_parent("shell")
        except TypeError:
            parent = get_parent()
        except Exception:
            parent = None
    if not parent:
        parent = getattr(shell, "parent_header", None)
    if not isinstance(parent, dict):
        return None
    metadata = parent.get("metadata") or {}
    cell_id = metadata.get("cellId") or metadata.get("cell_id")
    return str(cell_id) if cell_id else None


@magics_class
class SchedulerMagics(Magics):
    """``%%task``, ``%task``, ``%tasks`` and ``%scheduler``."""

    def __init__(self, shell: Any, get_app: Callable[[], RedEngine]) -> None:
        super().__init__(shell)
        self._get_app = get_app

    def _app(self) -> RedEngine:
        try:
            return self._get_app()
        except RuntimeError as exc:
            raise UsageError(str(exc)) from None

    def _task(self, name: str) -> Task:
        try:
            return self._app().session[name]
        except KeyError as exc:
            raise UsageError(str(exc.args[0]) if exc.args else f"no task {name!r}") from None

    # -- %%task ---------------------------------------------------------------------
    @no_var_expand
    @cell_magic("task")  # type: ignore[arg-type]
    def task_cell(self, line: str, cell: str) -> None:
        """Register this cell as a task: %%task CONDITION [options]; see --help."""
        try:
            opts = parse_task_line(line)
        except TaskCellError as exc:
            raise UsageError(str(exc)) from None
        if opts.help:
            print(task_line_help())
            return
        if not cell.strip():
            raise UsageError("%%task: the cell has no code to run")
        app = self._app()
        assert self.shell is not None
        try:
            task = register_cell_task(
                app, opts, cell, cell_id=_cell_id_of(self.shell), namespace=self.shell.user_ns
            )
        except (ValueError, TypeError) as exc:  # ConditionParseError, ConfigError, ...
            raise UsageError(str(exc)) from None
        print(describe_registration(task, now=app.session.clock.now()))
        for line in missing_task_warnings(app, [task]):
            print(line, file=sys.stderr)

    # -- %task ----------------------------------------------------------------------
    @no_var_expand
    @line_magic("task")  # type: ignore[arg-type]
    def task_line(self, line: str) -> Any:
        """Act on a task: %task run|disable|enable|delete|terminate|log NAME; see --help."""
        words = _words(line)
        if not words or words[0] in ("--help", "-h", "help"):
            print(TASK_LINE_HELP)
            return None
        action, rest = words[0], words[1:]
        if action not in _TASK_ACTIONS:
            raise UsageError(
                f"%task: unknown action {action!r}; expected one of "
                f"{', '.join(_TASK_ACTIONS)}\n(to register a cell as a task use %%task, "
                "with two %)"
            )
        if action == "log":
            return self._task_log(rest)
        if not rest:
            raise UsageError(f"%task {action}: which task? usage: %task {action} NAME")
        name = " ".join(rest)
        task = self._task(name)
        if action == "run":
            task.run()
            print(f"queued a run of {name!r}")
        elif action == "disable":
            task.disabled = True
            print(f"disabled {name!r}")
        elif action == "enable":
            task.disabled = False
            print(f"enabled {name!r}")
        elif action == "delete":
            task.delete()
            owned = cell_task_names(self._app())
            for cell_id in [c for c, n in owned.items() if n == name]:
                del owned[cell_id]
            print(f"deleted {name!r}")
        else:
            running = task.is_running
            task.terminate()
            print(f"asked {name!r} to terminate" if running else f"{name!r} is not running")
        return None

    def _task_log(self, words: list[str]) -> Any:
        limit = 20
        verbose = False
        names: list[str] = []
        it = iter(words)
        for word in it:
            if word in ("--verbose", "-v"):
                verbose = True
            elif word.startswith("--limit"):
                value = word.partition("=")[2] or next(it, "")
                try:
                    limit = int(value)
                except ValueError:
                    raise UsageError(f"%task log: --limit needs a number, not {value!r}") from None
            elif word in ("--help", "-h"):
                print(TASK_LINE_HELP)
                return None
            elif word.startswith("--"):
                raise UsageError(f"%task log: unknown option {word!r}\n{TASK_LINE_HELP}")
            else:
                names.append(word)
        if not names:
            raise UsageError("%task log: which task? usage: %task log NAME [--limit N]")
        name = " ".join(names)
        app = self._app()
        if name not in app.session and name not in app.runlog.task_names():
            self._task(name)  # raises the session's KeyError text (close matches)
        frame = task_log_frame(app, name, limit=limit)
        self._show_displays(frame)
        if verbose:
            print(format_task_log(frame, name))
            return None
        return frame

    def _show_displays(self, frame: Any) -> None:
        """Show again what the runs in ``frame`` displayed (kept by this kernel, with their
        MIME bundles), each under a line naming its run."""
        from IPython.display import publish_display_data

        from . import kernel

        ks = kernel.current()
        if ks is None or len(frame) == 0:
            return
        for run_id in frame["run_id"]:
            shown = ks.router.displays(str(run_id))
            if shown:
                print(f"--- displays of run {run_id}:")
                for item in shown:
                    publish_display_data(item.data, item.metadata)  # type: ignore[no-untyped-call]

    # -- %tasks ---------------------------------------------------------------------
    @no_var_expand
    @line_magic("tasks")  # type: ignore[arg-type]
    def tasks(self, line: str) -> Any:
        """Show the status table of the kernel's scheduler session; see --help."""
        words = _words(line)
        if words and words[0] in ("--help", "-h"):
            print(TASKS_HELP)
            return None
        if words:
            raise UsageError(f"%tasks takes no arguments, got {line!r}\n{TASKS_HELP}")
        return tasks_table(self._app())

    # -- %scheduler -----------------------------------------------------------------
    @no_var_expand
    @line_magic("scheduler")  # type: ignore[arg-type]
    def scheduler(self, line: str) -> Any:
        """Control the scheduler: %scheduler start|stop|restart|status|panel; see --help."""
        words = _words(line)
        if not words or words[0] in ("--help", "-h", "help"):
            print(SCHEDULER_HELP)
            return None
        if len(words) > 1:
            raise UsageError(f"%scheduler takes one action, got {line!r}\n{SCHEDULER_HELP}")
        action = words[0]
        app = self._app()
        if action == "start":
            if app.is_running:
                print("the scheduler is already running")
            else:
                app.start()
                print("scheduler started")
                for line in missing_task_warnings(app):
                    print(line, file=sys.stderr)
        elif action == "stop":
            if app.is_running:
                app.shut_down()
                print("scheduler stopped")
            else:
                print("the scheduler is not running")
        elif action == "restart":
            if app.is_running:
                app.shut_down()
            app.start()
            print("scheduler restarted")
            for line in missing_task_warnings(app):
                print(line, file=sys.stderr)
        elif action == "status":
            print(scheduler_status_line(app))
        elif action == "panel":
            from . import panel

            return panel(app)
        else:
            raise UsageError(
                f"%scheduler: unknown action {action!r}; expected start, stop, restart, "
                "status or panel"
            )
        return None


def scheduler_status_line(app: RedEngine) -> str:
    tasks = list(app.session.tasks)
    running = [t.name for t in tasks if t.is_running]
    disabled = sum(1 for t in tasks if t.disabled)
    state = "running" if app.is_running else "stopped"
    text = f"scheduler {state}; {len(tasks)} tasks ({disabled} disabled)"
    if running:
        text += "; running now: " + ", ".join(repr(n) for n in running)
    fleet = fleet_line(app)
    if fleet:
        text += "\n" + fleet
    return text


def fleet_line(app: RedEngine) -> str:
    """``schedulers on this log: host:1 (this one), host:2 (expired)`` when the run log
    is shared (the panel's rule, :func:`~.viewmodel.scheduler_items`), else ""."""
    from .reads import SessionReads
    from .viewmodel import scheduler_items

    reads = SessionReads(app.session, app)
    items = scheduler_items(reads.schedulers(), shared=reads.shared(), tz=reads.tz, now=reads.now())
    if not items:
        return ""
    parts = []
    for item in items:
        words = [w for w in ("this one" if item["this"] else "", item["state"]) if w != "alive"]
        words = [w for w in words if w]
        parts.append(item["name"] + (f" ({', '.join(words)})" if words else ""))
    return "schedulers on this log: " + ", ".join(parts)


def task_log_frame(app: RedEngine, name: str, *, limit: int = 20) -> Any:
    """A task's runs, newest last: run_id, action, start, end, runtime, output, traceback.

    The columns keep ``get_task_log()``'s names (a run's outcome is its ``action``, as in
    Red Engine's logs), except ``exc_text``, shown as ``traceback``.
    """
    from .reads import SessionReads

    frame = app.session.get_task_log(task=name)
    if limit > 0:
        frame = frame.tail(limit)
    columns = {
        "run_id": "run_id",
        "action": "action",
        "start": "start",
        "end": "end",
        "runtime": "runtime",
        "scheduler": "scheduler",
        "output": "output",
        "exc_text": "traceback",
    }
    # Which scheduler ran each run (host:pid), from the runs' owners.
    records = app.runlog.records(task=name, limit=limit if limit > 0 else None)
    names = SessionReads(app.session, app).scheduler_names(r.owner for r in records)
    owner_of = {r.run_id: names.get(r.owner or "", "") for r in records}
    frame = frame.assign(scheduler=[owner_of.get(str(i), "") for i in frame["run_id"]])
    present = [c for c in columns if c in frame.columns]
    return frame[present].rename(columns=columns).reset_index(drop=True)


def format_task_log(frame: Any, name: str) -> str:
    if len(frame) == 0:
        return f"{name!r} has no runs yet"
    parts: list[str] = []
    for row in frame.itertuples(index=False):
        runtime = getattr(row, "runtime", None)
        took = "" if runtime is None or runtime != runtime else f" in {runtime:.3f}s"
        start = row.start.strftime("%Y-%m-%d %H:%M:%S") if hasattr(row.start, "strftime") else "-"
        where = getattr(row, "scheduler", "")
        on = f" on {where}" if isinstance(where, str) and where else ""
        parts.append(f"--- {row.action} at {start}{took}{on} (run {row.run_id})")
        output = getattr(row, "output", None)
        if isinstance(output, str) and output:
            parts.append(output.rstrip("\n"))
        tb = getattr(row, "traceback", None)
        if isinstance(tb, str) and tb:
            parts.append(tb.rstrip("\n"))
    return "\n".join(parts)


_CELL_STYLE = "text-align: left; padding: 2px 8px; white-space: nowrap"


class TasksTable:
    """What ``%tasks`` shows: a coloured HTML table in a notebook, aligned text elsewhere.

    ``frame`` holds the texts shown (a DataFrame of strings); ``app.session.status()`` is
    the raw table for code."""

    def __init__(self, frame: Any, badges: list[str], footer: str = "") -> None:
        self.frame = frame
        self._badges = badges
        #: A line under the table (the schedulers on a shared log), or "".
        self.footer = footer

    def styler(self) -> Any:
        from .protocol import COLOURS

        def colour(column: Any) -> list[str]:
            return [
                f"background-color: {COLOURS[b]}; color: white; font-weight: 600"
                if b in COLOURS
                else ""
                for b in self._badges
            ]

        return (
            self.frame.style.hide(axis="index")
            .apply(colour, subset=["status"])
            .set_table_styles(
                [{"selector": "td, th", "props": "text-align: left; padding: 2px 8px"}]
            )
        )

    def _repr_html_(self) -> str:
        import html as markup

        table: str = self.styler().to_html()
        if self.footer:
            table += f"<p>{markup.escape(self.footer)}</p>"
        return table

    def __repr__(self) -> str:
        text: str = "no tasks" if len(self.frame) == 0 else self.frame.to_string(index=False)
        return f"{text}\n{self.footer}" if self.footer else text

    def __len__(self) -> int:
        return len(self.frame)


def tasks_table(app: RedEngine) -> TasksTable:
    """The ``%tasks`` table of ``app``'s session (see :class:`TasksTable`)."""
    import pandas as pd

    from .protocol import format_relative
    from .reads import SessionReads
    from .viewmodel import badge_for, format_clock, format_runtime

    reads = SessionReads(app.session, app)
    now, tz = reads.now(), reads.tz

    def when(ts: float | None, *, due: bool = False) -> str:
        if ts is None:
            return ""
        if due and ts <= now:
            return "due now"
        return f"{format_clock(ts, tz, now)} ({format_relative(ts, now)})"

    rows = []
    badges = []
    for t in reads.tasks():
        badge = badge_for(t.status, is_running=t.is_running, disabled=t.disabled)
        badges.append(badge)
        due = "" if t.disabled else (when(t.next_due, due=True) or "on event")
        rows.append(
            {
                "task": t.name,
                "condition": t.condition,
                "status": badge,
                "last run": when(t.last_run),
                "next due": due,
                "took": format_runtime(t.runtime),
                "runs": str(t.runs),
                "fails": str(t.fails) if t.fails else "",
            }
        )
    columns = ["task", "condition", "status", "last run", "next due", "took", "runs", "fails"]
    return TasksTable(pd.DataFrame(rows, columns=columns), badges, fleet_line(app))
