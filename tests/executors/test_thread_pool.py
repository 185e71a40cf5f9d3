"""The thread executor reuses idle workers, never makes a run wait for another, and keeps
each run's output its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from redengine_nb.clock import SystemClock
from redengine_nb.executors.base import RunOutcome, RunSpec
from redengine_nb.executors.thread import ThreadExecutor
from redengine_nb.records import Action

GUARD = 30.0


def _spec(name: str, target: Callable[[], Any]) -> RunSpec:
    return RunSpec(name, name, target)


def _run(executor: ThreadExecutor, name: str, target: Callable[[], Any]) -> threading.Event:
    """Start a run; the returned event is set (with ``outcomes[name]``) when it ended."""
    ended = threading.Event()

    def on_done(outcome: RunOutcome) -> None:
        outcomes[name] = outcome
        ended.set()

    executor.start(_spec(name, target), on_done)
    return ended


outcomes: dict[str, RunOutcome] = {}


def _until(predicate: Callable[[], bool]) -> None:
    """Spin until ``predicate()`` (a worker's bookkeeping after its run), at most GUARD s."""
    deadline = threading.Event()
    timer = threading.Timer(GUARD, deadline.set)
    timer.start()
    try:
        while not predicate():
            assert not deadline.is_set(), "timed out"
    finally:
        timer.cancel()


def test_an_idle_worker_is_reused_and_output_stays_per_run() -> None:
    executor = ThreadExecutor(SystemClock())
    threads: list[str] = []
    try:
        for i in range(5):

            def target(i: int = i) -> int:
                threads.append(threading.current_thread().name)
                print(f"run {i}")
                return i

            assert _run(executor, f"job{i}", target).wait(GUARD)
            _until(lambda: executor._idle == 1)  # it counts itself idle after on_done
        assert executor.worker_count == 1
        assert threads == [f"redengine_nb:job{i}" for i in range(5)]
        for i in range(5):
            outcome = outcomes[f"job{i}"]
            assert outcome.action is Action.SUCCESS and outcome.return_value == i
            assert outcome.output == f"run {i}\n"
    finally:
        executor.shutdown(terminate=True)


def test_a_blocked_run_never_delays_another() -> None:
    executor = ThreadExecutor(SystemClock())
    release = threading.Event()
    try:
        blocked = _run(executor, "blocker", lambda: release.wait(GUARD))
        for i in range(3):  # each starts though every existing worker is busy
            assert _run(executor, f"quick{i}", lambda: None).wait(GUARD)
        assert not blocked.is_set()
        assert executor.worker_count >= 2
        release.set()
        assert blocked.wait(GUARD)
        assert outcomes["blocker"].action is Action.SUCCESS
    finally:
        release.set()
        executor.shutdown(terminate=True)


def test_terminate_sets_the_flag_and_shutdown_ends_idle_workers() -> None:
    executor = ThreadExecutor(SystemClock())
    spec = RunSpec("patient", "p1", lambda: None)
    spec.target = lambda: spec.flag.wait(GUARD)
    ended = threading.Event()
    handle = executor.start(spec, lambda outcome: ended.set())
    assert handle.is_alive()
    executor.shutdown(terminate=True)
    assert ended.wait(GUARD)
    assert not handle.is_alive()
    _until(lambda: executor._idle == 1)
    executor.shutdown(terminate=False)  # ends the idle worker
    _until(lambda: executor.worker_count == 0)


def test_an_idle_worker_ends_after_keepalive() -> None:
    executor = ThreadExecutor(SystemClock(), keepalive=0.01)
    workers: list[threading.Thread] = []
    assert _run(executor, "once", lambda: workers.append(threading.current_thread())).wait(GUARD)
    workers[0].join(GUARD)
    assert not workers[0].is_alive()
    assert executor.worker_count == 0
    # and a later run starts a new worker
    assert _run(executor, "twice", lambda: workers.append(threading.current_thread())).wait(GUARD)
    assert workers[1] is not workers[0]
    executor.shutdown(terminate=False)


def test_a_burst_waits_for_the_few_eager_workers() -> None:
    """Past ``eager`` workers, trivial runs queue for the first worker back instead of each
    starting a thread (patience is huge here, so the watcher adds none)."""
    executor = ThreadExecutor(SystemClock(), eager=2, patience=3600.0)
    try:
        ended = [_run(executor, f"burst{i}", lambda i=i: i) for i in range(200)]
        assert all(e.wait(GUARD) for e in ended)
        assert executor.worker_count == 2
        assert [outcomes[f"burst{i}"].return_value for i in range(200)] == list(range(200))
        _until(lambda: executor._idle == 2 and executor._backlog == 0)
    finally:
        executor.shutdown(terminate=True)


def test_runs_that_never_return_get_a_worker_each() -> None:
    """Five runs that can only end together (a barrier of five) on an executor that starts
    one worker eagerly: the watcher must add a worker per waiting run."""
    executor = ThreadExecutor(SystemClock(), eager=1, patience=0.001)
    barrier = threading.Barrier(5, timeout=GUARD)
    try:
        ended = [_run(executor, f"meet{i}", barrier.wait) for i in range(5)]
        assert all(e.wait(GUARD) for e in ended)
        assert all(outcomes[f"meet{i}"].action is Action.SUCCESS for i in range(5))
        assert executor.worker_count == 5
    finally:
        executor.shutdown(terminate=True)
