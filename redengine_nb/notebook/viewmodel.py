"""The panel's view-model: typed session reads in, the protocol's JSON-ready shapes out.

Pure functions only: no widgets, no IPython, no threads. :func:`build_snapshot` turns what
:class:`~redengine_nb.notebook.reads.SessionReads` reports (task states, run records,
the scheduler's state) into a :class:`Snapshot` whose ``data`` is a
:class:`~redengine_nb.notebook.protocol.PanelData`; the widget sends it as is and compares
:meth:`Snapshot.key` with what it sent last, so nothing is sent when nothing changed.

Every text the front end draws is made here (clock times, run lengths, hover texts), except
text relative to now, which the browser re-makes each second from
:data:`~redengine_nb.notebook.protocol.TIME_UNITS`. Text from tasks and users (names,
conditions, output, tracebacks) is carried raw; the front end shows it with
``textContent`` and rich output only inside a sandboxed frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from ..records import Action, RunRecord
from .protocol import (
    COLOURS,
    Bar,
    ClusterItem,
    DisplayItem,
    Lane,
    PanelData,
    RunItem,
    SchedulerItem,
    SchedulerState,
    TaskRow,
    Timeline,
)
from .reads import ClusterView, SchedulerLease, SchedulerView, TaskState

__all__ = [
    "HORIZON",
    "OUTPUT_LIMIT",
    "RUNS_LIMIT",
    "TIMELINE_RUNS",
    "Snapshot",
    "badge_for",
    "build_snapshot",
    "cluster_item",
    "format_clock",
    "format_runtime",
    "run_items",
    "scheduler_items",
    "scheduler_state",
    "scheduler_warning",
    "task_rows",
    "timeline",
]

#: Seconds of history the timeline can show (its widest zoom).
HORIZON = 86400.0
#: Runs the timeline holds at most (the newest).
TIMELINE_RUNS = 2000
#: How many of the selected task's runs are shown.
RUNS_LIMIT = 20
#: Characters of output or traceback kept per run (the tail).
OUTPUT_LIMIT = 4000


def _tail(text: str | None, limit: int = OUTPUT_LIMIT) -> str:
    if not text:
        return ""
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :]


# --- time text ---------------------------------------------------------------------------


def format_clock(ts: float | None, tz: tzinfo | None, now: float | None = None) -> str:
    """Clock text of an instant in ``tz``: ``09:12:03`` on the same day as ``now``, else
    ``2024-03-09 09:12:03``; empty for ``None``."""
    if ts is None:
        return ""
    moment = datetime.fromtimestamp(ts, tz)
    if now is not None and datetime.fromtimestamp(now, tz).date() == moment.date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def format_runtime(seconds: float | None) -> str:
    """A run's length: ``0.12 s``, ``4.5 s``, ``12 s``, ``3 min 5 s``, ``2 h 10 min``."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        minutes, secs = divmod(int(seconds), 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, rest = divmod(int(seconds), 3600)
    minutes = rest // 60
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


# --- rows --------------------------------------------------------------------------------


def badge_for(
    status: str | None, *, is_running: bool, disabled: bool, terminating: bool = False
) -> str:
    """The badge a task shows: terminating, running, disabled, its last outcome, else new."""
    if is_running:
        return "terminating" if terminating else "running"
    if disabled:
        return "disabled"
    if status and status in COLOURS:
        return status
    return "new"


def _warning(missing: Sequence[str]) -> str:
    if not missing:
        return ""
    names = ", ".join(repr(n) for n in missing)
    noun = "task" if len(missing) == 1 else "tasks"
    return f"its condition names {noun} {names}, which this session does not have"


def task_rows(
    tasks: Sequence[TaskState], tz: tzinfo | None, now: float, terminating: Sequence[str] = ()
) -> list[TaskRow]:
    """One row per task, in the session's order."""
    asked = set(terminating)

    def upcoming(t: TaskState) -> float | None:
        # "Due now" stays the same text as time passes: no value that moves with now.
        if t.disabled or t.next_due is None or t.next_due <= now:
            return None
        return t.next_due

    return [
        TaskRow(
            name=t.name,
            condition=t.condition,
            badge=badge_for(
                t.status,
                is_running=t.is_running,
                disabled=t.disabled,
                terminating=t.name in asked,
            ),
            status=t.status or "",
            is_running=t.is_running,
            disabled=t.disabled,
            running_since=t.running_since if t.is_running else None,
            last_run=t.last_run,
            last_run_clock=format_clock(t.last_run, tz, now),
            next_due=upcoming(t),
            next_due_clock=format_clock(upcoming(t), tz, now),
            due_now=not t.disabled and t.next_due is not None and t.next_due <= now,
            runtime_text=format_runtime(t.runtime),
            runs=t.runs,
            fails=t.fails,
            execution=t.execution,
            warning=_warning(t.missing),
        )
        for t in tasks
    ]


def timeline(
    records: Sequence[RunRecord],
    now: float,
    names: Sequence[str],
    tz: tzinfo | None,
    horizon: float = HORIZON,
    terminating: Sequence[str] = (),
) -> Timeline:
    """One lane per task of ``names`` (this session's tasks only) with its runs of the last
    ``horizon`` seconds; a live run has outcome ``running`` (``terminating`` for a task of
    ``terminating``) and is drawn up to the browser's now."""
    since = now - horizon
    lanes: dict[str, list[Bar]] = {name: [] for name in names}
    first: float | None = None
    last: float | None = None
    for rec in records:
        bars = lanes.get(rec.task_name)
        if bars is None:
            continue
        start = rec.start if rec.start is not None else rec.created
        live = rec.action is Action.RUN or rec.end is None
        stop = now if live else rec.end
        assert stop is not None
        if stop < since or start > now:
            continue
        when = format_clock(start, tz, now)
        if live:  # drawn up to the browser's now; the data stays the same as time passes
            start = max(start, since)
            outcome = "terminating" if rec.task_name in terminating else "running"
            stop, took = start, outcome
        else:
            took = format_runtime(stop - start)
            start = max(start, since)
            stop = min(max(stop, start), now)
            outcome = rec.action.value
        bars.append(
            Bar(
                start=start,
                end=stop,
                outcome=outcome,
                run_id=rec.run_id,
                label=f"{rec.task_name} · {when} · {outcome}" + ("" if live else f" · {took}"),
            )
        )
        first = start if first is None else min(first, start)
        if not live:
            last = stop if last is None else max(last, stop)
    return Timeline(
        first=first,
        last=last,
        horizon=horizon,
        lanes=[Lane(name=name, bars=bars) for name, bars in lanes.items()],
    )


_DEFAULT_REPR = re.compile(r"^<[\w.]+ object( at 0x[0-9a-fA-F]+)?>$")


def run_items(
    records: Sequence[RunRecord],
    tz: tzinfo | None,
    now: float,
    *,
    live_output: Callable[[str], str | None] = lambda run_id: None,
    displays: Callable[[str], list[DisplayItem]] = lambda run_id: [],
    notes: Callable[[str], str] = lambda run_id: "",
    schedulers: Mapping[str, str] | None = None,
    limit: int = RUNS_LIMIT,
) -> list[RunItem]:
    """A task's most recent runs, newest first, with output and traceback (their tails).

    A live run's output is what it printed so far (``live_output``); ``displays`` gives a
    run's rich displays, ``notes`` a line about it (say, its late outcome); ``schedulers``
    the ``host:pid`` of each run's owner (see
    :meth:`~redengine_nb.notebook.reads.SessionReads.scheduler_names`)."""
    names = schedulers or {}
    items: list[RunItem] = []
    ordered = sorted(
        records,
        key=lambda r: r.start if r.start is not None else r.created,
        reverse=True,
    )
    for rec in ordered[:limit]:
        start = rec.start if rec.start is not None else rec.created
        live = rec.action is Action.RUN
        output = live_output(rec.run_id) if live else rec.output
        items.append(
            RunItem(
                run_id=rec.run_id,
                action="running" if live else rec.action.value,
                live=live,
                start=start,
                start_clock=format_clock(start, tz, now),
                # A live run's length is written by the browser, from ``start``.
                runtime_text="" if live else format_runtime(rec.runtime),
                output=_tail(output),
                exc_text=_tail(rec.exc_text),
                note=notes(rec.run_id),
                displays=displays(rec.run_id),
                scheduler=names.get(rec.owner or "", ""),
            )
        )
    return items


def scheduler_items(
    leases: Sequence[SchedulerLease], *, shared: bool, tz: tzinfo | None, now: float
) -> list[SchedulerItem]:
    """The schedulers on the run log, shown when there is more than one or the log is
    shared (a lone scheduler on its own log shows nothing); this one first, then by age."""
    if len(leases) <= 1 and not shared:
        return []
    ordered = sorted(leases, key=lambda lease: (not lease.this, lease.started, lease.lease_id))
    return [
        SchedulerItem(
            name=lease.name,
            state="alive" if lease.alive else "expired",
            this=lease.this,
            lease=lease.lease_id[:9],
            since_clock=format_clock(lease.started, tz, now),
        )
        for lease in ordered
    ]


_WEB_URL = re.compile(r"^https?://[^\s\x00-\x1f\x7f]+$", re.IGNORECASE)


def cluster_item(cluster: ClusterView | None) -> ClusterItem | None:
    """The cluster line's data; the dashboard only when it is an ``http(s)`` URL (a
    ``javascript:`` or other link is dropped, not shown)."""
    if cluster is None:
        return None
    dashboard = cluster.dashboard or ""
    return ClusterItem(
        address=cluster.address,
        workers=max(0, cluster.workers),
        dashboard=dashboard if _WEB_URL.match(dashboard) else "",
    )


def scheduler_warning(clock_step: str | None, store_error: str | None) -> str:
    """The scheduler bar's warning: one line per problem the operator must know (a backward
    clock step beyond the tolerance, a run log that refuses writes), "" when none."""
    lines = []
    if clock_step:
        lines.append(f"clock step: {clock_step}")
    if store_error:
        lines.append(f"run log write error (run outcomes are kept and retried): {store_error}")
    return "\n".join(lines)


def scheduler_state(view: SchedulerView) -> SchedulerState:
    """``running`` / ``stopped``, or ``stopping…`` / ``restarting…`` with what it waits for;
    with :func:`scheduler_warning` in every state."""
    warning = scheduler_warning(view.clock_step, view.store_error)
    dismissible = bool(view.clock_step)
    if not view.running:
        return SchedulerState(state="stopped", detail="", warning=warning, dismissible=dismissible)
    if view.stop_requested:
        state = "restarting" if view.restart_requested else "stopping"
        live = view.live_runs
        if not live:
            return SchedulerState(state=state, detail="", warning=warning, dismissible=dismissible)
        noun = "run" if len(live) == 1 else "runs"
        detail = f"waiting for {len(live)} {noun}: " + ", ".join(live)
        return SchedulerState(state=state, detail=detail, warning=warning, dismissible=dismissible)
    return SchedulerState(state="running", detail="", warning=warning, dismissible=dismissible)


# --- the snapshot ------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the panel shows at one instant; ``data`` is JSON-ready and sent as is."""

    data: PanelData

    def key(self) -> dict[str, Any]:
        """The data without ``now``: equal keys mean nothing worth sending has changed."""
        data: dict[str, Any] = dict(self.data)
        data.pop("now", None)
        return data

    def same_as(self, other: Snapshot | None) -> bool:
        return other is not None and self.key() == other.key()


def build_snapshot(
    tasks: Sequence[TaskState],
    log: Sequence[RunRecord],
    *,
    now: float,
    tz: tzinfo | None,
    scheduler: SchedulerView | SchedulerState,
    selected: str = "",
    runs: Sequence[RunItem] = (),
    terminating: Sequence[str] = (),
    horizon: float = HORIZON,
    note: str = "",
    schedulers: Sequence[SchedulerItem] = (),
    cluster: ClusterItem | None = None,
) -> Snapshot:
    """The whole panel's data.

    ``log`` holds the runs of the last ``horizon`` seconds (the timeline); ``runs`` the
    selected task's recent runs (see :func:`run_items`); ``terminating`` the tasks asked to
    terminate whose run is still alive; ``schedulers`` the fleet (see
    :func:`scheduler_items`), ``cluster`` the Dask cluster (see :func:`cluster_item`)."""
    names = [t.name for t in tasks]
    if selected not in names:
        selected = ""
        runs = ()
    running_now = {t.name for t in tasks if t.is_running}
    asked = [name for name in terminating if name in running_now]
    state = scheduler_state(scheduler) if isinstance(scheduler, SchedulerView) else scheduler
    data = PanelData(
        now=now,
        tz=getattr(tz, "key", None) or str(tz),
        scheduler=state,
        tasks=task_rows(tasks, tz, now, asked),
        timeline=timeline(log, now, names, tz, horizon, asked),
        selected=selected,
        runs=list(runs),
        terminating=asked,
        note=note,
        schedulers=list(schedulers),
        cluster=cluster,
    )
    return Snapshot(data)
