"""The session's facts that Red Engine's session phrases read: parameters (``env``,
``param``), steps taken and uptime (``scheduler ...``), and runs open in the log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from redengine_nb import RedEngine
from redengine_nb.args import Arg
from redengine_nb.records import Action
from redengine_nb.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock("2024-03-11 09:00", tz="UTC")


@pytest.fixture
def app(clock: FakeClock) -> Iterator[RedEngine]:
    app = RedEngine({"task_execution": "main"}, logs=":memory:", clock=clock)
    yield app
    app.session.runlog.close()


def _noop() -> None:
    return None


def test_env_is_the_session_parameter_env(app: RedEngine, clock: FakeClock) -> None:
    app.task("env 'prod' & daily", func=_noop, name="deploy")
    assert app.session.tick() == []
    app.session.env = "prod"
    assert app.session.parameters["env"] == "prod"
    clock.advance("1 second")  # parameters change without an event: read every second
    assert app.session.tick() == ["deploy"]
    app.params(env="dev")
    assert app.session.env == "dev"
    clock.advance("1 day")
    assert app.session.tick() == []


def test_param_phrases_and_arg_read_the_same_parameters(app: RedEngine, clock: FakeClock) -> None:
    seen: list[Any] = []

    def use(x: Any = Arg("x")) -> None:
        seen.append(x)

    app.task("param 'x' is 'v'", func=use, name="user")
    app.task("param 'x' exists & ~param 'y' exists", func=_noop, name="checker")
    assert app.session.tick() == []
    app.params(x="v")
    clock.advance("1 second")
    assert sorted(app.session.tick()) == ["checker", "user"]
    assert seen == ["v"]


def test_shut_cond_on_cycles_stops_after_that_many_steps(clock: FakeClock) -> None:
    app = RedEngine(
        {"task_execution": "main"},
        logs=":memory:",
        clock=clock,
        shut_cond="scheduler has more than 2 cycles",
    )
    app.session.tick()
    app.session.tick()
    assert not app.session.stop_requested
    app.session.tick()
    assert app.session.stop_requested
    assert app.session.cycles == 3


def test_scheduler_uptime_counts_from_the_first_step(app: RedEngine, clock: FakeClock) -> None:
    app.task("scheduler has run over 10 minutes & daily", func=_noop, name="late")
    app.task("scheduler started 10 minutes ago & daily", func=_noop, name="early")
    assert app.session.started is None
    assert app.session.tick() == ["early"]
    assert app.session.started == clock.time()
    due = app.session["late"].next_due()
    assert due is not None and due.timestamp() >= clock.time() + 600
    clock.advance("11 minutes")
    assert app.session.tick() == ["late"]


def test_is_running_sees_an_open_run_of_another_scheduler(app: RedEngine, clock: FakeClock) -> None:
    """With force_status_from_logs, status and 'is running' both read the log."""
    app.task("false", func=_noop, name="x")
    assert app.session.tick() == []
    now = clock.time()
    rec = app.session.runlog.start_run("x", created=now, start=now, owner="elsewhere:1")
    assert app.session["x"].status == "run"
    assert app.session.is_task_running("x")
    app.task("task 'x' is running", func=_noop, name="watcher")
    assert app.session.tick() == ["watcher"]
    app.session.runlog.finish_run(rec.run_id, Action.SUCCESS, end=now + 1)
    clock.advance("2 seconds")
    assert not app.session.is_task_running("x")


def test_without_force_status_from_logs_only_own_runs_count(clock: FakeClock) -> None:
    app = RedEngine(
        {"task_execution": "main", "force_status_from_logs": False}, logs=":memory:", clock=clock
    )
    app.task("false", func=_noop, name="x")
    now = clock.time()
    app.session.runlog.start_run("x", created=now, start=now, owner="elsewhere:1")
    assert not app.session.is_task_running("x")
