"""``every``: a run that started a little late counts from the instant it was due, so a
steady schedule keeps its cadence; one that started a period or more late counts from
its start, as Red Engine's "no run started within the period" says (fake clock)."""

from __future__ import annotations

from pathlib import Path

from engine_helpers import step

from redengine_nb import RedEngine
from redengine_nb.testing import FakeClock


def test_a_late_start_does_not_push_the_next_due_instant(app: RedEngine, clock: FakeClock) -> None:
    app.task("every 1 minute", func=lambda: None, name="a")
    assert step(app) == ["a"]  # 09:00:00
    assert step(app) == []
    assert app.session.seconds_until_wake() == 60.0
    clock.advance("61 seconds")  # due at 09:01:00, the step runs at 09:01:01
    assert step(app) == ["a"]
    assert step(app) == []
    # Due again at 09:02:00 (its due instant + 1 minute), not 09:02:01.
    assert app.session.seconds_until_wake() == 59.0
    clock.advance("58 seconds")
    assert step(app) == []
    clock.advance("1 second")
    assert step(app) == ["a"]


def test_a_start_a_period_late_counts_from_the_start(app: RedEngine, clock: FakeClock) -> None:
    app.task("every 1 minute", func=lambda: None, name="a")
    assert step(app) == ["a"]  # 09:00:00
    clock.advance("150 seconds")  # due at 09:01:00, started at 09:02:30
    assert step(app) == ["a"]
    assert step(app) == []
    assert app.session.seconds_until_wake() == 60.0  # 09:03:30


def test_a_run_this_scheduler_did_not_start_counts_from_its_start(
    clock: FakeClock, tmp_path: Path
) -> None:
    first = RedEngine({"task_execution": "thread"}, logs=str(tmp_path / "log.db"), clock=clock)
    first.task("every 1 minute", func=lambda: None, name="a")
    assert step(first) == ["a"]  # 09:00:00
    clock.advance("61 seconds")
    assert step(first) == ["a"]  # due 09:01:00, started 09:01:01
    first.session.runlog.close()
    # A new scheduler on the same log knows only the start: 09:02:01.
    second = RedEngine({"task_execution": "thread"}, logs=str(tmp_path / "log.db"), clock=clock)
    second.task("every 1 minute", func=lambda: None, name="a")
    assert step(second) == []
    assert second.session.seconds_until_wake() == 60.0
    second.session.runlog.close()
