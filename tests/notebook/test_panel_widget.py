"""The panel widget without a browser, over a real app (FakeClock, in-memory run log):
clicks become session calls, the state follows, nothing is sent when nothing changed."""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redengine_nb import RedEngine
from redengine_nb.notebook.protocol import COLOURS, CONSTANTS
from redengine_nb.notebook.widget import FLEET_INTERVAL, Panel, display_item, panel
from redengine_nb.testing import FakeClock

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def app() -> Iterator[RedEngine]:
    clock = FakeClock("2024-03-10 09:00", tz="Europe/Helsinki")
    app = RedEngine(
        config={"task_execution": "main", "restarting": "recall"}, logs=":memory:", clock=clock
    )

    @app.task("every 10 minutes", name="alpha")
    def alpha() -> None:
        print("alpha ran")

    @app.task("daily", name="beta")
    def beta() -> None:
        print(XSS)

    yield app
    app.shut_down(timeout=10)
    app.runlog.close()


@pytest.fixture
def widget(app: RedEngine) -> Iterator[Panel]:
    w = Panel(app, throttle=0)
    yield w
    w.close()


def click(widget: Panel, action: str, task: str | None = None, **extra: Any) -> None:
    """What the front end's button sends: a comm message carrying a custom message."""
    content: dict[str, Any] = {"action": action, **extra}
    if task is not None:
        content["task"] = task
    # The whole way in, as the kernel delivers it to the widget's comm.
    msg = {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    widget._handle_msg(msg)


def row(widget: Panel, name: str) -> dict[str, Any]:
    rows = [r for r in widget.data["tasks"] if r["name"] == name]
    assert len(rows) == 1, widget.data["tasks"]
    return rows[0]


def tick(app: RedEngine) -> None:
    app.session.tick()
    app.session.wait_idle(10)


def test_shows_every_task(widget: Panel) -> None:
    assert [r["name"] for r in widget.data["tasks"]] == ["alpha", "beta"]
    alpha = row(widget, "alpha")
    assert alpha["condition"] == "every 10 minutes"
    assert alpha["badge"] == "new"
    assert alpha["runs"] == 0 and alpha["last_run"] is None and alpha["warning"] == ""
    assert widget.data["scheduler"] == {
        "state": "stopped",
        "detail": "",
        "warning": "",
        "dismissible": False,
    }
    assert widget.protocol == CONSTANTS


def test_accepts_the_session_and_refuses_anything_else(app: RedEngine) -> None:
    w = Panel(app.session, throttle=0)
    assert [r["name"] for r in w.data["tasks"]] == ["alpha", "beta"]
    w.close()
    with pytest.raises(TypeError, match="RedEngine app or its session, not dict"):
        Panel({"tasks": []})  # type: ignore[arg-type]


def test_run_now_and_its_output(widget: Panel, app: RedEngine) -> None:
    tick(app)  # each runs once when first seen
    click(widget, "run", "alpha")
    tick(app)
    alpha = row(widget, "alpha")
    assert alpha["runs"] == 2 and alpha["badge"] == "success"
    assert alpha["last_run_clock"] == "09:00:00"
    click(widget, "select", "beta")
    assert widget.data["selected"] == "beta"
    (run,) = widget.data["runs"]
    assert run["output"] == XSS + "\n" and run["action"] == "success" and not run["live"]


def test_disable_and_enable(widget: Panel, app: RedEngine) -> None:
    click(widget, "disable", "beta")
    assert app.session["beta"].disabled is True
    assert row(widget, "beta")["badge"] == "disabled"
    assert row(widget, "beta")["next_due"] is None
    click(widget, "enable", "beta")
    assert app.session["beta"].disabled is False
    assert row(widget, "beta")["badge"] == "new"


def blocking_app(app: RedEngine) -> tuple[threading.Event, threading.Event]:
    started, release = threading.Event(), threading.Event()

    @app.task("true", name="slow", execution="thread")
    def slow() -> None:
        print("halfway")
        started.set()
        release.wait(30)

    return started, release


def test_terminate_shows_terminating_at_once(widget: Panel, app: RedEngine) -> None:
    started, release = blocking_app(app)
    app.session.tick()
    assert started.wait(10)
    widget.refresh()
    assert row(widget, "slow")["badge"] == "running"
    click(widget, "terminate", "slow")
    assert row(widget, "slow")["badge"] == "terminating"
    assert widget.data["terminating"] == ["slow"]
    assert "cannot be stopped mid-statement" in widget.message
    assert "--execution process" in widget.message
    release.set()
    app.session.wait_idle(10)
    widget.refresh()
    assert row(widget, "slow")["badge"] == "terminate"
    assert widget.data["terminating"] == []


def test_a_live_run_shows_its_output_so_far(app: RedEngine) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from redengine_nb.notebook.kernel import KernelSession

    ks = KernelSession(InteractiveShell.instance(), app)
    started, release = blocking_app(app)
    w = Panel(app, throttle=0, kernel_session=ks)
    try:
        w.selected = "slow"
        app.session.tick()
        assert started.wait(10)
        w.refresh()
        live = [r for r in w.data["runs"] if r["live"]]
        assert len(live) == 1
        assert live[0]["output"] == "halfway\n" and live[0]["action"] == "running"
    finally:
        release.set()
        app.session.wait_idle(10)
        w.close()


def test_delete_asks_what_happens_to_a_running_run(widget: Panel, app: RedEngine) -> None:
    click(widget, "delete", "alpha")
    assert "alpha" not in app.session
    started, release = blocking_app(app)
    app.session.tick()
    assert started.wait(10)
    click(widget, "delete", "slow")
    assert "slow" in app.session
    assert "say what happens to its run" in widget.message
    click(widget, "delete", "slow", choice="finish")
    assert "slow" not in app.session
    assert "goes on to its end" in widget.message
    release.set()
    app.session.wait_idle(10)
    (last,) = app.runlog.records(task="slow", limit=1)
    assert last.action.value == "success"  # it was let finish, and its end was kept


def test_delete_and_terminate(widget: Panel, app: RedEngine) -> None:
    started, release = blocking_app(app)
    app.session.tick()
    assert started.wait(10)
    click(widget, "delete", "slow", choice="terminate")
    assert "slow" not in app.session and "asked to terminate" in widget.message
    release.set()
    app.session.wait_idle(10)
    (last,) = app.runlog.records(task="slow", limit=1)
    assert last.action.value == "terminate"


def test_edit_condition(widget: Panel, app: RedEngine) -> None:
    replies: list[Any] = []
    widget.send = replies.append  # type: ignore[method-assign]
    click(widget, "condition", "alpha", text="every 2 hours")
    assert str(app.session["alpha"].start_cond) == "every 2 hours"
    assert row(widget, "alpha")["condition"] == "every 2 hours"
    click(widget, "condition", "alpha", text="every 1 hour &")
    assert "every 1 hour &" in widget.errors["alpha"]
    assert str(app.session["alpha"].start_cond) == "every 2 hours"
    assert replies == [
        {"reply": "condition", "task": "alpha", "ok": True},
        {"reply": "condition", "task": "alpha", "ok": False},
    ]


def test_a_condition_naming_a_missing_task_is_marked(widget: Panel, app: RedEngine) -> None:
    click(widget, "condition", "alpha", text="after task 'nope'")
    assert "'nope'" in row(widget, "alpha")["warning"]
    click(widget, "condition", "alpha", text="after task 'beta'")
    assert row(widget, "alpha")["warning"] == ""


def test_scheduler_controls_say_what_they_did(widget: Panel, app: RedEngine) -> None:
    click(widget, "stop")
    assert widget.message == "the scheduler is already stopped"
    click(widget, "start")
    assert app.is_running and widget.message == ""
    assert widget.data["scheduler"]["state"] == "running"
    click(widget, "start")
    assert widget.message == "the scheduler is already running"


def test_stop_does_not_block_and_says_what_it_waits_for(widget: Panel, app: RedEngine) -> None:
    started, release = blocking_app(app)
    app.start()
    assert started.wait(10)
    done = threading.Event()
    threading.Thread(target=lambda: (click(widget, "stop"), done.set())).start()
    assert done.wait(5), "stop blocked on the running run"
    assert widget.data["scheduler"] == {
        "state": "stopping",
        "detail": "waiting for 1 run: slow",
        "warning": "",
        "dismissible": False,
    }
    release.set()
    assert app.shut_down(timeout=10)
    widget.refresh()
    assert widget.data["scheduler"]["state"] == "stopped"


def test_errors_from_controls_are_shown_not_raised(widget: Panel) -> None:
    click(widget, "run", "nope")
    assert "run 'nope' failed" in widget.message
    click(widget, "frobnicate")
    assert "unknown panel action 'frobnicate'" in widget.message
    click(widget, "run", "alpha")
    assert widget.message == ""


def test_nothing_sent_when_nothing_changed(widget: Panel, app: RedEngine) -> None:
    sent: list[Any] = []
    widget.observe(lambda change: sent.append(change["new"]), names="data")
    assert widget.refresh() is False
    app.clock.advance("1 second")  # only time passed: the front end ticks on its own
    assert widget.refresh() is False
    assert sent == []
    click(widget, "run", "alpha")
    tick(app)
    assert len(sent) >= 1 and row(widget, "alpha")["runs"] == 1
    assert widget.refresh(force=True) is True


def test_events_are_throttled(app: RedEngine) -> None:
    w = Panel(app, throttle=0.2)
    pushed = threading.Event()
    sent: list[Any] = []

    def on_data(change: dict[str, Any]) -> None:
        sent.append(change["new"])
        pushed.set()

    w.observe(on_data, names="data")
    task = app.session["alpha"]

    def flip() -> None:
        for i in range(31):
            task.disabled = i % 2 == 0

    worker = threading.Thread(target=flip)
    worker.start()
    worker.join(10)
    assert pushed.wait(10), "no push after the events"
    # 31 events in a burst become at most two pushes (one may start mid-burst) ...
    assert 1 <= len(sent) <= 2
    # ... and the last push carries the final state (a pending one is sent, not dropped).
    if row(w, "alpha")["badge"] != "disabled":
        pushed.clear()
        assert pushed.wait(10)
    assert row(w, "alpha")["badge"] == "disabled"
    w.close()


def test_close_unsubscribes(app: RedEngine) -> None:
    w = Panel(app, throttle=0)
    w.close()
    sent: list[Any] = []
    w.observe(lambda change: sent.append(change), names="data")
    app.session["alpha"].run()
    tick(app)
    assert sent == []


def test_disconnect_disables_the_panel(widget: Panel, app: RedEngine) -> None:
    widget.disconnect("the kernel shut down (kernel shutting down)")
    assert widget.data["scheduler"]["state"] == "disconnected"
    click(widget, "run", "alpha")
    assert not app.session._has_forced(app.session["alpha"])


def test_panel_helper(app: RedEngine) -> None:
    w = panel(app)
    assert isinstance(w, Panel) and len(w.data["tasks"]) == 2
    w.close()


def test_rich_displays_become_safe_items() -> None:
    assert display_item({"text/html": "<b>x</b>", "text/plain": "x"}) == {
        "kind": "html",
        "content": "<b>x</b>",
    }
    assert display_item({"image/png": b"\x89PNG", "text/plain": "<Figure>"}) == {
        "kind": "image",
        "content": "data:image/png;base64,iVBORw==",
    }
    assert display_item({"text/plain": "42"}) == {"kind": "text", "content": "42"}


def test_front_end_is_packaged_offline_and_reads_the_protocol() -> None:
    esm = Panel._esm.default_value if hasattr(Panel._esm, "default_value") else Panel._esm
    js = str(esm)
    assert "export default" in js
    assert not re.search(r"""(import|from)\s*\(?\s*["']https?:""", js), "no CDN imports"
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js
    assert 'sandbox: ""' in js  # rich output only in a frame with no rights
    # The colours live in protocol.py only: no colour of the table is written in the JS.
    for hexcode in COLOURS.values():
        assert hexcode not in js
    repo_js = Path(__file__).resolve().parents[2] / "js" / "panel.js"
    assert js == repo_js.read_text(encoding="utf-8")


def test_panel_function_survives_the_widget_module_import() -> None:
    # Importing the widget module must not shadow the public panel() helpers.
    import redengine_nb
    import redengine_nb.notebook
    import redengine_nb.notebook.widget

    assert callable(redengine_nb.notebook.panel)
    assert callable(redengine_nb.panel)


def test_restart_says_restarting_and_what_it_waits_for(widget: Panel, app: RedEngine) -> None:
    started, release = blocking_app(app)
    app.start()
    assert started.wait(10)
    click(widget, "restart")
    assert widget.data["scheduler"] == {
        "state": "restarting",
        "detail": "waiting for 1 run: slow",
        "warning": "",
        "dismissible": False,
    }
    app.session["slow"].disabled = True  # once restarted, it must not start again
    release.set()
    assert app.session.wait_idle(10)


def test_a_shared_log_is_said_under_the_table(
    app: RedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from redengine_nb.notebook.kernel import KernelSession, choose_log

    monkeypatch.setenv("REDENGINE_NB_LOGS", "/srv/shared.db")
    logs, note, printed = choose_log()
    assert logs == "/srv/shared.db" and printed == ""
    ks = KernelSession(InteractiveShell.instance(), app, note)
    w = Panel(app, throttle=0, kernel_session=ks)
    assert "this panel shows this session's tasks only" in w.data["note"]
    w.close()


# --- which scheduler, the schedulers on the log, the Dask cluster (issues 16 and 17) ---------


def test_each_run_says_which_scheduler_ran_it(widget: Panel, app: RedEngine) -> None:
    tick(app)
    click(widget, "select", "alpha")
    (run,) = widget.data["runs"]
    assert run["scheduler"] == f"{socket.gethostname()}:{os.getpid()}"
    # One scheduler on its own log: no fleet is shown, and no cluster before a dask run.
    assert widget.data["schedulers"] == [] and widget.data["cluster"] is None


def test_a_slow_look_does_not_hold_back_a_push(app: RedEngine) -> None:
    w = Panel(app, throttle=0.2)
    pushed = threading.Event()
    w.observe(lambda change: pushed.set(), names="data")
    w._schedule(FLEET_INTERVAL)  # the fleet's look is pending ...
    app.session["alpha"].disabled = True  # ... and an event comes: pushed within the throttle
    try:
        assert pushed.wait(FLEET_INTERVAL / 2), "the push waited for the fleet's look"
        assert row(w, "alpha")["badge"] == "disabled"
    finally:
        w.close()


@pytest.mark.slow
def test_the_dask_cluster_is_shown_once_a_task_uses_it() -> None:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=":0",  # a dashboard runs (bokeh): the line links to it
    )
    clock = FakeClock("2024-03-10 09:00", tz="Europe/Helsinki")
    app = RedEngine(
        config={"task_execution": "main", "dask_address": cluster.scheduler_address},
        logs=":memory:",
        clock=clock,
    )
    app.task("every 10 minutes", name="remote", func=lambda: None, execution="dask")
    w = Panel(app, throttle=0)
    try:
        assert w.data["cluster"] is None  # no dask run yet: no line
        assert app.session.tick() == ["remote"]
        assert app.session.wait_idle(60)
        w.refresh()
        info = app.session.dask_cluster()
        assert info is not None and info["dashboard"].startswith("http")
        assert w.data["cluster"] == {
            "address": cluster.scheduler_address,
            "workers": 2,
            "dashboard": info["dashboard"],  # a web address: the line links to it
        }
    finally:
        w.close()
        executors = list(app.session.launcher._executors.values())
        app.session.close_executors(terminate=True)
        for executor in executors:  # the client is gone before the cluster closes
            join = getattr(executor, "join", None)
            assert join is None or join(60)
        app.runlog.close()
        cluster.close()


def test_the_schedulers_sharing_a_sqlite_log(tmp_path: Path) -> None:
    """Two sessions on one SQLite file (and a third scheduler's lease, as another machine
    writes it): each panel lists them, this one marked; a run shows who ran it; a lease
    not renewed in time shows expired until a scheduler reaps it."""
    from redengine_nb.notebook.magics import (
        fleet_line,
        scheduler_status_line,
        task_log_frame,
        tasks_table,
    )

    clock = FakeClock("2024-03-10 09:00", tz="Europe/Helsinki")
    logs = str(tmp_path / "shared.db")
    config = {"task_execution": "main", "lease_ttl": 30}
    a = RedEngine(config=config, logs=logs, clock=clock)
    b = RedEngine(config=config, logs=logs, clock=clock)
    a.task("every 10 minutes", name="on_a", func=lambda: None)
    b.task("every 10 minutes", name="on_b", func=lambda: None)
    me = f"{socket.gethostname()}:{os.getpid()}"
    try:
        assert a.session.tick() == ["on_a"]  # each takes its lease at its first start
        assert b.session.tick() == ["on_b"]
        # Another machine's scheduler writes a run of on_a and stops renewing.
        clock.advance("1 second")
        t0 = clock.time()
        far = a.runlog.acquire_lease(now=t0, ttl=10, host="node-b", pid=4242)
        a.runlog.start_runs(["on_a"], created=t0, start=t0, owner=far)
        wa, wb = Panel(a, throttle=0), Panel(b, throttle=0)

        def fleet(w: Panel) -> list[tuple[str, str, bool]]:
            w.refresh()
            return [(s["name"], s["state"], s["this"]) for s in w.data["schedulers"]]

        assert fleet(wa) == [
            (me, "alive", True),
            (me, "alive", False),
            ("node-b:4242", "alive", False),
        ]
        assert fleet(wb) == [
            (me, "alive", True),
            (me, "alive", False),
            ("node-b:4242", "alive", False),
        ]
        assert wa.data["schedulers"][0]["lease"] != wb.data["schedulers"][0]["lease"]
        click(wa, "select", "on_a")
        assert [r["scheduler"] for r in wa.data["runs"]] == ["node-b:4242", me]
        assert list(task_log_frame(a, "on_a")["scheduler"]) == [me, "node-b:4242"]
        line = fleet_line(a)
        assert line == f"schedulers on this log: {me} (this one), {me}, node-b:4242"
        assert repr(tasks_table(a)).endswith(line)
        assert scheduler_status_line(a).endswith("\n" + line)

        clock.advance("15 seconds")  # node-b's lease ran out; a and b still hold theirs
        assert fleet(wa)[2] == ("node-b:4242", "expired", False)
        assert "node-b:4242 (expired)" in fleet_line(a)
        clock.advance("10 seconds")
        a.session.tick()  # a's heartbeat reaps node-b: its lease goes, its run is crash
        assert fleet(wa) == [(me, "alive", True), (me, "alive", False)]
        assert [r["action"] for r in wa.data["runs"]] == ["crash", "success"]
        # The run keeps its scheduler's name: the panel saw the lease before it went.
        assert [r["scheduler"] for r in wa.data["runs"]] == ["node-b:4242", me]
        assert list(task_log_frame(a, "on_a")["scheduler"]) == [me, "node-b:4242"]
        # A log once shared stays shown as shared, with this scheduler alone on it now.
        clock.advance("30 seconds")  # b stopped renewing (it never ticks again) ...
        a.session.tick()  # ... and a's heartbeat reaps its lease
        assert fleet(wa) == [(me, "alive", True)]
        assert fleet_line(a) == f"schedulers on this log: {me} (this one)"
        wa.close()
        wb.close()
    finally:
        for app in (a, b):
            app.shut_down(timeout=10)
            app.runlog.close()


def test_clock_step_back_reaches_the_page(app: RedEngine, widget: Panel) -> None:
    clock = app.session.clock
    assert isinstance(clock, FakeClock)
    for name in ("alpha", "beta"):  # no run: only the warning may cause the push
        app.session[name].disabled = True
    assert widget.data["scheduler"]["warning"] == ""
    clock.set("2034-03-10 09:00")  # a wrong step ahead, seen by one tick
    tick(app)
    assert widget.data["scheduler"]["warning"] == ""
    sent: list[dict[str, Any]] = []
    widget.observe(lambda change: sent.append(change["new"]), names="data")
    clock.set("2024-03-10 09:05")  # set right: ten years back, far beyond the tolerance
    tick(app)
    assert app.session.clock_step is not None
    assert sent, "the clock step was not pushed to the page"
    warning = sent[-1]["scheduler"]["warning"]
    assert warning.startswith("clock step: the clock went back")
    assert "clock_step_tolerance" in warning
    assert sent[-1]["scheduler"]["dismissible"] is True
    pushes = len(sent)
    tick(app)  # nothing new: nothing sent
    assert len(sent) == pushes
    # The ✕: the page sends dismiss_warning; the warning goes, its effect stays.
    widget._on_custom_msg(widget, {"action": "dismiss_warning"})
    assert app.session.clock_step is None
    assert sent[-1]["scheduler"]["warning"] == ""
    assert sent[-1]["scheduler"]["dismissible"] is False
    assert widget.message == ""
    widget._on_custom_msg(widget, {"action": "dismiss_warning"})
    assert widget.message == "there is no clock-step warning to dismiss"
