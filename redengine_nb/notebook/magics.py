"""The notebook's magics: ``%%task`` cells, ``%tasks``, ``%task ...`` and ``%scheduler ...``.

:class:`SchedulerMagics` is the thin IPython layer over :func:`register_cell_task` (in
``registration.py``, which knows nothing of IPython: ``redengine-nb serve`` calls it for the
cells of a notebook file), over the readouts of ``readouts.py`` (the ``%tasks`` table, the
status lines, a task's log) and over the session's API. Both modules' names are re-exported.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)

from .cells import (
    TaskCellError,
    parse_task_line,
    task_line_help,
)
from .readouts import (
    TasksTable,
    fleet_line,
    format_task_log,
    scheduler_status_line,
    task_log_frame,
    tasks_table,
)
from .registration import (
    cell_task_names,
    describe_registration,
    missing_task_warnings,
    register_cell_task,
)

if TYPE_CHECKING:
    from .._engine.tasks import BaseTask as Task
    from ..app import RedEngine

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
