"""The panel's view-model: the session's state as plain, JSON-ready rows.

Pure functions only: no widgets, no IPython, no threads. :func:`build_snapshot` turns what
the session reports (its ``status()`` rows and ``get_task_log()`` records, as DataFrames or
lists of mappings) into a :class:`Snapshot`; the widget sends ``snapshot.data`` to the front
end as is and compares :meth:`Snapshot.key` with what it sent last, so nothing is sent when
nothing changed.

Times travel as epoch seconds plus a clock text in the session's timezone; text relative to
now ("3 s ago", "in 5 min") is made by :func:`format_relative` here and by the same rule in
``js/panel.js``, which re-renders it every second without a round trip.

Text from tasks and users (names, conditions, output, tracebacks) is carried raw in the data
(the front end shows it with ``textContent``) and escaped with :func:`html.escape` wherever
this module writes markup (:func:`timeline_svg`, :func:`render_html`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

__all__ = [
    "BADGES",
    "OUTPUT_LIMIT",
    "RUNS_LIMIT",
    "TIMELINE_WINDOW",
    "Snapshot",
    "badge_for",
    "build_snapshot",
    "format_clock",
    "format_next_due",
    "format_relative",
    "format_runtime",
    "iter_names",
    "render_html",
    "runs_for",
    "task_rows",
    "timeline_bars",
    "timeline_svg",
]

#: Seconds of history the timeline shows.
TIMELINE_WINDOW = 3600.0
#: How many of the selected task's runs are shown.
RUNS_LIMIT = 20
#: Characters of output or traceback kept per run (the tail).
OUTPUT_LIMIT = 4000

#: Badge kinds and their colours (the front end has the same table in CSS).
BADGES: dict[str, str] = {
    "running": "#1f6feb",
    "success": "#1a7f37",
    "fail": "#cf222e",
    "terminate": "#bc4c00",
    "inaction": "#6e7781",
    "crash": "#8250df",
    "disabled": "#57606a",
    "new": "#8c959f",
}


def _ts(value: Any) -> float | None:
    """Epoch seconds from a datetime / pandas Timestamp / number; ``None`` for None, NaT, NaN."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value != value:  # NaT
            return None
        return value.timestamp()
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if math.isnan(value) else float(value)
    stamp = getattr(value, "timestamp", None)
    if callable(stamp):
        try:
            if value != value:
                return None
            result = stamp()
        except (TypeError, ValueError):
            return None
        return float(result) if isinstance(result, int | float) else None
    return None


def _num(value: Any) -> float | None:
    """A float from a number or a timedelta; ``None`` for missing values."""
    if value is None or isinstance(value, bool):
        return None
    seconds = getattr(value, "total_seconds", None)
    if callable(seconds):
        try:
            value = seconds()
        except (TypeError, ValueError):
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _int(value: Any) -> int:
    number = _num(value)
    return 0 if number is None else int(number)


def _flag(value: Any) -> bool:
    if value is None:
        return False
    try:
        if value != value:
            return False
    except (TypeError, ValueError):
        return False
    return bool(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def _records(table: Any) -> list[Mapping[str, Any]]:
    """Rows of a DataFrame (``to_dict('records')``) or an iterable of mappings."""
    if table is None:
        return []
    to_dict = getattr(table, "to_dict", None)
    if callable(to_dict) and not isinstance(table, Mapping):
        rows = to_dict("records")
        return [dict(r) for r in rows]
    return [dict(r) for r in table]


def _tail(text: str, limit: int = OUTPUT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :]


# --- time text ---------------------------------------------------------------------------


def format_clock(ts: float | None, tz: tzinfo | None, now: float | None = None) -> str:
    """Clock text of an instant in ``tz``: ``09:12:03`` on the same day as ``now``, else
    ``2024-03-09 09:12``; empty for ``None``."""
    if ts is None:
        return ""
    moment = datetime.fromtimestamp(ts, tz)
    if now is not None and datetime.fromtimestamp(now, tz).date() == moment.date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def _span(seconds: float) -> str:
    """``3 s``, ``5 min``, ``2 h``, ``3 d``, rounded down to the largest unit."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def format_relative(ts: float | None, now: float) -> str:
    """``3 s ago`` / ``in 5 min`` / ``now``; empty for ``None``.

    Within a second either way is ``now``. ``js/panel.js`` implements the same rule.
    """
    if ts is None:
        return ""
    delta = ts - now
    if abs(delta) < 1:
        return "now"
    return f"in {_span(delta)}" if delta > 0 else f"{_span(delta)} ago"


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


def format_next_due(ts: float | None, now: float) -> str:
    """``due now`` when it is at or before now, ``in 5 min`` later, ``on event`` for ``None``."""
    if ts is None:
        return "on event"
    if ts <= now:
        return "due now"
    return format_relative(ts, now)


# --- rows --------------------------------------------------------------------------------


def badge_for(status: str | None, *, is_running: bool, disabled: bool) -> str:
    """The badge a task shows: running, then disabled, then its last outcome, else ``new``."""
    if is_running:
        return "running"
    if disabled:
        return "disabled"
    if status and status in BADGES:
        return status
    return "new"


def task_rows(status: Any, tz: tzinfo | None, now: float) -> list[dict[str, Any]]:
    """One JSON-ready row per task from ``session.status()`` (a DataFrame or mappings)."""
    rows: list[dict[str, Any]] = []
    for rec in _records(status):
        is_running = _flag(rec.get("is_running"))
        disabled = _flag(rec.get("disabled"))
        last_status = _text(rec.get("status")) or None
        last_run = _ts(rec.get("last_run"))
        next_due = _ts(rec.get("next_due"))
        running_since = _ts(rec.get("running_since")) if is_running else None
        rows.append(
            {
                "name": _text(rec.get("name")),
                "condition": _text(rec.get("condition")),
                "badge": badge_for(last_status, is_running=is_running, disabled=disabled),
                "status": last_status or "",
                "is_running": is_running,
                "disabled": disabled,
                "running_since": running_since,
                "last_run": last_run,
                "last_run_clock": format_clock(last_run, tz, now),
                "next_due": None if disabled else next_due,
                "next_due_clock": "" if disabled else format_clock(next_due, tz, now),
                "runtime": _num(rec.get("runtime")),
                "runs": _int(rec.get("runs")),
                "fails": _int(rec.get("fails")),
                "execution": _text(rec.get("execution")),
                "priority": _int(rec.get("priority")),
            }
        )
    return rows


def timeline_bars(
    log: Any, now: float, window: float = TIMELINE_WINDOW, names: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Runs that overlap ``[now - window, now]``, grouped by task.

    Returns ``[{"name": task, "bars": [{"start", "end", "outcome", "run_id"}]}]`` in the order
    of ``names`` (then any other task in the log); a live run ends at ``now`` and has outcome
    ``running``. Times are epoch seconds, clipped to the window.
    """
    since = now - window
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for rec in _records(log):
        start = _ts(rec.get("start")) or _ts(rec.get("created"))
        if start is None:
            continue
        action = _text(rec.get("action")) or "run"
        end = _ts(rec.get("end"))
        live = action == "run" or end is None
        stop = now if live else end
        assert stop is not None
        if stop < since or start > now:
            continue
        groups.setdefault(_text(rec.get("task_name")), []).append(
            {
                "start": max(start, since),
                "end": min(max(stop, start), now),
                "outcome": "running" if live else action,
                "run_id": _text(rec.get("run_id")),
            }
        )
    return [{"name": name, "bars": bars} for name, bars in groups.items()]


def runs_for(
    log: Any, task: str, tz: tzinfo | None, now: float, limit: int = RUNS_LIMIT
) -> list[dict[str, Any]]:
    """The task's most recent runs, newest first, with output and traceback (their tails)."""
    runs: list[dict[str, Any]] = []
    for rec in _records(log):
        if _text(rec.get("task_name")) != task:
            continue
        start = _ts(rec.get("start")) or _ts(rec.get("created"))
        end = _ts(rec.get("end"))
        runtime = _num(rec.get("runtime"))
        if runtime is None and start is not None and end is not None:
            runtime = end - start
        runs.append(
            {
                "run_id": _text(rec.get("run_id")),
                "action": _text(rec.get("action")) or "run",
                "start": start,
                "start_clock": format_clock(start, tz, now),
                "end": end,
                "runtime": runtime,
                "runtime_text": format_runtime(runtime),
                "output": _tail(_text(rec.get("output"))),
                "exc_text": _tail(_text(rec.get("exc_text"))),
            }
        )
    runs.reverse()  # the log is newest last; the stable sort keeps that order among ties
    runs.sort(key=lambda r: r["start"] or 0.0, reverse=True)
    return runs[:limit]


# --- the snapshot ------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the panel shows at one instant; ``data`` is JSON-ready and sent as is."""

    data: dict[str, Any]

    def key(self) -> dict[str, Any]:
        """The data without ``now``: equal keys mean nothing worth sending has changed."""
        return {k: v for k, v in self.data.items() if k != "now"}

    def same_as(self, other: Snapshot | None) -> bool:
        return other is not None and self.key() == other.key()


def build_snapshot(
    status: Any,
    log: Any,
    *,
    now: datetime,
    scheduler_running: bool,
    selected: str = "",
    runs: Any = None,
    window: float = TIMELINE_WINDOW,
    cluster: Mapping[str, Any] | None = None,
) -> Snapshot:
    """The whole panel's data from the session's status rows and run log.

    ``now`` is the session clock's aware now (its timezone is the one clock texts use);
    ``log`` holds at least the runs of the last ``window`` seconds (the timeline); ``runs``
    the selected task's recent runs (default: taken from ``log``); ``cluster`` the Dask
    cluster of ``dask`` runs (``session.dask_cluster()``), shown once a run has used it.
    """
    tz = now.tzinfo
    ts_now = now.timestamp()
    rows = task_rows(status, tz, ts_now)
    names = [row["name"] for row in rows]
    if selected not in names:
        selected = ""
    log_rows = _records(log)
    data: dict[str, Any] = {
        "now": ts_now,
        "tz": getattr(tz, "key", None) or str(tz),
        "scheduler": {"running": bool(scheduler_running)},
        "tasks": rows,
        "timeline": {
            "window": window,
            "tasks": timeline_bars(log_rows, ts_now, window, names),
        },
        "selected": selected,
        "runs": runs_for(log_rows if runs is None else runs, selected, tz, ts_now)
        if selected
        else [],
    }
    shown = cluster_data(cluster)
    if shown is not None:  # only once a Dask run has used the cluster
        data["scheduler"]["cluster"] = shown
    return Snapshot(data)


def cluster_data(cluster: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The Dask cluster as the panel shows it: address, worker count, dashboard link (only
    an http(s) URL: anything else is dropped, never made a link)."""
    if not cluster:
        return None
    dashboard = _text(cluster.get("dashboard"))
    if not dashboard.startswith(("http://", "https://")):
        dashboard = ""
    return {
        "address": _text(cluster.get("address")),
        "workers": _int(cluster.get("workers")),
        "dashboard": dashboard,
    }


# --- markup (escaped) --------------------------------------------------------------------

_OUTCOME_COLOURS = {**BADGES, "running": BADGES["running"]}


def timeline_svg(snapshot: Snapshot, width: int = 600, row_height: int = 18) -> str:
    """The timeline as an SVG string; every task name is escaped."""
    data = snapshot.data
    now = float(data["now"])
    window = float(data["timeline"]["window"])
    label_w = 140
    lanes = data["timeline"]["tasks"]
    height = max(1, len(lanes)) * row_height + 4
    scale = (width - label_w) / window
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rnb-timeline" width="{width}" '
        f'height="{height}" role="img" aria-label="runs in the last {int(window // 60)} minutes">'
    ]
    for index, lane in enumerate(lanes):
        y = index * row_height + 2
        name = html.escape(str(lane["name"]))
        parts.append(f'<text x="0" y="{y + row_height - 6}" font-size="11">{name}</text>')
        for bar in lane["bars"]:
            x = label_w + (float(bar["start"]) - (now - window)) * scale
            w = max(2.0, (float(bar["end"]) - float(bar["start"])) * scale)
            colour = _OUTCOME_COLOURS.get(str(bar["outcome"]), "#8c959f")
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_height - 6}" '
                f'fill="{colour}"><title>{name}: {html.escape(str(bar["outcome"]))}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def render_html(snapshot: Snapshot) -> str:
    """A static HTML view of the snapshot (for front ends without widgets); all escaped."""
    data = snapshot.data
    now = float(data["now"])
    esc = html.escape
    state = "running" if data["scheduler"]["running"] else "stopped"
    out = [
        f'<div class="rnb-panel rnb-static"><p>Scheduler: {state}</p>',
        _cluster_html(data["scheduler"].get("cluster")),
        "<table>",
        "<tr><th>task</th><th>condition</th><th>status</th><th>last run</th>"
        "<th>next due</th><th>runtime</th><th>runs</th><th>fails</th></tr>",
    ]
    for row in data["tasks"]:
        out.append(
            f'<tr data-task="{esc(row["name"])}"><td>{esc(row["name"])}</td>'
            f"<td><code>{esc(row['condition'])}</code></td>"
            f'<td><span class="rnb-badge" style="background:{BADGES[row["badge"]]}">'
            f"{esc(row['badge'])}</span></td>"
            f"<td>{esc(format_relative(row['last_run'], now))}</td>"
            f"<td>{esc(format_next_due(row['next_due'], now) if not row['disabled'] else '')}</td>"
            f"<td>{esc(format_runtime(row['runtime']))}</td>"
            f"<td>{row['runs']}</td><td>{row['fails']}</td></tr>"
        )
    out.append("</table>")
    out.append(timeline_svg(snapshot))
    for run in data["runs"]:
        out.append(
            f"<details><summary>{esc(run['start_clock'])} {esc(run['action'])} "
            f"{esc(run['runtime_text'])}</summary><pre>{esc(run['output'])}</pre>"
            f"<pre>{esc(run['exc_text'])}</pre></details>"
        )
    out.append("</div>")
    return "".join(out)


def _cluster_html(cluster: Mapping[str, Any] | None) -> str:
    if not cluster:
        return ""
    esc = html.escape
    text = f"Dask cluster: <code>{esc(cluster['address'])}</code>, {cluster['workers']} workers"
    if cluster["dashboard"]:
        link = esc(cluster["dashboard"], quote=True)
        text += f' (<a href="{link}" target="_blank" rel="noopener">dashboard</a>)'
    return f'<p class="rnb-cluster">{text}</p>'


def iter_names(snapshot: Snapshot) -> Iterable[str]:
    """Task names in the snapshot, in display order."""
    return (row["name"] for row in snapshot.data["tasks"])
