"""Thread runs that do not end, and thread runs that fork (issue 12, items 8 and 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from redengine_nb import RedEngine
from redengine_nb.clock import SystemClock
from redengine_nb.executors.base import RunOutcome, RunSpec
from redengine_nb.executors.thread import STILL_RUNNING, ThreadExecutor
from redengine_nb.testing import FakeClock

GUARD = 30.0


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :][:1].decode()


def test_a_thread_run_that_ignores_terminate_is_ended_after_the_grace(wait_for: Any) -> None:
    release = threading.Event()
    executor = ThreadExecutor(SystemClock(), grace=0.05)
    outcomes: list[RunOutcome] = []
    reported = threading.Event()

    def on_done(outcome: RunOutcome) -> None:
        outcomes.append(outcome)
        reported.set()

    def stubborn() -> str:
        release.wait(GUARD)  # does not look at its flag
        return "too late"

    handle = executor.start(RunSpec("stubborn", "s1", stubborn), on_done)
    handle.terminate()
    assert reported.wait(GUARD)
    assert [(o.action.value, o.exc_text) for o in outcomes] == [("terminate", STILL_RUNNING)]
    assert handle.is_alive()  # its thread still runs...
    release.set()
    wait_for(lambda: not handle.is_alive(), "the thread returned")
    assert len(outcomes) == 1  # ...and what it returned later is not recorded
    executor.shutdown(terminate=False)


def test_a_thread_task_past_its_timeout_is_recorded_terminate_while_it_still_runs() -> None:
    clock = FakeClock("2024-03-11 09:00", tz="UTC")
    app = RedEngine({"task_execution": "thread"}, logs=":memory:", clock=clock)
    release = threading.Event()

    def loops_forever() -> None:
        release.wait(GUARD)  # a loop that never checks its TerminationFlag

    try:
        app.task("every 1 hour", func=loops_forever, timeout="1 minute")
        assert app.session.tick() == ["loops_forever"]
        clock.advance("2 minutes")
        app.session.tick()  # past the timeout: terminate (grace: 2 real seconds)
        assert app.session.wait_idle(GUARD)  # the run ended although its thread has not
        [record] = app.session.runlog.records(task="loops_forever")
        assert record.action.value == "terminate"
        assert record.exc_text is not None
        assert "timeout of 60 s" in record.exc_text and "still running" in record.exc_text
    finally:
        release.set()
        app.session.close_executors(terminate=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_zombies_a_thread_run_forked_are_reaped_but_not_those_popen_waits_for(
    wait_for: Any,
) -> None:
    executor = ThreadExecutor(SystemClock())
    forked: list[int] = []
    kept: list[subprocess.Popen[bytes]] = []
    ended = threading.Event()

    def forks() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        forked.append(pid)
        wait_for(lambda: _state(pid) == "Z", "the child ended")  # the task never waits
        proc = subprocess.Popen(["sh", "-c", "exit 3"])
        kept.append(proc)  # its owner waits for it later
        wait_for(lambda: _state(proc.pid) == "Z", "the command ended")

    executor.start(RunSpec("forks", "f1", forks), lambda outcome: ended.set())
    assert ended.wait(GUARD)
    wait_for(lambda: _state(forked[0]) is None, "the zombie reaped")  # after the run
    assert _state(kept[0].pid) == "Z"  # left to its Popen...
    assert kept[0].wait(GUARD) == 3  # ...which gets its true status
    executor.shutdown(terminate=False)
