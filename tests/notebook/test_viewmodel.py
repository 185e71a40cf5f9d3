"""The panel's view-model and protocol, with plain typed data: no widgets, no session."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from redengine_nb.notebook import protocol
from redengine_nb.notebook import viewmodel as vm
from redengine_nb.notebook.reads import (
    ClusterView,
    SchedulerLease,
    SchedulerView,
    TaskState,
    named_tasks,
    owner_name,
)
from redengine_nb.records import Action, RunRecord

TZ = ZoneInfo("Europe/Helsinki")
NOW = datetime(2024, 3, 10, 9, 0, tzinfo=TZ)
T = NOW.timestamp()
XSS = "<img src=x onerror=alert(1)>"
IDLE = SchedulerView(running=True, stop_requested=False, restart_requested=False, live_runs=())


def state(name: str, **kw: object) -> TaskState:
    base = TaskState(
        name=name,
        condition="every 10 minutes",
        status=None,
        is_running=False,
        disabled=False,
        running_since=None,
        last_run=None,
        next_due=T + 300,
        runtime=None,
        runs=0,
        fails=0,
        execution="thread",
        missing=(),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def record(task: str, start: float, end: float | None, action: str, **kw: object) -> RunRecord:
    return RunRecord(
        run_id=f"{task}-{start}",
        task_name=task,
        action=Action(action),
        created=start,
        start=start,
        end=end,
        **kw,  # type: ignore[arg-type]
    )


# --- time text (one rule, in protocol.py; the front end reads its units) ----------------------


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
    assert protocol.format_relative(T + offset, T) == text


def test_relative_of_nothing_and_next_due() -> None:
    assert protocol.format_relative(None, T) == ""
    assert protocol.format_next_due(T + 300, T) == "in 5 min"
    assert protocol.format_next_due(T - 5, T) == "due now"
    assert protocol.format_next_due(None, T) == "on event"


def test_the_front_end_gets_the_units_and_colours() -> None:
    assert protocol.CONSTANTS["colours"] == protocol.COLOURS
    units = protocol.CONSTANTS["time_units"]
    assert isinstance(units, list) and units[-1][0] is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (0.123, "0.12 s"),
        (4.56, "4.6 s"),
        (12.9, "12 s"),
        (185, "3 min 5 s"),
        (180, "3 min"),
        (7800, "2 h 10 min"),
    ],
)
def test_format_runtime(seconds: float | None, text: str) -> None:
    assert vm.format_runtime(seconds) == text


def test_format_clock_in_session_timezone_to_the_second() -> None:
    ts = datetime(2024, 3, 10, 9, 12, 3, tzinfo=TZ).timestamp()
    assert vm.format_clock(ts, TZ, now=T) == "09:12:03"
    assert vm.format_clock(ts - 86400, TZ, now=T) == "2024-03-09 09:12:03"
    assert vm.format_clock(ts, ZoneInfo("UTC"), now=T) == "07:12:03"
    assert vm.format_clock(None, TZ, now=T) == ""


# --- rows ----------------------------------------------------------------------------------


def test_badges() -> None:
    rows = vm.task_rows(
        [
            state("new"),
            state("ok", status="success", last_run=T - 60, runtime=1.5, runs=1),
            state("busy", status="success", is_running=True, running_since=T - 5),
            state("stopping", is_running=True, running_since=T - 5),
            state("off", status="fail", disabled=True),
        ],
        TZ,
        T,
        terminating=["stopping"],
    )
    assert [r["badge"] for r in rows] == ["new", "success", "running", "terminating", "disabled"]
    ok = rows[1]
    assert ok["last_run_clock"] == "08:59:00" and ok["runtime_text"] == "1.5 s"
    assert rows[2]["running_since"] == T - 5
    assert rows[4]["next_due"] is None and rows[4]["next_due_clock"] == ""
    assert not rows[4]["due_now"]


def test_due_now_does_not_move_with_time() -> None:
    (row,) = vm.task_rows([state("a", next_due=T - 30)], TZ, T)
    assert row["due_now"] and row["next_due"] is None
    (later,) = vm.task_rows([state("a", next_due=T - 30)], TZ, T + 5)
    assert later == row


def test_a_missing_task_is_a_warning() -> None:
    (row,) = vm.task_rows([state("a", missing=("nope",))], TZ, T)
    assert row["warning"] == "its condition names task 'nope', which this session does not have"


def test_named_tasks_of_conditions() -> None:
    from redengine_nb.conditions import parse

    cond = parse("after task 'x' & (task 'y' has failed | ~task 'z' is running) & daily")
    assert named_tasks(cond) == ["x", "y", "z"]
    assert named_tasks(parse("every 10 minutes")) == []


# --- timeline --------------------------------------------------------------------------------


def test_timeline_has_lanes_for_this_sessions_tasks_only() -> None:
    log = [
        record("a", T - 120, T - 100, "success"),
        record("other-notebook", T - 50, T - 40, "success"),
        record("a", T - 30, None, "run"),
        record("b", T - 90000, T - 89990, "fail"),  # older than the horizon
    ]
    tl = vm.timeline(log, T, ["a", "b"], TZ)
    assert [lane["name"] for lane in tl["lanes"]] == ["a", "b"]
    done, live = tl["lanes"][0]["bars"]
    assert (done["start"], done["end"], done["outcome"]) == (T - 120, T - 100, "success")
    assert done["label"] == "a · 08:58:00 · success · 20 s"
    # A live run's data does not move with time: the browser draws it up to its now.
    assert (live["outcome"], live["start"], live["end"]) == ("running", T - 30, T - 30)
    assert tl["lanes"][1]["bars"] == []
    stopping = vm.timeline(log, T, ["a"], TZ, terminating=["a"])
    assert stopping["lanes"][0]["bars"][1]["outcome"] == "terminating"
    assert tl["first"] == T - 120 and tl["last"] == T - 100


# --- runs ----------------------------------------------------------------------------------


def test_runs_newest_first_with_output_tail_live_output_and_displays() -> None:
    long = "x" * (vm.OUTPUT_LIMIT + 10)
    log = [
        record("a", T - 100, T - 99, "success", output=long),
        record("a", T - 50, T - 49, "fail", exc_text="Traceback ...\nValueError: boom"),
        record("a", T - 5, None, "run"),
    ]
    items = vm.run_items(
        log,
        TZ,
        T,
        live_output=lambda run_id: "so far\n",
        displays=lambda run_id: [{"kind": "html", "content": XSS}],
    )
    assert [i["action"] for i in items] == ["running", "fail", "success"]
    live, fail, ok = items
    assert live["live"] and live["output"] == "so far\n" and live["runtime_text"] == ""
    assert fail["exc_text"].endswith("ValueError: boom")
    assert len(ok["output"]) == vm.OUTPUT_LIMIT and ok["output"].startswith("…")
    assert ok["runtime_text"] == "1.0 s"
    assert ok["displays"] == [{"kind": "html", "content": XSS}]  # carried raw, shown sandboxed


# --- scheduler and snapshot -------------------------------------------------------------------


def test_scheduler_states() -> None:
    calm = {"warning": "", "dismissible": False}
    assert vm.scheduler_state(IDLE) == {"state": "running", "detail": "", **calm}
    stopped = replace(IDLE, running=False)
    assert vm.scheduler_state(stopped) == {"state": "stopped", "detail": "", **calm}
    stopping = replace(IDLE, stop_requested=True, live_runs=("a", "b"))
    assert vm.scheduler_state(stopping) == {
        "state": "stopping",
        "detail": "waiting for 2 runs: a, b",
        **calm,
    }
    restarting = replace(stopping, restart_requested=True, live_runs=())
    assert vm.scheduler_state(restarting) == {"state": "restarting", "detail": "", **calm}


def snapshot(now: float, **kw: object) -> vm.Snapshot:
    return vm.build_snapshot(
        [state("a"), state("b")],
        [],
        now=now,
        tz=TZ,
        scheduler=IDLE,
        **kw,  # type: ignore[arg-type]
    )


def test_snapshot_equal_when_only_time_passed_and_differs_on_change() -> None:
    assert snapshot(T).same_as(snapshot(T + 1))
    assert not snapshot(T).same_as(snapshot(T, note="a shared log"))
    # Asked to terminate, but not running (any more): nothing to show.
    assert snapshot(T, terminating=["a"]).data["terminating"] == []
    assert not snapshot(T).same_as(None)


def test_an_unknown_selection_shows_no_runs() -> None:
    run = vm.run_items([record("a", T - 5, T - 4, "success")], TZ, T)
    assert snapshot(T, selected="a", runs=run).data["runs"] == run
    gone = snapshot(T, selected="zzz", runs=run)
    assert gone.data["selected"] == "" and gone.data["runs"] == []


def test_viewmodel_imports_no_widgets() -> None:
    code = (
        "import sys, redengine_nb.notebook.viewmodel, redengine_nb.notebook.protocol\n"
        "mods = ('ipywidgets', 'anywidget', 'traitlets', 'IPython', 'pandas')\n"
        "bad = [m for m in mods if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the schedulers on the log, and the Dask cluster (issues 16 and 17) ----------------------


def lease(
    lease_id: str, pid: int, *, started: float, alive: bool = True, this: bool = False
) -> SchedulerLease:
    return SchedulerLease(
        lease_id=lease_id,
        host="node-a",
        pid=pid,
        started=started,
        expires=started + 30,
        alive=alive,
        this=this,
    )


def test_a_lone_scheduler_on_its_own_log_shows_no_fleet() -> None:
    alone = [lease("L" + "1" * 24, 10, started=T, this=True)]
    assert vm.scheduler_items(alone, shared=False, tz=TZ, now=T) == []
    assert vm.scheduler_items([], shared=False, tz=TZ, now=T) == []


def test_the_fleet_lists_this_scheduler_first_then_by_age_with_its_state() -> None:
    leases = [
        lease("L" + "2" * 24, 20, started=T - 60, alive=False),
        lease("L" + "3" * 24, 30, started=T - 120),
        lease("L" + "1" * 24, 10, started=T - 10, this=True),
    ]
    items = vm.scheduler_items(leases, shared=False, tz=TZ, now=T)
    assert [(i["name"], i["state"], i["this"]) for i in items] == [
        ("node-a:10", "alive", True),
        ("node-a:30", "alive", False),
        ("node-a:20", "expired", False),
    ]
    assert items[0]["lease"] == "L11111111"
    assert items[0]["since_clock"] == "08:59:50"


def test_a_shared_log_shows_even_one_scheduler() -> None:
    one = [lease("L" + "1" * 24, 10, started=T, this=True)]
    items = vm.scheduler_items(one, shared=True, tz=TZ, now=T)
    assert [i["name"] for i in items] == ["node-a:10"]


def test_a_run_owner_reads_as_host_and_pid() -> None:
    names = {"L" + "a" * 24: "node-b:77"}
    assert owner_name("L" + "a" * 24, names) == "node-b:77"
    assert owner_name("node-c:123:t4567", names) == "node-c:123"  # written before leases
    assert owner_name("L" + "b" * 24, names) == "lease Lbbbbbbbb (gone)"
    assert owner_name(None, names) == ""
    assert owner_name("", names) == ""


def test_each_run_carries_its_scheduler() -> None:
    runs = [
        record("a", T - 60, T - 59, "success", owner="L" + "a" * 24),
        record("a", T - 30, T - 29, "fail", owner="old-host:5:t1"),
        record("a", T - 10, T - 9, "success"),
    ]
    names = {"L" + "a" * 24: "node-b:77", "old-host:5:t1": "old-host:5"}
    items = vm.run_items(runs, TZ, T, schedulers=names)
    assert [i["scheduler"] for i in items] == ["", "old-host:5", "node-b:77"]


@pytest.mark.parametrize(
    ("dashboard", "shown"),
    [
        ("http://127.0.0.1:8787/status", "http://127.0.0.1:8787/status"),
        ("HTTPS://dask.example.org/status", "HTTPS://dask.example.org/status"),
        ("javascript:alert(1)", ""),
        ("file:///etc/passwd", ""),
        ("http://x y", ""),
        (None, ""),
    ],
)
def test_the_cluster_line_links_only_web_dashboards(dashboard: str | None, shown: str) -> None:
    item = vm.cluster_item(
        ClusterView(address="tcp://127.0.0.1:8786", workers=2, dashboard=dashboard)
    )
    assert item == {"address": "tcp://127.0.0.1:8786", "workers": 2, "dashboard": shown}


def test_the_snapshot_carries_fleet_and_cluster_and_no_cluster_before_one_is_used() -> None:
    empty = vm.build_snapshot([state("a")], [], now=T, tz=TZ, scheduler=IDLE)
    assert empty.data["schedulers"] == [] and empty.data["cluster"] is None
    cluster = vm.cluster_item(ClusterView(address="tcp://h:8786", workers=1, dashboard=None))
    fleet = vm.scheduler_items(
        [lease("L" + "1" * 24, 10, started=T, this=True), lease("L" + "2" * 24, 20, started=T)],
        shared=False,
        tz=TZ,
        now=T,
    )
    snap = vm.build_snapshot(
        [state("a")], [], now=T, tz=TZ, scheduler=IDLE, schedulers=fleet, cluster=cluster
    )
    assert [s["name"] for s in snap.data["schedulers"]] == ["node-a:10", "node-a:20"]
    assert snap.data["cluster"] == {"address": "tcp://h:8786", "workers": 1, "dashboard": ""}
    assert not snap.same_as(empty)


def test_scheduler_warning_line() -> None:
    assert vm.scheduler_warning(None, None) == ""
    step = "the clock went back 300 s"
    error = "disk I/O error"
    assert vm.scheduler_warning(step, None) == f"clock step: {step}"
    both = vm.scheduler_warning(step, error)
    assert both.splitlines() == [
        f"clock step: {step}",
        f"run log write error (run outcomes are kept and retried): {error}",
    ]
    # Carried in every state, stopped included (the log can refuse writes at shut down).
    for view in (IDLE, replace(IDLE, running=False), replace(IDLE, stop_requested=True)):
        state = vm.scheduler_state(replace(view, clock_step=step, store_error=error))
        assert state["warning"] == both
        assert state["dismissible"] is True  # the clock step's ✕
    # A run log write error alone cannot be dismissed.
    assert vm.scheduler_state(replace(IDLE, store_error=error))["dismissible"] is False
    assert vm.scheduler_state(replace(IDLE, store_error=XSS))["warning"].endswith(XSS)  # raw
