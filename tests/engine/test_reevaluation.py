"""A run's start or end makes the scheduler look again at exactly the conditions that read
that task: its own, and those of the tasks that named it (on the fake clock, no sleeping)."""

from __future__ import annotations

from engine_helpers import step

from redengine_nb import RedEngine
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
    assert app.session._readers == {"a": {"b"}}  # c and a read only themselves


def test_a_deleted_reader_is_forgotten(app: RedEngine, clock: FakeClock) -> None:
    app.task("daily", func=lambda: None, name="a")
    app.task("after task 'a'", func=lambda: None, name="b")
    step(app)
    assert app.session._readers == {"a": {"b"}}
    app.session.delete_task("b")
    assert app.session._readers == {} and "b" not in app.session._reads
    clock.advance("1 day")
    assert step(app) == ["a"]
