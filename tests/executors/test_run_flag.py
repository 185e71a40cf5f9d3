"""RunFlag: a run's stop flag, whose threading.Event is made only when a task asks."""

from __future__ import annotations

import threading

from redengine_nb.executors.base import RunFlag, RunSpec


def test_no_event_until_asked() -> None:
    flag = RunFlag()
    assert RunSpec("t", "1", lambda: None).flag.made_event() is None
    assert not flag.is_set()
    flag.set()
    assert flag.is_set() and flag.made_event() is None
    event = flag.event()
    assert isinstance(event, threading.Event) and event.is_set()  # set before it was made
    assert flag.event() is event


def test_event_made_first_is_set_with_the_flag() -> None:
    flag = RunFlag()
    event = flag.event()
    assert not event.is_set()
    flag.set()
    assert event.is_set() and flag.wait(0)


def test_hooks_run_once_when_set_or_at_once_if_set_already() -> None:
    flag = RunFlag()
    calls: list[str] = []
    flag.on_set(lambda: calls.append("early"))
    assert calls == []
    flag.set()
    flag.set()  # a second set() runs nothing again
    flag.on_set(lambda: calls.append("late"))
    assert calls == ["early", "late"]


def test_set_from_another_thread_wakes_a_waiter() -> None:
    flag = RunFlag()
    event = flag.event()
    setter = threading.Thread(target=flag.set)
    setter.start()
    assert event.wait(10)
    setter.join()
    assert repr(flag) == "RunFlag(set)"
