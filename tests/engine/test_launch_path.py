"""The launch path: due runs start while the later conditions are still looked at, in the
fair order; the runner is not woken by its own events; the thread workers are made
before the first step (fake clock: no timing is asserted)."""

from __future__ import annotations

import threading
from typing import Any

from redengine_nb import RedEngine
from redengine_nb.executors.thread import ThreadExecutor

GUARD = 30.0


def test_the_first_due_runs_start_before_the_last_condition_is_looked_at(
    app: RedEngine,
) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def note(what: str) -> None:
        with lock:
            seen.append(what)

    @app.cond("probe")
    def probe(**_: Any) -> bool:  # looked at once per task, in the fair order
        note("look")
        return True

    app.session.subscribe(lambda event, task: note("start") if event == "run_started" else None)
    for i in range(100):
        app.task("probe", func=lambda: None, name=f"t{i:02d}", execution="thread")
    started = app.session.tick()
    assert app.session.wait_idle(GUARD)
    assert sorted(started) == [f"t{i:02d}" for i in range(100)]
    assert seen.count("look") == 100 and seen.count("start") == 100
    # Before: all 100 looks, then the 100 starts. Now the first batch starts after the
    # first chunk of looks.
    assert seen.index("start") < len(seen) - 1 - seen[::-1].index("look")


def test_due_runs_start_in_priority_then_registration_order_across_chunks(
    app: RedEngine,
) -> None:
    expected: list[tuple[int, int, str]] = []
    for i in range(300):  # more than the first chunks (16, 64, 256)
        priority = 2 if i % 7 == 0 else (1 if i % 3 == 0 else 0)
        name = f"t{i:03d}"
        app.task(
            "every 1 minute", func=lambda: None, name=name, execution="thread", priority=priority
        )
        expected.append((-priority, i, name))
    started = app.session.tick()
    assert app.session.wait_idle(GUARD)
    assert started == [name for _, _, name in sorted(expected)]


def test_an_event_the_runner_emits_itself_does_not_wake_it(app: RedEngine) -> None:
    session = app.session
    session.wake.clear()
    session.runner_thread = threading.get_ident()
    try:
        session._emit("run_started", "x")  # the runner looks how long to sleep after
        assert not session.wake.is_set()
    finally:
        session.runner_thread = None
    other = threading.Thread(target=session._emit, args=("run_ended", "x"))
    other.start()
    other.join(GUARD)
    assert session.wake.is_set()  # another thread's event wakes it


def test_the_thread_workers_are_made_before_the_first_step(app: RedEngine) -> None:
    began = threading.Event()
    steps: list[int] = []
    session = app.session
    workers: list[int] = []

    def on_event(event: str, task: str | None) -> None:
        if event == "scheduler_started":
            executor = session.launcher._executors.get("thread")
            workers.append(executor.worker_count if isinstance(executor, ThreadExecutor) else 0)
            steps.append(session.cycles)
            began.set()

    session.subscribe(on_event)
    app.task("every 1 hour", func=lambda: None, name="a", execution="thread")
    app.start()
    try:
        assert began.wait(GUARD)
    finally:
        app.shut_down()
    assert steps == [0]  # no step taken yet
    assert workers and workers[0] >= 2
