"""What the magics show for reading: the ``%tasks`` table, the ``%scheduler status`` and
fleet lines, a task's ``%task log``. No IPython here. Moved out of ``magics.py``, which
re-exports these names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import RedEngine


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
    from .viewmodel import scheduler_warning

    warning = scheduler_warning(app.session.clock_step, app.session.store_error)
    if warning:
        text += "\n" + "\n".join(f"warning: {line}" for line in warning.splitlines())
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
