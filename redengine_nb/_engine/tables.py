"""The session's tables: the status of each task and the run log, as DataFrames."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..records import Action

if TYPE_CHECKING:
    import pandas as pd

    from .session import Session

__all__ = ["LOG_COLUMNS", "STATUS_COLUMNS", "log_frame", "status_frame"]

log = logging.getLogger("redengine_nb.session")  # one logger for all the parts of the session

STATUS_COLUMNS = [
    "name",
    "condition",
    "status",
    "last_run",
    "last_success",
    "last_fail",
    "next_due",
    "is_running",
    "disabled",
    "execution",
    "runs",
    "fails",
    "runtime",
    "priority",
    "running_since",
]
LOG_COLUMNS = [
    "task_name",
    "run_id",
    "action",
    "created",
    "start",
    "end",
    "runtime",
    "exc_text",
    "output",
]


def _runtime_of(session: Session, name: str) -> float | None:
    known = session.ends.last_runtime
    if name in known:
        return known[name]
    for record in reversed(session.runlog.records(task=name, limit=3)):
        if record.action is not Action.RUN and record.runtime is not None:
            known[name] = record.runtime
            return record.runtime
    return None


def status_frame(session: Session) -> pd.DataFrame:
    """One row per task: what it is, how it went, when it is next due."""
    import pandas as pd

    rows = []
    now = session.now()
    for task in session.tasks:
        try:
            nxt = (
                now
                if session._has_forced(task)
                else task.start_cond.next_due(session._context(task.name, now))
            )
        except Exception as exc:
            log.debug("next_due of %r raised: %s", task.name, exc)
            nxt = None
        rows.append(
            {
                "name": task.name,
                "condition": str(task.start_cond),
                "status": task.status,
                "last_run": task.last_run,
                "last_success": task.last_success,
                "last_fail": task.last_fail,
                "next_due": None if task.disabled else nxt,
                "is_running": task.is_running,
                "disabled": task.disabled,
                "execution": task.execution,
                "runs": session.runlog.count(task.name, Action.RUN),
                "fails": session.runlog.count(task.name, Action.FAIL),
                "runtime": _runtime_of(session, task.name),
                "priority": task.priority,
                "running_since": task.running_since,
            }
        )
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def log_frame(
    session: Session,
    task: str | None = None,
    action: str | Action | None = None,
    since: Any = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Run records as a DataFrame, newest last."""
    import pandas as pd

    from ..timetext import parse_datetime

    act = None if action is None else Action.parse(action)
    since_ts: float | None
    if since is None:
        since_ts = None
    elif isinstance(since, int | float):
        since_ts = float(since)
    else:
        since_ts = parse_datetime(since, session.tz).timestamp()
    records = session.runlog.records(task=task, action=act, since=since_ts, limit=limit)
    rows = [r.as_dict(session.tz) for r in records]
    return pd.DataFrame(rows, columns=LOG_COLUMNS)
