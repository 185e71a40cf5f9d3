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
