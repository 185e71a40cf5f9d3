"""A wrong clock step, then corrected (issue 12, item 7): records from far in the future
stop suppressing runs once the step back is larger than ``clock_step_tolerance``; small
steps keep "nothing fires twice"."""

from __future__ import annotations

from pathlib import Path

from redengine_nb import RedEngine
from redengine_nb.records import Action
from redengine_nb.testing import FakeClock

GUARD = 30.0


def _job() -> None:
    pass


def _step(app: RedEngine) -> list[str]:
    started = app.session.tick()
    assert app.session.wait_idle(GUARD)
    return started


def test_a_ten_year_step_corrected_does_not_silence_daily(tmp_path: Path) -> None:
    clock = FakeClock("2024-03-11 09:00", tz="UTC")
    app = RedEngine({"task_execution": "thread"}, logs=str(tmp_path / "runs.db"), clock=clock)
    try:
        app.task("daily", func=_job, name="job")
        assert _step(app) == ["job"]
        clock.set("2034-03-11 09:00")  # the wrong step: one tick ten years ahead
        assert _step(app) == ["job"]
        assert app.session.clock_step is None
        clock.set("2024-03-12 09:00")  # corrected: the next day
        assert _step(app) == ["job"]  # the 2034 run does not count as done today
        assert app.session.clock_step is not None
        assert "went back" in app.session.clock_step
        assert _step(app) == []  # and today's run does: once a day
        assert app.session["job"].status == "success"
    finally:
        app.session.close_executors(terminate=True)
        app.runlog.close()
    # A new scheduler on the same log sees the future record at its start.
    clock = FakeClock("2024-03-13 09:00", tz="UTC")
    again = RedEngine({"task_execution": "thread"}, logs=str(tmp_path / "runs.db"), clock=clock)
    try:
        again.task("daily", func=_job, name="job")
        assert again.session.clock_step is not None
        assert _step(again) == ["job"]
        runs = again.session.runlog.count("job", Action.SUCCESS)
        assert runs == 4
    finally:
        again.session.close_executors(terminate=True)
        again.runlog.close()


def test_a_small_step_back_keeps_nothing_fires_twice() -> None:
    clock = FakeClock("2024-03-11 23:59:30", tz="UTC")
    app = RedEngine({"task_execution": "thread"}, logs=":memory:", clock=clock)
    try:
        app.task("daily", func=_job, name="job")
        clock.set("2024-03-12 00:00:30")
        assert _step(app) == ["job"]
        clock.set("2024-03-12 00:00:10")  # 20 s back: within the tolerance
        assert _step(app) == []
        assert app.session.clock_step is None
    finally:
        app.session.close_executors(terminate=True)


def test_the_warning_clears_itself_when_the_clock_catches_up() -> None:
    clock = FakeClock("2024-03-11 09:00", tz="UTC")
    app = RedEngine({"task_execution": "thread"}, logs=":memory:", clock=clock)
    changes: list[str | None] = []
    app.session.subscribe(
        lambda event, name=None: (
            changes.append(app.session.clock_step) if event == "warning_changed" else None
        )
    )
    try:
        app.task("daily", func=_job, name="job")
        clock.set("2024-03-11 12:00")
        assert _step(app) == ["job"]
        clock.set("2024-03-11 10:00")  # two hours back
        _step(app)
        assert app.session.clock_step is not None
        clock.set("2024-03-11 11:56")  # 4 minutes behind the highest reading: within 300 s
        _step(app)
        assert app.session.clock_step is None
        assert changes[0] is not None and changes[-1] is None
        clock.set("2024-03-11 09:30")  # a new step is reported again
        _step(app)
        assert app.session.clock_step is not None
    finally:
        app.session.close_executors(terminate=True)


def test_dismissing_hides_the_warning_but_keeps_its_effect() -> None:
    clock = FakeClock("2024-03-11 09:00", tz="UTC")
    app = RedEngine({"task_execution": "thread"}, logs=":memory:", clock=clock)
    try:
        app.task("daily", func=_job, name="job")
        assert app.session.dismiss_clock_step() is False  # nothing to dismiss
        clock.set("2034-03-11 09:00")
        assert _step(app) == ["job"]
        clock.set("2024-03-12 09:00")
        assert _step(app) == ["job"]
        assert app.session.clock_step is not None
        assert app.session.dismiss_clock_step() is True
        assert app.session.clock_step is None
        assert app.session.dismiss_clock_step() is False
        # Still in effect: the 2034 run does not count as the 13th's run.
        clock.set("2024-03-13 09:00")
        assert _step(app) == ["job"]
        assert app.session.clock_step is None
    finally:
        app.session.close_executors(terminate=True)
