"""The panel's view-model, with plain data: no widgets, no session."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from redengine_nb.notebook import viewmodel as vm

TZ = ZoneInfo("Europe/Helsinki")
NOW = datetime(2024, 3, 10, 9, 0, tzinfo=TZ)
T = NOW.timestamp()
XSS = "<img src=x onerror=alert(1)>"


def status_row(name: str, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "name": name,
        "condition": "every 10 minutes",
        "status": None,
        "last_run": pd.NaT,
        "last_success": pd.NaT,
        "last_fail": pd.NaT,
        "next_due": NOW + timedelta(minutes=5),
        "is_running": False,
        "disabled": False,
        "execution": "thread",
        "runs": 0,
        "fails": 0,
        "runtime": float("nan"),
        "priority": 0,
        "running_since": pd.NaT,
    }
    row.update(kw)
    return row


def log_row(
    task: str, start: float, end: float | None, action: str, **kw: object
) -> dict[str, object]:
    row: dict[str, object] = {
        "task_name": task,
        "run_id": f"{task}-{start}",
        "action": action,
        "created": datetime.fromtimestamp(start, TZ),
        "start": datetime.fromtimestamp(start, TZ),
        "end": None if end is None else datetime.fromtimestamp(end, TZ),
        "runtime": None if end is None else end - start,
        "exc_text": None,
        "output": "",
    }
    row.update(kw)
    return row


# --- time text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (-3, "3 s ago"),
        (-59.9, "59 s ago"),
        (-60, "1 min ago"),
        (-7200, "2 h ago"),
        (-3 * 86400, "3 d ago"),
        (300, "in 5 min"),
        (0.4, "now"),
        (-0.4, "now"),
        (45, "in 45 s"),
    ],
)
def test_format_relative(offset: float, text: str) -> None:
    assert vm.format_relative(T + offset, T) == text


def test_format_relative_of_nothing_is_empty() -> None:
    assert vm.format_relative(None, T) == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.123, "0.12 s"),
        (4.56, "4.6 s"),
        (12.9, "12 s"),
        (185, "3 min 5 s"),
        (120, "2 min"),
        (7800, "2 h 10 min"),
        (3600, "1 h"),
        (-1, "0.00 s"),
        (None, ""),
    ],
)
def test_format_runtime(seconds: float | None, text: str) -> None:
    assert vm.format_runtime(seconds) == text


def test_format_clock_in_session_timezone() -> None:
    ts = datetime(2024, 3, 10, 7, 12, 3, tzinfo=UTC).timestamp()  # 09:12:03 in Helsinki
    assert vm.format_clock(ts, TZ, now=T) == "09:12:03"
    assert vm.format_clock(ts - 86400, TZ, now=T) == "2024-03-09 09:12"
    assert vm.format_clock(ts, ZoneInfo("UTC"), now=T) == "07:12:03"
    assert vm.format_clock(None, TZ, now=T) == ""


def test_next_due_text() -> None:
    assert vm.format_next_due(T + 300, T) == "in 5 min"
    assert vm.format_next_due(T - 5, T) == "due now"
    assert vm.format_next_due(T, T) == "due now"
    assert vm.format_next_due(None, T) == "on event"


# --- rows ----------------------------------------------------------------------------------


def test_rows_for_each_status() -> None:
    statuses = ["success", "fail", "terminate", "inaction", "crash"]
    rows = [status_row(s, status=s, last_run=NOW - timedelta(seconds=30), runs=2) for s in statuses]
    rows.append(status_row("fresh"))
    rows.append(status_row("off", status="success", disabled=True))
    rows.append(
        status_row(
            "busy", status="fail", is_running=True, running_since=NOW - timedelta(seconds=12)
        )
    )
    out = vm.task_rows(pd.DataFrame(rows), TZ, T)
    badges = {r["name"]: r["badge"] for r in out}
    assert badges == {
        **{s: s for s in statuses},
        "fresh": "new",
        "off": "disabled",
        "busy": "running",
    }
    busy = next(r for r in out if r["name"] == "busy")
    assert busy["running_since"] == pytest.approx(T - 12)
    assert busy["status"] == "fail"
    assert next(r for r in out if r["name"] == "success")["last_run_clock"] == "08:59:30"


def test_row_values_are_json_ready_and_missing_values_are_none() -> None:
    out = vm.task_rows([status_row("a", runs=3, fails=1, runtime=timedelta(seconds=2.5))], TZ, T)
    row = out[0]
    assert row["last_run"] is None and row["last_run_clock"] == ""
    assert row["runtime"] == 2.5
    assert (row["runs"], row["fails"]) == (3, 1)
    assert row["next_due"] == pytest.approx(T + 300)
    assert row["next_due_clock"] == "09:05:00"
    assert row["running_since"] is None
    assert all(isinstance(v, str | int | float | bool | type(None)) for v in row.values())


def test_disabled_task_has_no_next_due() -> None:
    row = vm.task_rows([status_row("a", disabled=True)], TZ, T)[0]
    assert row["next_due"] is None and row["next_due_clock"] == ""


def test_no_next_due_means_event_only() -> None:
    row = vm.task_rows([status_row("a", next_due=None)], TZ, T)[0]
    assert row["next_due"] is None


# --- timeline and runs ---------------------------------------------------------------------


def test_timeline_keeps_the_last_hour_and_clips() -> None:
    log = [
        log_row("a", T - 7200, T - 7100, "success"),  # too old
        log_row("a", T - 3700, T - 3500, "fail"),  # straddles the window start
        log_row("a", T - 60, T - 50, "success"),
        log_row("b", T - 30, None, "run"),  # still running
    ]
    lanes = vm.timeline_bars(log, T, 3600, names=["a", "b", "c"])
    assert [lane["name"] for lane in lanes] == ["a", "b", "c"]
    a, b, c = (lane["bars"] for lane in lanes)
    assert [bar["outcome"] for bar in a] == ["fail", "success"]
    assert a[0]["start"] == pytest.approx(T - 3600)
    assert a[1]["end"] == pytest.approx(T - 50)
    assert b == [
        {
            "start": pytest.approx(T - 30),
            "end": pytest.approx(T),
            "outcome": "running",
            "run_id": f"b-{T - 30}",
        }
    ]
    assert c == []


def test_runs_for_selected_task_newest_first_with_output_tail() -> None:
    long = "x" * 10_000 + "END"
    log = [
        log_row("a", T - 100, T - 99, "success", output="first"),
        log_row("b", T - 90, T - 80, "success"),
        log_row("a", T - 50, T - 40, "fail", output=long, exc_text="Traceback ...\nKeyError: 1"),
    ]
    runs = vm.runs_for(log, "a", TZ, T)
    assert [r["action"] for r in runs] == ["fail", "success"]
    assert runs[0]["output"].endswith("END") and len(runs[0]["output"]) == vm.OUTPUT_LIMIT
    assert runs[0]["exc_text"].endswith("KeyError: 1")
    assert runs[0]["runtime_text"] == "10 s"
    assert runs[1]["output"] == "first"
    assert (
        len(vm.runs_for([log_row("a", T - i, T - i, "success") for i in range(50)], "a", TZ, T))
        == vm.RUNS_LIMIT
    )


# --- the snapshot --------------------------------------------------------------------------


def snapshot(now: datetime = NOW, **kw: object) -> vm.Snapshot:
    status = pd.DataFrame([status_row("a", status="success", runs=1), status_row("b")])
    log = pd.DataFrame([log_row("a", T - 60, T - 59, "success", output="hi")])
    args: dict[str, object] = {"scheduler_running": True, "selected": ""}
    args.update(kw)
    return vm.build_snapshot(status, log, now=now, **args)  # type: ignore[arg-type]


def test_snapshot_equal_when_only_time_passed() -> None:
    first = snapshot()
    later = snapshot(now=NOW + timedelta(seconds=1))
    assert first.data["now"] != later.data["now"]
    assert later.same_as(first)


def test_snapshot_differs_on_change() -> None:
    base = snapshot()
    assert not snapshot(scheduler_running=False).same_as(base)
    assert not snapshot(selected="a").same_as(base)
    assert not base.same_as(None)


def test_snapshot_selected_task_runs_and_unknown_selection() -> None:
    snap = snapshot(selected="a")
    assert snap.data["selected"] == "a"
    assert [r["output"] for r in snap.data["runs"]] == ["hi"]
    gone = snapshot(selected="deleted")
    assert gone.data["selected"] == "" and gone.data["runs"] == []
    assert snap.data["tz"] == "Europe/Helsinki"


# --- escaping ------------------------------------------------------------------------------


def test_markup_escapes_everything_from_tasks() -> None:
    status = [status_row(XSS, condition=f"task '{XSS}' has succeeded", status="fail")]
    log = [log_row(XSS, T - 10, T - 5, "fail", output=XSS, exc_text=f"ValueError: {XSS}")]
    snap = vm.build_snapshot(status, log, now=NOW, scheduler_running=False, selected=XSS)
    # The data keeps the raw text: the front end shows it with textContent.
    assert snap.data["tasks"][0]["name"] == XSS
    assert snap.data["runs"][0]["output"] == XSS
    page = vm.render_html(snap)
    svg = vm.timeline_svg(snap)
    for markup in (page, svg):
        assert "<img" not in markup
        assert "&lt;img src=x onerror=alert(1)&gt;" in markup
    assert 'data-task="&lt;img src=x onerror=alert(1)&gt;"' in page


def test_markup_escapes_quotes_in_attributes() -> None:
    snap = vm.build_snapshot([status_row('a" onclick="x')], [], now=NOW, scheduler_running=True)
    assert 'onclick="x' not in vm.render_html(snap)


def test_the_dask_cluster_is_shown_once_used_and_escaped() -> None:
    assert "cluster" not in snapshot().data["scheduler"]  # no Dask run: nothing shown
    assert "Dask" not in vm.render_html(snapshot())
    cluster = {"address": "tcp://10.0.0.5:8786", "workers": 3, "dashboard": "http://h:8787/status"}
    snap = snapshot(cluster=cluster)
    assert snap.data["scheduler"]["cluster"] == cluster
    assert not snap.same_as(snapshot())
    page = vm.render_html(snap)
    assert "tcp://10.0.0.5:8786" in page and "3 workers" in page
    assert 'href="http://h:8787/status"' in page
    evil = {"address": XSS, "workers": 1, "dashboard": "javascript:alert(1)"}
    page = vm.render_html(vm.build_snapshot([], [], now=NOW, scheduler_running=True, cluster=evil))
    assert "<img" not in page and "javascript:" not in page


def test_viewmodel_imports_no_widgets() -> None:
    code = (
        "import sys, redengine_nb.notebook.viewmodel\n"
        "mods = ('ipywidgets', 'anywidget', 'traitlets', 'IPython')\n"
        "bad = [m for m in mods if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
