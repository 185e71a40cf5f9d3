"""A step that launches many runs writes their starts in batches, without changing what
starts, in which order, or what a start error does."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import log_of, step

from redengine_nb import RedEngine, SchedulerError
from redengine_nb._engine.launch import _FIRST_START_BATCH, _START_BATCH
from redengine_nb.records import Action
from redengine_nb.testing import FakeClock

GUARD = 30.0


def noop() -> None:
    pass


def _count_batches(app: Any) -> list[int]:
    sizes: list[int] = []
    runlog = app.session.runlog
    inner = runlog.claim_starts

    def spy(tasks: Any, **kwargs: Any) -> Any:
        sizes.append(len(tasks))
        return inner(tasks, **kwargs)

    runlog.claim_starts = spy
    return sizes


def test_many_due_tasks_start_in_few_transactions(app) -> None:
    count = 2 * _START_BATCH + 10
    # The first batch is small (its runs begin sooner), each next one 4x, up to the cap.
    expected, left, size = [], count, _FIRST_START_BATCH
    while left > 0:
        expected.append(min(size, left))
        left -= expected[-1]
        size = min(4 * size, _START_BATCH)
    assert expected[0] == _FIRST_START_BATCH < _START_BATCH and _START_BATCH in expected
    for i in range(count):
        app.task("true", func=noop, name=f"t{i:04d}")
    sizes = _count_batches(app)
    started = step(app)
    assert sorted(started) == sorted(f"t{i:04d}" for i in range(count))
    assert sizes == expected
    records = app.session.runlog.records()
    assert len(records) == count
    assert {r.action for r in records} == {Action.SUCCESS}
    assert app.session.runlog.open_runs() == []


def test_a_start_error_still_starts_what_came_before_it(app, tmp_path: Path) -> None:
    for i in range(5):
        app.task("true", func=noop, name=f"early{i}", priority=10)
    app.task("true", func_name="main", path=str(tmp_path / "missing.py"), name="broken", priority=5)
    app.task("true", func=noop, name="late", priority=0)
    with pytest.raises(SchedulerError, match="broken"):
        app.session.tick()
    assert app.session.wait_idle(GUARD)
    for i in range(5):
        assert [r["action"] for r in log_of(app, f"early{i}")] == ["success"]
    assert [r["action"] for r in log_of(app, "broken")] == ["fail"]
    assert log_of(app, "late") == []


def test_a_main_run_goes_alone_after_the_runs_before_it(make_app) -> None:
    app = make_app(task_execution="main")
    seen: dict[str, Any] = {}
    runlog = app.session.runlog

    def first() -> None:
        seen["threaded started"] = runlog.last("threaded", Action.RUN) is not None
        seen["second started"] = runlog.last("second", Action.RUN) is not None

    app.task("true", func=noop, name="threaded", execution="thread", priority=3)
    app.task("true", func=first, name="first", priority=2)
    app.task("true", func=noop, name="second", priority=1)
    assert step(app) == ["threaded", "first", "second"]
    assert seen == {"threaded started": True, "second started": False}


def test_a_failed_start_write_starts_nothing_and_is_not_retried(app) -> None:
    from redengine_nb.errors import RunLogError

    for i in range(_START_BATCH + 1):
        app.task("true", func=noop, name=f"t{i}")
    calls: list[int] = []

    def broken(tasks: Any, **kwargs: Any) -> Any:
        calls.append(len(tasks))
        raise RunLogError("disk full")

    app.session.runlog.claim_starts = broken
    with pytest.raises(RunLogError, match="disk full"):
        app.session.tick()
    assert calls == [_FIRST_START_BATCH]  # the step stops there; not tried again
    assert app.session.running_runs == 0
    assert app.session.runlog.records() == []


class _SlowStepClock(FakeClock):
    """A fake clock that moves 1 ms each time it is read: a step that takes time."""

    def time(self) -> float:
        self.advance(0.001)
        return super().time()


def test_each_run_records_when_it_was_made_ready_and_is_due_again_on_the_step_cadence() -> None:
    clock = _SlowStepClock("2024-03-11 09:00", tz="Europe/Helsinki")
    app = RedEngine({"task_execution": "thread"}, logs=":memory:", clock=clock)
    try:
        for i in range(3):
            app.task("every 1 minute", func=noop, name=f"t{i}")
        assert step(app) == ["t0", "t1", "t2"]
        records = sorted(app.session.runlog.records(), key=lambda r: r.task_name)
        created = {r.created for r in records}
        starts = [r.start for r in records]
        assert len(created) == 1  # when the step found them due
        assert starts == sorted(starts) and len(set(starts)) == 3  # each its own start
        assert all(s is not None and s > records[0].created for s in starts)
        # They were due at the step's instant and started within a minute of it: all
        # three are due again a minute after that instant, not each after its own start.
        clock.set(datetime.fromtimestamp(records[0].created + 60 - 0.005, clock.tz))
        assert step(app) == []
        clock.set(datetime.fromtimestamp(records[0].created + 60, clock.tz))
        assert step(app) == ["t0", "t1", "t2"]
    finally:
        app.shut_down(timeout=5)
        app.session.wait_idle(5)
        app.session.close_executors(terminate=True)
