"""A run's start or end makes the scheduler look again at exactly the conditions that read
that task: its own, and those of the tasks that named it (on the fake clock, no sleeping)."""

from __future__ import annotations

import threading

from engine_helpers import step

from redengine_nb import RedEngine
from redengine_nb.executors.thread import ThreadExecutor
from redengine_nb.testing import FakeClock


def test_a_run_of_a_makes_its_readers_due_without_the_clock_moving(
    app: RedEngine, clock: FakeClock
) -> None:
    app.task("daily", func=lambda: None, name="a")
    app.task("after task 'a'", func=lambda: None, name="b")
    app.task("daily", func=lambda: None, name="c")  # reads only itself
    assert sorted(step(app)) == ["a", "c"]
    # a's end marked b for a look: the next step (same instant) starts it.
    assert app.session.seconds_until_wake() == 0.0
    assert step(app) == ["b"]
    assert step(app) == []
    assert app.session.seconds_until_wake(cap=86400) > 3600  # nothing until tomorrow
    assert app.session.step._readers == {"a": {"b"}}  # c and a read only themselves


def test_a_deleted_reader_is_forgotten(app: RedEngine, clock: FakeClock) -> None:
    app.task("daily", func=lambda: None, name="a")
    app.task("after task 'a'", func=lambda: None, name="b")
    step(app)
    assert app.session.step._readers == {"a": {"b"}}
    app.session.delete_task("b")
    assert app.session.step._readers == {} and "b" not in app.session.step._reads
    clock.advance("1 day")
    assert step(app) == ["a"]


class _OneSlot(ThreadExecutor):
    """A thread executor with room for one run at a time (as max_process_count=1)."""

    def capacity(self) -> int | None:
        return 1 - len(self._handles)


def test_a_task_waiting_for_a_slot_is_started_when_a_run_ends_and_never_spins(
    app: RedEngine,
) -> None:
    release = threading.Event()
    app.session.launcher._executors["thread"] = _OneSlot(app.session.clock)
    app.task("daily", func=lambda: release.wait(30), name="a", priority=2)
    app.task("daily", func=lambda: None, name="b")
    app.task("false", func=lambda: None, name="c").run()  # a forced run waits too
    assert app.session.tick() == ["a"]
    # b and c are due but there is no slot: nothing to do until a run ends (no spin).
    assert app.session.seconds_until_wake() == 60.0
    assert app.session.tick() == []
    assert app.session.seconds_until_wake() == 60.0
    release.set()
    assert app.session.wait_idle(30)
    assert app.session.seconds_until_wake() == 0.0  # a's end frees the slot
    assert app.session.tick() == ["b"]  # one slot: b, then c
    assert app.session.wait_idle(30)
    assert app.session.tick() == ["c"]


def test_the_clock_makes_due_only_the_tasks_whose_time_came(
    app: RedEngine, clock: FakeClock
) -> None:
    # Registered out of the order of their periods: due tasks of equal priority start in
    # registration order, and a step starts only those whose time came.
    for minutes in (3, 1, 2):
        app.task(f"every {minutes} minutes", func=lambda: None, name=f"m{minutes}")
    assert step(app) == ["m3", "m1", "m2"]
    assert step(app) == []  # their ends made them dirty: looked at, none due
    assert app.session.seconds_until_wake() == 60.0
    clock.advance("1 minute")
    assert step(app) == ["m1"]
    clock.advance("1 minute")
    assert step(app) == ["m1", "m2"]
    clock.advance("1 minute")
    assert step(app) == ["m3", "m1"]
    clock.advance("30 seconds")
    assert step(app) == []
    assert app.session.seconds_until_wake() == 30.0


def test_a_clock_set_back_looks_at_every_task_again(app: RedEngine, clock: FakeClock) -> None:
    app.task("time of day between 08:00 and 08:30", func=lambda: None, name="a")
    assert step(app) == []  # 09:00: next look tomorrow at 08:00
    clock.set("2024-03-11 08:10")  # back into today's window
    assert step(app) == ["a"]
