"""The panel's widget protocol, in one typed place: colours, time units, message shapes.

The kernel side (:mod:`.viewmodel`, :mod:`.widget`) builds these shapes; the front end
(``js/panel.js``) reads :data:`CONSTANTS` from the widget's ``protocol`` trait, so the badge
colours and the rule that turns seconds into "3 s ago" / "in 5 min" are written here only.

Everything the front end draws arrives ready: texts (clock times, run lengths, hover texts)
are made here; only text relative to *now* is re-made in the browser, once a second, from
:data:`TIME_UNITS`, so no message is needed for time to pass.
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "COLOURS",
    "CONSTANTS",
    "TIME_UNITS",
    "WARNING_COLOUR",
    "ZOOMS",
    "Bar",
    "ClusterItem",
    "ControlMessage",
    "DisplayItem",
    "Lane",
    "PanelData",
    "Reply",
    "RunItem",
    "SchedulerItem",
    "SchedulerState",
    "TaskRow",
    "format_next_due",
    "format_relative",
    "span",
]

#: Badge and timeline colours by kind: a run's outcome, or a task's state.
COLOURS: dict[str, str] = {
    "running": "#1f6feb",
    "terminating": "#9a6700",
    "success": "#1a7f37",
    "fail": "#cf222e",
    "terminate": "#bc4c00",
    "inaction": "#6e7781",
    "crash": "#8250df",
    "disabled": "#57606a",
    "new": "#8c959f",
}

#: The scheduler bar's warning line (clock step, run log write error).
WARNING_COLOUR = "#cf222e"

#: ``(below, per, unit)``: a span shorter than ``below`` seconds is written in whole
#: ``per``-second ``unit``s (the last row has no bound).
TIME_UNITS: list[tuple[float | None, float, str]] = [
    (60.0, 1.0, "s"),
    (3600.0, 60.0, "min"),
    (86400.0, 3600.0, "h"),
    (None, 86400.0, "d"),
]

#: The timeline's zoom choices (label, seconds); ``fit`` (the default) fits the runs shown.
ZOOMS: list[tuple[str, float]] = [("5 min", 300.0), ("1 h", 3600.0), ("1 day", 86400.0)]

#: What the front end reads from the ``protocol`` trait.
CONSTANTS: dict[str, object] = {
    "colours": COLOURS,
    "time_units": [list(row) for row in TIME_UNITS],
    "zooms": [list(row) for row in ZOOMS],
    "warning_colour": WARNING_COLOUR,
}


def span(seconds: float) -> str:
    """``3 s``, ``5 min``, ``2 h``, ``3 d``: rounded down to the largest unit."""
    seconds = abs(seconds)
    for below, per, unit in TIME_UNITS:
        if below is None or seconds < below:
            return f"{int(seconds // per)} {unit}"
    raise AssertionError("TIME_UNITS ends with an unbounded row")  # pragma: no cover


def format_relative(ts: float | None, now: float) -> str:
    """``3 s ago`` / ``in 5 min`` / ``now`` (within a second); empty for ``None``."""
    if ts is None:
        return ""
    delta = ts - now
    if abs(delta) < 1:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def format_next_due(ts: float | None, now: float) -> str:
    """``due now`` at or before now, ``in 5 min`` later, ``on event`` for ``None``."""
    if ts is None:
        return "on event"
    if ts <= now:
        return "due now"
    return format_relative(ts, now)


# --- kernel -> front end: the ``data`` trait ------------------------------------------------


class TaskRow(TypedDict):
    name: str
    condition: str
    #: A key of :data:`COLOURS`: what the badge says.
    badge: str
    #: The last finished outcome ("" when it never ran).
    status: str
    is_running: bool
    disabled: bool
    #: Epoch seconds (the front end writes the relative text).
    running_since: float | None
    last_run: float | None
    last_run_clock: str
    #: The next instant it is due, when later than now (``None``: due now, or on event).
    next_due: float | None
    next_due_clock: str
    due_now: bool
    runtime_text: str
    runs: int
    fails: int
    execution: str
    #: Why the row is marked (a condition naming a task that does not exist), or "".
    warning: str


class Bar(TypedDict):
    start: float
    end: float
    #: A run's action, or ``running`` / ``terminating`` while it lives.
    outcome: str
    run_id: str
    #: The hover text: time, status, duration.
    label: str


class Lane(TypedDict):
    name: str
    bars: list[Bar]


class Timeline(TypedDict):
    #: Epoch seconds of the oldest run start kept (``fit`` zoom starts there).
    first: float | None
    #: Epoch seconds of the latest end of a finished run kept (``fit`` ends there).
    last: float | None
    #: Seconds of history the data covers at most.
    horizon: float
    lanes: list[Lane]


class DisplayItem(TypedDict):
    #: ``html`` (shown in a sandboxed frame), ``image`` (a data: URL) or ``text``.
    kind: Literal["html", "image", "text"]
    content: str


class RunItem(TypedDict):
    run_id: str
    action: str
    live: bool
    #: Epoch seconds (a live run's length is written by the front end from it).
    start: float
    start_clock: str
    runtime_text: str
    output: str
    exc_text: str
    note: str
    displays: list[DisplayItem]
    #: ``host:pid`` of the scheduler that ran it ("" when the log does not say).
    scheduler: str


class SchedulerState(TypedDict):
    #: ``running``, ``stopped``, ``stopping``, ``restarting`` or ``disconnected``.
    state: str
    #: What a ``stopping``/``restarting`` scheduler waits for ("2 runs: a, b"), else "".
    detail: str
    #: What the operator must know (a big backward clock step, a run log refusing
    #: writes), one line each joined by newlines; "" when all is well. Shown in
    #: :data:`WARNING_COLOUR`.
    warning: str
    #: Whether the warning holds a clock step the user may dismiss (the panel's ✕ sends
    #: the ``dismiss_warning`` action); a run log write error cannot be dismissed.
    dismissible: bool


class SchedulerItem(TypedDict):
    """One scheduler holding a lease on the run log."""

    #: ``host:pid``.
    name: str
    #: ``alive`` or ``expired`` (not renewed in time: its runs become ``crash``).
    state: str
    #: This session's scheduler.
    this: bool
    #: The lease id's first characters (two schedulers of one process differ by it).
    lease: str
    #: When it took its lease (clock text in the session's timezone).
    since_clock: str


class ClusterItem(TypedDict):
    """The Dask cluster the session's ``dask`` runs use."""

    address: str
    workers: int
    #: The dashboard's URL, only when it is ``http://`` or ``https://`` (else "").
    dashboard: str


class PanelData(TypedDict):
    now: float
    tz: str
    scheduler: SchedulerState
    tasks: list[TaskRow]
    timeline: Timeline
    selected: str
    runs: list[RunItem]
    #: Tasks asked to terminate whose run is still alive.
    terminating: list[str]
    #: Said once under the table: what this panel shows (e.g. only this session's tasks).
    note: str
    #: The schedulers on the run log, when it is shared (else empty: nothing is shown).
    schedulers: list[SchedulerItem]
    #: The Dask cluster, once a ``dask`` run has connected to it (else ``None``).
    cluster: ClusterItem | None


# --- front end -> kernel: custom messages ---------------------------------------------------


class ControlMessage(TypedDict, total=False):
    #: start, stop, restart, select, run, enable, disable, terminate, delete, condition.
    action: str
    task: str
    #: The new condition (``condition``).
    text: str
    #: For ``delete`` of a running task: ``terminate`` its run, or let it ``finish``.
    choice: str


class Reply(TypedDict):
    reply: str
    task: str
    ok: bool
