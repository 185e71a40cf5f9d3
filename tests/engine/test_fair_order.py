"""The order among due tasks when not all can start (no free slot): priority first, then
the one that has waited longest, then registration order (fake clock)."""

from __future__ import annotations

import threading

from redengine_nb import RedEngine
from redengine_nb.executors.thread import ThreadExecutor
from redengine_nb.testing import FakeClock

GUARD = 30.0


class _OneSlot(ThreadExecutor):
    """A thread executor with room for one run at a time (as max_process_count=1)."""

    def capacity(self) -> int | None:
        return 1 - len(self._handles)


def _one_slot(app: RedEngine) -> None:
    app.session.launcher._executors["thread"] = _OneSlot(app.session.clock)


def test_a_task_waiting_for_a_slot_starts_before_one_registered_earlier_due_later(
    app: RedEngine, clock: FakeClock
) -> None:
    _one_slot(app)
    release = threading.Event()
    app.task("every 1 minute", func=lambda: release.wait(GUARD), name="a", execution="thread")
    assert app.session.tick() == ["a"]  # 09:00:00, holds the only slot
    clock.advance("30 seconds")
    app.task("every 1 minute", func=lambda: None, name="b", execution="thread")
    assert app.session.tick() == []  # b is due since 09:00:30: no slot
    clock.advance("30 seconds")  # 09:01:00: a is due again once its run ends
    release.set()
    assert app.session.wait_idle(GUARD)
    # Registration order alone would start a (registered first) and starve b, which has
    # waited 30 s longer.
    assert app.session.tick() == ["b"]
    assert app.session.wait_idle(GUARD)
    assert app.session.tick() == ["a"]
    assert app.session.wait_idle(GUARD)


def test_priority_comes_before_waiting(app: RedEngine, clock: FakeClock) -> None:
    _one_slot(app)
    release = threading.Event()
    app.task("every 1 minute", func=lambda: release.wait(GUARD), name="a", execution="thread")
    assert app.session.tick() == ["a"]
    app.task("every 1 minute", func=lambda: None, name="b", execution="thread")
    assert app.session.tick() == []  # b waits since 09:00:00
    clock.advance("30 seconds")
    app.task("every 1 minute", func=lambda: None, name="c", execution="thread", priority=1)
    assert app.session.tick() == []  # c waits since 09:00:30, with a higher priority
    release.set()
    assert app.session.wait_idle(GUARD)
    assert app.session.tick() == ["c"]
    assert app.session.wait_idle(GUARD)
    assert app.session.tick() == ["b"]
    assert app.session.wait_idle(GUARD)


def test_equally_long_waiting_tasks_start_in_registration_order(
    app: RedEngine, clock: FakeClock
) -> None:
    _one_slot(app)
    for name in ("x", "y", "z"):
        app.task("every 1 minute", func=lambda: None, name=name, execution="thread")
    started: list[str] = []
    for _ in range(3):
        started += app.session.tick()
        assert app.session.wait_idle(GUARD)
    assert started == ["x", "y", "z"]
