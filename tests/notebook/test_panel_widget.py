"""The panel widget without a browser: clicks become session calls, state follows."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from panel_fakes import FakeApp

from redengine_nb.notebook.widget import Panel, panel

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def app() -> FakeApp:
    app = FakeApp()
    app.session.add("alpha", "every 10 minutes")
    app.session.add("beta", "daily")
    return app


@pytest.fixture
def widget(app: FakeApp) -> Iterator[Panel]:
    w = Panel(app, throttle=0)
    yield w
    w.close()


def click(widget: Panel, action: str, task: str | None = None, text: str | None = None) -> None:
    """What the front end's button sends: a comm message carrying a custom message."""
    content: dict[str, Any] = {"action": action}
    if task is not None:
        content["task"] = task
    if text is not None:
        content["text"] = text
    # The whole way in, as the kernel delivers it to the widget's comm.
    msg = {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    widget._handle_msg(msg)


def row(widget: Panel, name: str) -> dict[str, Any]:
    rows = [r for r in widget.data["tasks"] if r["name"] == name]
    assert len(rows) == 1, widget.data["tasks"]
    return rows[0]


def test_shows_every_task(widget: Panel) -> None:
    assert [r["name"] for r in widget.data["tasks"]] == ["alpha", "beta"]
    assert row(widget, "alpha")["condition"] == "every 10 minutes"
    assert row(widget, "alpha")["badge"] == "new"
    assert widget.data["scheduler"] == {"running": False}


def test_accepts_a_session_too(app: FakeApp) -> None:
    w = Panel(app.session, throttle=0)
    click(w, "start")
    assert app.calls == ["start"] and w.data["scheduler"]["running"] is True
    w.close()


def test_run_now(widget: Panel, app: FakeApp) -> None:
    click(widget, "run", "alpha")
    assert ("run", "alpha") in app.session.calls
    assert row(widget, "alpha")["runs"] == 1
    assert row(widget, "alpha")["badge"] == "success"
    assert [lane["name"] for lane in widget.data["timeline"]["tasks"]] == ["alpha", "beta"]
    assert len(widget.data["timeline"]["tasks"][0]["bars"]) == 1


def test_disable_and_enable(widget: Panel, app: FakeApp) -> None:
    click(widget, "disable", "beta")
    assert app.session["beta"].disabled is True
    assert row(widget, "beta")["badge"] == "disabled"
    assert row(widget, "beta")["disabled"] is True
    click(widget, "enable", "beta")
    assert app.session["beta"].disabled is False
    assert row(widget, "beta")["badge"] == "new"


def test_terminate(widget: Panel, app: FakeApp) -> None:
    app.session["alpha"].start_running()
    assert row(widget, "alpha")["badge"] == "running"
    assert row(widget, "alpha")["running_since"] == app.clock.time()
    app.clock.advance("5 seconds")
    click(widget, "terminate", "alpha")
    assert ("terminate", "alpha") in app.session.calls
    assert row(widget, "alpha")["badge"] == "terminate"
    assert row(widget, "alpha")["runtime"] == 5.0


def test_delete_clears_row_and_selection(widget: Panel, app: FakeApp) -> None:
    widget.selected = "alpha"
    click(widget, "delete", "alpha")
    assert "alpha" not in app.session
    assert [r["name"] for r in widget.data["tasks"]] == ["beta"]
    assert widget.selected == "" and widget.data["selected"] == ""


def test_edit_condition(widget: Panel, app: FakeApp) -> None:
    click(widget, "condition", "alpha", "every 1 hour")
    assert app.session["alpha"].start_cond == "every 1 hour"
    assert row(widget, "alpha")["condition"] == "every 1 hour"
    assert widget.errors == {}


def test_bad_condition_shows_error_and_changes_nothing(widget: Panel, app: FakeApp) -> None:
    click(widget, "condition", "alpha", "daily && hourly")
    assert app.session["alpha"].start_cond == "every 10 minutes"
    assert row(widget, "alpha")["condition"] == "every 10 minutes"
    assert "unexpected '&'" in widget.errors["alpha"]
    assert widget.message == ""
    click(widget, "condition", "alpha", "hourly")  # a good one clears the error
    assert widget.errors == {}


def test_condition_edits_are_answered(widget: Panel, monkeypatch: pytest.MonkeyPatch) -> None:
    replies: list[Any] = []
    monkeypatch.setattr(widget, "send", lambda content, buffers=None: replies.append(content))
    click(widget, "condition", "alpha", "daily && hourly")
    click(widget, "condition", "alpha", "hourly")
    click(widget, "run", "alpha")  # other controls send no reply
    assert replies == [
        {"reply": "condition", "task": "alpha", "ok": False},
        {"reply": "condition", "task": "alpha", "ok": True},
    ]


def test_scheduler_controls(widget: Panel, app: FakeApp) -> None:
    click(widget, "start")
    assert widget.data["scheduler"]["running"] is True
    click(widget, "stop")
    assert widget.data["scheduler"]["running"] is False
    click(widget, "restart")
    assert app.calls == ["start", "shut_down"]
    assert ("restart",) in app.session.calls


def test_selecting_a_task_shows_its_runs(widget: Panel, app: FakeApp) -> None:
    app.session["alpha"].run(output=XSS)
    app.session["alpha"].run(output="Traceback", action="fail")
    assert widget.data["runs"] == []
    widget.selected = "alpha"  # what clicking the name does from the front end
    runs = widget.data["runs"]
    assert [r["action"] for r in runs] == ["fail", "success"]
    assert runs[1]["output"] == XSS  # raw: the front end shows it with textContent
    click(widget, "select", "beta")
    assert widget.data["selected"] == "beta" and widget.data["runs"] == []


def test_errors_from_controls_are_shown_not_raised(widget: Panel) -> None:
    click(widget, "run", "nope")
    assert "run 'nope' failed" in widget.message and "KeyError" in widget.message
    click(widget, "explode")
    assert "unknown panel action 'explode'" in widget.message
    click(widget, "run", "alpha")
    assert widget.message == ""


def test_nothing_sent_when_nothing_changed(widget: Panel, app: FakeApp) -> None:
    sent: list[Any] = []
    widget.observe(lambda change: sent.append(change["new"]), names="data")
    assert widget.refresh() is False
    app.clock.advance("1 second")  # only time passed: the front end ticks on its own
    app.session.emit("task_changed", "alpha")
    assert sent == []
    app.session["alpha"].run()
    assert len(sent) == 1
    assert widget.refresh(force=True) is True


def test_events_are_throttled(app: FakeApp) -> None:
    w = Panel(app, throttle=0.2)
    pushed = threading.Event()
    sent: list[Any] = []

    def on_data(change: dict[str, Any]) -> None:
        sent.append(change["new"])
        pushed.set()

    w.observe(on_data, names="data")
    task = app.session["alpha"]
    worker = threading.Thread(target=lambda: [task.run() for _ in range(30)])
    worker.start()
    worker.join(10)
    assert pushed.wait(10), "no push after the events"
    # 30 events in a burst become at most two pushes (one may start mid-burst) ...
    assert 1 <= len(sent) <= 2
    # ... and the last push carries the final state (a pending one is sent, not dropped).
    if row(w, "alpha")["runs"] != 30:
        pushed.clear()
        assert pushed.wait(10)
    assert row(w, "alpha")["runs"] == 30
    w.close()


def test_clicks_and_events_from_many_threads(app: FakeApp) -> None:
    w = Panel(app, throttle=0)
    errors: list[BaseException] = []

    def clicker(action: str, name: str) -> None:
        try:
            for _ in range(20):
                click(w, action, name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=clicker, args=("run", "alpha")),
        threading.Thread(target=clicker, args=("disable", "beta")),
        threading.Thread(target=clicker, args=("run", "beta")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and w.message == ""
    assert row(w, "alpha")["runs"] == 20 and row(w, "beta")["runs"] == 20
    assert row(w, "beta")["badge"] == "disabled"
    w.close()


def test_close_unsubscribes(app: FakeApp) -> None:
    w = Panel(app, throttle=0)
    assert app.session.subscriber_count == 1
    w.close()
    assert app.session.subscriber_count == 0
    app.session["alpha"].run()  # no error after close


def test_panel_helper_needs_an_app_or_the_kernel_session(app: FakeApp) -> None:
    w = panel(app)
    assert isinstance(w, Panel) and len(w.data["tasks"]) == 2
    w.close()


def test_front_end_is_packaged_and_offline() -> None:
    esm = Panel._esm.default_value if hasattr(Panel._esm, "default_value") else Panel._esm
    js = str(esm)
    assert "export default" in js
    assert not re.search(r"""(import|from)\s*\(?\s*["']https?:""", js), "no CDN imports"
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js
    repo_js = Path(__file__).resolve().parents[2] / "js" / "panel.js"
    assert js == repo_js.read_text(encoding="utf-8")


def test_panel_function_survives_the_widget_module_import() -> None:
    # Importing the widget module must not shadow the public panel() helpers.
    import redengine_nb
    import redengine_nb.notebook
    import redengine_nb.notebook.widget

    assert callable(redengine_nb.notebook.panel)
    assert callable(redengine_nb.panel)
