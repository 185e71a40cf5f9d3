"""The notebook's magics: ``%%task`` cells, ``%tasks``, ``%task ...`` and ``%scheduler ...``.

Two halves. :func:`register_cell_task` turns a ``%%task`` cell into a task of an app and
knows nothing of IPython: ``redengine-nb serve`` calls it for the cells of a notebook file,
so a cell becomes the same task, under the same name, in a kernel and headless.
:class:`SchedulerMagics` is the thin IPython layer over it and over the session's API.
"""

from __future__ import annotations

import shlex
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .cells import TaskCellError, default_task_name, parse_task_line, task_line_help

if TYPE_CHECKING:
    from ..app import RedEngine
    from ..tasks import Task

__all__ = [
    "cell_task_names",
    "describe_registration",
    "register_cell_task",
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
    line: str,
    body: str,
    *,
    cell_id: str | None,
    namespace: dict[str, Any],
) -> Task:
    """Register the ``%%task`` cell ``line`` / ``body`` as a code task of ``app``.

    ``line`` is the text after ``%%task`` (condition and options, verbatim); ``cell_id``
    identifies the cell when the front end says which one it is (JupyterLab's ``cellId``)
    and ``namespace`` is where thread and main runs execute the body (the notebook's
    ``user_ns``; process runs get a fresh interpreter). The name is ``--name``, else the
    name this cell registered before, else :func:`default_task_name`.

    Re-registering a cell replaces its task (its history is kept: the run log is keyed
    by name). When the cell now asks for another name, the task it registered before is
    deleted once the new one is in. A bad line or condition raises (``TaskCellError``,
    ``ConditionParseError``, ``ValueError``) and changes nothing.
    """
    opts = parse_task_line(line)
    if opts.help:
        raise TaskCellError(task_line_help())
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
        task = _replace_task(app, opts.condition, kwargs)
    else:
        task = app.task(opts.condition, **kwargs)
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


def _replace_task(app: RedEngine, condition: str, kwargs: dict[str, Any]) -> Task:
    """Replace a task this cell owns on an app whose policy is not 'replace'."""
    old = app.session[kwargs["name"]]
    if isinstance(condition, str):
        # Validate before removing anything: a bad condition must leave the old task.
        parse = getattr(app.session, "parse_condition", None) or getattr(app, "parse", None)
        if callable(parse):
            parse(condition)
    app.session.delete_task(old.name)
    return app.task(condition, **kwargs)


def _format_due(when: datetime | None, now: datetime | None) -> str:
    if when is None:
        return "due when an event makes its condition true"
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
    try:
        when = task.next_due()
    except Exception as exc:  # a custom condition may fail; still say what was registered
        return f"{head}; next due unknown ({type(exc).__name__}: {exc})"
    return f"{head}; {_format_due(when, now)}"


def _quote(name: str) -> str:
    return name if shlex.quote(name) == name else shlex.quote(name)
