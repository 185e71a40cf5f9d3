"""A ``%%task`` cell made into a task of an app, knowing nothing of IPython:
``redengine-nb serve`` calls :func:`register_cell_task` for the cells of a notebook file, so
a cell becomes the same task, under the same name, in a kernel and headless. Also the text
that answers a registration. Moved out of ``magics.py``, which re-exports these names."""

from __future__ import annotations

import shlex
import weakref
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
