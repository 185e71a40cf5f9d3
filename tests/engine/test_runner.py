"""The runner thread: starts at once, wakes on events, stops promptly, restarts (recall)."""

from __future__ import annotations

import threading
import time

from engine_helpers import log_of

from redengine_nb.args import Session


def noop() -> None:
    pass


def test_start_returns_at_once_and_shut_down_joins_quickly(app, wait_for) -> None:
    app.task("every 1 hour", func=noop)
    events: list[str] = []
    app.session.subscribe(lambda e, t: events.append(e))
    app.start()
    assert app.is_running
    wait_for(lambda: len(log_of(app, "noop")) == 1)
    begin = time.monotonic()
    assert app.shut_down()
    assert time.monotonic() - begin < 1.0
    assert not app.is_running
    assert events[0] == "scheduler_started" and events[-1] == "scheduler_stopped"


def test_runner_sleeps_until_an_event_or_the_clock_moves(app, clock, wait_for) -> None:
    app.task("every 1 hour", func=noop)
    app.start()
    wait_for(lambda: len(log_of(app, "noop")) == 1)
    # nothing due for an hour: it sleeps the whole cap
    wait_for(lambda: app.session.seconds_until_wake() == 60.0)
    app.task("false", func=lambda: None, name="late").run()  # an event wakes it
    wait_for(lambda: len(log_of(app, "late")) == 1)
    clock.advance("1 hour")  # a fake clock move wakes it
    wait_for(lambda: len(log_of(app, "noop")) == 2)
    app.shut_down()


def test_shutdown_from_inside_a_task(app) -> None:
    def stop(session=Session()) -> None:
        session.shut_down()

    app.task("true", func=stop)
    app.run()  # blocks until the task stops it
    assert log_of(app, "stop")[0]["action"] == "success"


def test_shut_cond(make_app, clock) -> None:
    app = make_app(shut_cond="task 'noop' has succeeded")
    app.task("true", func=noop)
    app.run()
    assert log_of(app, "noop")[0]["action"] == "success"


def test_restart_recall_keeps_the_process(make_app) -> None:
    app = make_app(restarting="recall")
    events: list[str] = []
    app.session.subscribe(lambda e, t: events.append(e))

    def restart_once(session=Session()) -> None:
        if events.count("scheduler_started") == 1:
            session.restart()
        else:
            session.shut_down()

    app.task("true", func=restart_once)
    app.run()
    assert events.count("scheduler_started") == 2
    assert events.count("scheduler_stopped") == 2
    assert [r["action"] for r in log_of(app, "restart_once")] == ["success", "success"]


def test_run_raises_what_stopped_it(app, tmp_path, wait_for) -> None:
    import pytest

    from redengine_nb import SchedulerError

    app.task("true", path=str(tmp_path / "missing.py"), func_name="main", name="ghost")
    with pytest.raises(SchedulerError, match="ghost"):
        app.run()
    app.start()
    wait_for(lambda: not app.is_running)
    assert isinstance(app.error, SchedulerError)


def test_instant_shutdown_terminates_running_tasks(make_app, wait_for) -> None:
    from redengine_nb.args import TerminationFlag

    app = make_app(instant_shutdown=True)
    app.task("true", func=lambda flag=TerminationFlag(): flag.wait(30), name="long")
    app.start()
    wait_for(lambda: app.session["long"].is_running)
    assert app.shut_down(timeout=5)
    assert log_of(app, "long")[0]["action"] == "terminate"


def test_a_shutdown_after_a_restart_request_wins(make_app) -> None:
    # A restart asked for and then a shutdown before the runner carried it out: the
    # runner stops for good instead of coming back (the shutdown must not be lost).
    app = make_app(restarting="recall")
    events: list[str] = []
    app.session.subscribe(lambda e, t: events.append(e))

    def restart_then_stop(session=Session()) -> None:
        session.restart()
        session.shut_down()

    app.task("true", func=restart_then_stop)
    app.run()
    assert events.count("scheduler_started") == 1
    assert not app.session.take_restart()


def test_tick_works_again_after_the_scheduler_stopped(app, clock, wait_for) -> None:
    app.task("every 1 hour", func=noop)
    app.start()
    wait_for(lambda: len(log_of(app, "noop")) == 1)
    assert app.shut_down()
    clock.advance("1 hour")
    assert app.session.tick() == ["noop"]


def test_disabled_and_running_tasks_do_not_keep_the_runner_awake(app) -> None:
    # A disabled task, and a running task with another forced run queued behind it,
    # cannot be due before an event (enable, run ended): the runner must sleep, not spin.
    app.task("every 1 hour", func=noop, name="off", disabled=True)
    started, release = threading.Event(), threading.Event()

    def block(n: int = 0) -> None:
        started.set()
        release.wait(10)

    app.task("false", func=block, name="busy")
    app.session["busy"].run(n=1)
    app.session["busy"].run(n=2)  # queued: runs with parameters are not merged
    try:
        assert app.session.tick() == ["busy"]
        assert started.wait(5)
        app.session.tick()
        assert app.session.seconds_until_wake(cap=60.0) == 60.0
    finally:
        release.set()
    assert app.session.wait_idle(5)
    assert app.session.seconds_until_wake() == 0.0  # the queued forced run is due now
    assert app.session.tick() == ["busy"]


def test_a_signal_landing_on_another_thread_is_handled_at_once(app, wait_for, start_thread) -> None:
    # app.run() in the main thread (as a service runs it) sleeps for the wake-up cap when
    # nothing is due. A SIGTERM the system delivers to some other thread must still reach
    # the main thread's handler at once, not when the sleep ends.
    import signal

    app.task("every 1 hour", func=noop)
    handled = threading.Event()

    def on_term(signum, frame) -> None:
        handled.set()
        app.session.shut_down()

    def send_from_another_thread() -> None:
        wait_for(lambda: len(log_of(app, "noop")) == 1)
        wait_for(lambda: app.session.seconds_until_wake() == 60.0)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        # A failure in the sender stops the scheduler, so app.run() returns and the
        # failure is raised here (it would otherwise leave app.run() waiting for ever).
        sender = start_thread(send_from_another_thread, on_error=app.session.shut_down)
        begin = time.monotonic()
        app.run()
        elapsed = time.monotonic() - begin
    finally:
        signal.signal(signal.SIGTERM, previous)
    sender.result()
    assert handled.is_set()
    assert elapsed < 30, f"the handler waited for the sleep to end ({elapsed:.1f} s)"


def test_a_custom_condition_that_turns_true_by_itself_is_noticed(app, clock) -> None:
    # A custom phrase reads the world outside the scheduler: no event announces its
    # change, so the scheduler must look at it again on its own, not only after events.
    ready = {"file": False}

    @app.cond("input is ready")
    def input_is_ready() -> bool:
        return ready["file"]

    app.task("input is ready", func=noop, name="consume")
    assert app.session.tick() == []
    wait = app.session.seconds_until_wake(cap=60.0)
    assert 0 < wait <= 1.0  # it sleeps, briefly, instead of forever or not at all
    ready["file"] = True
    clock.advance(wait)
    assert app.session.tick() == ["consume"]
