"""The session: registry, runtime changes, status tables, errors at start and in conditions."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from engine_helpers import log_of, step

from redengine_nb import SchedulerError, TaskExistsError
from redengine_nb._engine.tables import LOG_COLUMNS, STATUS_COLUMNS
from redengine_nb.args import Arg, Private, Session, Task, TerminationFlag
from redengine_nb.conditions import BaseCondition, Context


def noop() -> None:
    pass


def other() -> None:
    pass


class Exploding(BaseCondition):
    def is_met(self, ctx: Context) -> bool:
        raise ZeroDivisionError("condition blew up")

    def __str__(self) -> str:
        return "exploding"


# -- registry ------------------------------------------------------------------------------


def test_decorator_returns_the_function_and_registers_it(app) -> None:
    @app.task("daily", execution="thread")
    def job() -> int:
        return 1

    assert job() == 1
    assert "job" in app.session
    assert app.session["job"].execution == "thread"
    assert [t.name for t in app.session.tasks] == ["job"]


def test_unknown_task_names_close_matches(app) -> None:
    app.task("daily", func=noop)
    with pytest.raises(KeyError, match=r"(?i)did you mean 'noop'"):
        app.session["nop"]


@pytest.mark.parametrize("policy", ["raise", "rename", "ignore", "replace"])
def test_task_pre_exist(make_app, policy: str) -> None:
    app = make_app(task_pre_exist=policy)
    first = app.task("daily", func=noop)
    first.run()
    step(app)
    if policy == "raise":
        with pytest.raises(TaskExistsError, match="task_pre_exist"):
            app.task("hourly", func=noop)
        return
    second = app.task("hourly", func=noop)
    names = [t.name for t in app.session.tasks]
    if policy == "rename":
        assert names == ["noop", "noop-1"] and second.name == "noop-1"
    elif policy == "ignore":
        assert names == ["noop"] and second is first
        assert str(app.session["noop"].start_cond) == "daily"
    else:
        assert names == ["noop"] and str(app.session["noop"].start_cond) == "hourly"
        assert app.session["noop"].status == "success"  # history kept


def test_create_and_delete_emit_events(app) -> None:
    events: list[tuple[str, str | None]] = []
    unsubscribe = app.session.subscribe(lambda e, t: events.append((e, t)))
    task = app.task("false", func=noop)
    task.start_cond = "every 5 minutes"
    task.run()
    step(app)
    task.delete()
    unsubscribe()
    app.task("false", func=other)
    assert [e for e, _ in events] == [
        "task_added",
        "task_changed",
        "task_changed",
        "run_started",
        "run_ended",
        "task_deleted",
    ]
    assert "noop" not in app.session


def test_a_failing_subscriber_is_swallowed(app) -> None:
    def bad(event: str, task: str | None) -> None:
        raise RuntimeError("subscriber bug")

    app.session.subscribe(bad)
    app.task("true", func=noop)
    assert step(app) == ["noop"]


def test_start_cond_assignment_is_parsed_and_validated(app) -> None:
    from redengine_nb import ConditionParseError

    task = app.task("daily", func=noop)
    task.start_cond = "every 10 minutes"
    assert str(task.start_cond) == "every 10 minutes"
    with pytest.raises(ConditionParseError):
        task.start_cond = "evry 10 minutes"
    assert str(task.start_cond) == "every 10 minutes"


# -- scheduling ----------------------------------------------------------------------------


def test_every_runs_again_after_its_period(app, clock) -> None:
    app.task("every 10 minutes", func=noop)
    assert step(app) == ["noop"]
    assert step(app) == []
    clock.advance("9 minutes")
    assert step(app) == []
    assert app.session["noop"].next_due() == clock.now().replace(minute=10)
    clock.advance("1 minute")
    assert step(app) == ["noop"]


def test_priority_orders_the_starts(make_app) -> None:
    app = make_app(task_execution="main")
    order: list[str] = []
    app.task("true", func=lambda: order.append("low"), name="low", priority=1)
    app.task("true", func=lambda: order.append("high"), name="high", priority=10)
    app.task("true", func=lambda: order.append("mid"), name="mid", priority=5)
    assert step(app) == ["high", "mid", "low"]
    assert order == ["high", "mid", "low"]


def test_disabled_and_force_run(app) -> None:
    task = app.task("true", func=noop, disabled=True)
    assert not task.is_due()
    assert step(app) == []
    task.force_run = True
    assert task.force_run and task.is_due()
    assert step(app) == ["noop"]
    assert not task.force_run
    assert step(app) == []
    task.disable = False  # the seed's spelling
    assert not task.disabled
    assert step(app) == ["noop"]


def test_run_with_parameters_is_queued(app) -> None:
    seen: list[int] = []
    task = app.task("false", func=lambda n=0: seen.append(n), name="collect")
    task.run(n=1)
    task.run(n=2)
    step(app)
    step(app)
    assert seen == [1, 2]


def test_a_running_task_is_not_started_again(app) -> None:
    release = threading.Event()
    app.task("true", func=lambda: release.wait(10), name="slow")
    assert app.session.tick() == ["slow"]
    assert app.session["slow"].is_running
    assert app.session["slow"].running_since is not None
    assert app.session.tick() == []
    release.set()
    assert app.session.wait_idle(10)


def test_changes_from_a_thread_task_are_seen_at_once(app) -> None:
    def modify(session=Session()) -> None:
        session["target"].force_run = True
        for task in session.tasks:
            task.disable = True

    app.task("false", func=noop, name="target")
    app.task("true", func=modify, name="modify")
    assert step(app) == ["modify"]
    assert all(t.disabled for t in app.session.tasks)
    assert app.session.seconds_until_wake() == 0.0
    assert step(app) == ["target"]


def test_markers(app) -> None:
    got: dict[str, Any] = {}

    def job(
        me=Task(),
        other=Task("noop"),
        key=Arg("api_key"),
        flag=TerminationFlag(),
        secret=Private("hunter2"),
    ) -> None:
        got.update(me=me, other=other, key=key, flag=flag, secret=secret)
        print("the secret is", secret)
        raise ValueError(f"leaked {secret}")

    app.params(api_key="k-123")
    app.task("false", func=noop)
    task = app.task("true", func=job)
    step(app)
    assert got["me"] is task and got["other"] is app.session["noop"]
    assert got["key"] == "k-123" and got["secret"] == "hunter2"
    assert isinstance(got["flag"], threading.Event)
    (record,) = log_of(app, "job")
    assert "hunter2" not in record["output"] and "***" in record["output"]
    assert "hunter2" not in record["exc_text"]
    assert repr(Private("hunter2")) == "Private(***)"


def test_session_parameters_fill_matching_arguments(app) -> None:
    seen: list[str] = []
    app.params(city="Oulu")
    app.task("true", func=lambda city: seen.append(city), name="weather")
    step(app)
    assert seen == ["Oulu"]


def test_run_wrappers_surround_each_run(app) -> None:
    entered: list[tuple[str, str, str]] = []

    @contextmanager
    def wrapper(task: Any, run_id: str):
        entered.append(("in", task.name, threading.current_thread().name))
        yield
        entered.append(("out", task.name, run_id))

    remove = app.session.add_run_wrapper(wrapper)
    app.task("true", func=noop)
    step(app)
    remove()
    assert entered[0][:2] == ("in", "noop") and "noop" in entered[0][2]
    assert entered[1][:2] == ("out", "noop")


# -- timeouts, end_cond, terminate ------------------------------------------------------


def test_thread_timeout_sets_the_flag_and_logs_terminate(app, clock) -> None:
    def patient(flag=TerminationFlag()) -> None:
        assert flag.wait(10), "never asked to stop"

    # 'every 1 hour': its end may be acknowledged within the tick that terminates it, and
    # it must not start again there (wait_idle would wait for that run).
    app.task("every 1 hour", func=patient, timeout="5 minutes")
    assert app.session.tick() == ["patient"]
    clock.advance("5 minutes")
    app.session.tick()
    assert app.session.wait_idle(10)
    (record,) = log_of(app, "patient")
    assert record["action"] == "terminate"
    assert "timeout" in record["exc_text"]


def test_end_cond_and_terminate(app, clock) -> None:
    def patient(flag=TerminationFlag()) -> None:
        flag.wait(10)

    app.task("false", func=patient, end_cond="time of day after 10:00")
    app.task("false", func=patient, name="manual")
    app.session["patient"].run()
    app.session["manual"].run()
    app.session.tick()
    app.session["manual"].terminate()
    clock.set("2024-03-11 10:00")
    app.session.tick()
    assert app.session.wait_idle(10)
    assert log_of(app, "patient")[0]["action"] == "terminate"
    assert "end_cond" in log_of(app, "patient")[0]["exc_text"]
    assert log_of(app, "manual")[0]["action"] == "terminate"


# -- errors at start and in conditions -------------------------------------------------------


def test_missing_path_is_a_logged_failure_when_silenced(make_app, tmp_path: Path) -> None:
    app = make_app(silence_task_prerun=True)
    app.task("true", path=str(tmp_path / "nope.py"), func_name="main", name="ghost")
    (tmp_path / "there.py").write_text("def other():\n    pass\n")
    app.task("true", path=str(tmp_path / "there.py"), func_name="main", name="wrongname")
    app.task("true", func=noop)
    assert step(app) == ["noop"]  # the scheduler goes on
    ghost = log_of(app, "ghost")[0]
    assert ghost["action"] == "fail" and "does not exist" in ghost["exc_text"]
    wrong = log_of(app, "wrongname")[0]
    assert wrong["action"] == "fail"
    assert "no function 'main'" in wrong["exc_text"] and "other" in wrong["exc_text"]


def test_prerun_error_stops_the_scheduler_unless_silenced(app, tmp_path: Path) -> None:
    app.task("true", path=str(tmp_path / "nope.py"), func_name="main", name="ghost")
    with pytest.raises(SchedulerError, match=r"ghost.*does not exist"):
        app.session.tick()
    assert log_of(app, "ghost")[0]["action"] == "fail"  # recorded all the same


def test_missing_command_and_bad_parameters(make_app) -> None:
    app = make_app(silence_task_prerun=True)
    app.task("true", command=["no-such-command-xyz", "arg"], name="nocmd")
    app.task("true", func=noop, parameters={"unexpected": 1})
    app.task("true", func=lambda key=Arg("missing"): None, name="noarg")
    step(app)
    assert "not found" in log_of(app, "nocmd")[0]["exc_text"]
    assert "unexpected" in log_of(app, "noop")[0]["exc_text"]
    assert "app.params(missing=" in log_of(app, "noarg")[0]["exc_text"]


@pytest.mark.parametrize("silence", [True, False])
def test_condition_that_raises(make_app, silence: bool, caplog) -> None:
    app = make_app(silence_cond_check=silence)
    app.task(Exploding(), func=noop, name="bad")
    app.task("true", func=other)
    if silence:
        assert step(app) == ["other"]
        assert "condition blew up" in caplog.text
        assert log_of(app, "bad") == []
    else:
        with pytest.raises(SchedulerError, match=r"condition of task 'bad'.*blew up"):
            app.session.tick()


def test_scheduler_survives_silenced_errors_in_run_loop(
    make_app, tmp_path: Path, wait_for: Any
) -> None:
    app = make_app(silence_task_prerun=True, silence_cond_check=True)
    app.task(Exploding(), func=noop, name="bad")
    app.task("true", path=str(tmp_path / "nope.py"), func_name="main", name="ghost")
    app.task("false", func=other)
    app.start()
    app.session["other"].run()
    # (A loop of wait_idle() returned at once while the forced run had not started yet,
    # and gave up after 100 quick looks on a loaded machine.)
    wait_for(lambda: log_of(app, "other"), "the forced run of 'other' to be recorded")
    assert app.is_running
    assert app.shut_down(timeout=5)
    assert log_of(app, "other")[0]["action"] == "success"


@pytest.mark.slow
def test_process_run_refuses_session_and_unpicklable(make_app) -> None:
    app = make_app(silence_task_prerun=True)
    lock = threading.Lock()
    app.task(
        "true",
        func=lambda session=Session(): None,
        name="wants_session",
        execution="process",
    )
    app.task("true", func=lambda obj=lock: None, name="unpicklable", execution="process")
    step(app)
    assert "separate process" in log_of(app, "wants_session")[0]["exc_text"]
    assert "pickle" in log_of(app, "unpicklable")[0]["exc_text"]


# -- status and the run log -----------------------------------------------------------------


@pytest.mark.parametrize("from_logs", [True, False])
def test_status_table_and_log(make_app, clock, from_logs: bool) -> None:
    app = make_app(force_status_from_logs=from_logs)

    def fails() -> None:
        raise RuntimeError("x")

    app.task("every 1 hour", func=noop)
    app.task("every 1 hour", func=fails)
    app.task("daily", func=other, disabled=True)
    step(app)
    clock.advance("1 hour")
    step(app)
    status = app.session.status()
    assert list(status.columns) == STATUS_COLUMNS
    rows = status.set_index("name").to_dict("index")
    assert rows["noop"]["status"] == "success" and rows["noop"]["runs"] == 2
    assert rows["fails"]["status"] == "fail" and rows["fails"]["fails"] == 2
    assert pd.isna(rows["other"]["status"]) and rows["other"]["disabled"]
    assert rows["noop"]["last_run"] == clock.now()
    assert rows["noop"]["next_due"] == clock.now().replace(hour=11)
    task = app.session["fails"]
    assert task.last_fail == clock.now() and task.last_success is None
    log = app.session.get_task_log()
    assert list(log.columns) == LOG_COLUMNS
    assert len(log) == 4
    assert list(app.session.get_task_log(task="fails", action="fail")["action"]) == ["fail"] * 2
    assert len(app.session.get_task_log(since=clock.now())) == 2
    assert len(app.session.get_task_log(limit=1)) == 1


def test_thread_ends_are_written_before_they_are_acknowledged(app) -> None:
    """Ends go to the end writer: each run's record is committed before its status,
    run_ended and wait_idle say it ended; run_started comes first; returns are kept."""
    seen: list[tuple[str, str | None, Any]] = []

    def on_event(event: str, task: str | None) -> None:
        if event == "run_ended" and task is not None:
            seen.append((event, task, app.session.runlog.last(task, "success")))
        elif event == "run_started":
            seen.append((event, task, None))

    def give(n: int = 0) -> int:
        return n

    names = [f"t{i}" for i in range(40)]
    for i, name in enumerate(names):
        app.task("true", func=give, name=name, parameters={"n": i}, execution="thread")
    unsubscribe = app.session.subscribe(on_event)
    try:
        step(app)
    finally:
        unsubscribe()
    for i, name in enumerate(names):
        events = [(e, v) for e, t, v in seen if t == name]
        assert [e for e, _ in events] == ["run_started", "run_ended"], name
        assert events[1][1] is not None  # committed when run_ended was emitted
        assert app.session[name].status == "success"
        assert app.session.returns[name] == i
    assert not app.session.running_runs
