"""Batched starts and group-committed finishes: nothing acknowledged is lost or half-made."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from redengine_nb.errors import RunLogError
from redengine_nb.records import Action
from redengine_nb.runlog import RunLog, SQLiteRunLog
from redengine_nb.runlog.base import RunLogBase

GUARD = 30.0


def test_start_runs_writes_all_and_is_visible_at_once(runlog: RunLog) -> None:
    assert isinstance(runlog, RunLogBase)
    assert runlog.last("a", Action.RUN) is None  # cached as "none" before the write
    records = runlog.start_runs(["a", "b", "a"], created=5.0, start=5.5, owner="me")
    assert [r.task_name for r in records] == ["a", "b", "a"]
    assert len({r.run_id for r in records}) == 3
    assert all(r.action is Action.RUN and r.start == 5.5 for r in records)
    assert runlog.last("a", Action.RUN) == 5.5
    assert runlog.last("b", Action.RUN) == 5.5
    assert runlog.count("a", Action.RUN) == 2
    assert sorted(r.run_id for r in runlog.open_runs()) == sorted(r.run_id for r in records)
    runlog.finish_run(records[1].run_id, Action.SUCCESS, end=6.0)
    assert runlog.last("b", Action.SUCCESS) == 6.0
    assert runlog.start_runs([], created=7.0, start=7.0, owner="me") == []


@pytest.mark.parametrize("where", ["file", "memory"])
def test_start_runs_is_all_or_nothing(tmp_path: Path, where: str) -> None:
    log = SQLiteRunLog(tmp_path / "runs.db" if where == "file" else ":memory:")
    try:
        assert log.last("a", Action.RUN) is None
        with pytest.raises(RunLogError):
            # the second name cannot be stored: the first must not be either
            log.start_runs(["a", object(), "c"], created=1.0, start=1.0, owner="me")  # type: ignore[list-item]
        assert log.records() == []
        assert log.last("a", Action.RUN) is None
        assert log.count("a") == 0
    finally:
        log.close()


def _commits(log: SQLiteRunLog) -> list[str]:
    seen: list[str] = []
    log._conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def _run_while_locked(log: SQLiteRunLog, calls: list[Callable[[], Any]]) -> list[Any]:
    """Start ``calls`` on threads while the connection is held, so that they all queue;
    then let go: one of them commits for all. Returns each call's result or exception."""
    results: list[Any] = [None] * len(calls)

    def body(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(calls))]
    with log._lock:
        for thread in threads:
            thread.start()
        deadline = threading.Event()
        timer = threading.Timer(GUARD, deadline.set)
        timer.start()
        try:
            while len(log._queue) < len(calls):  # they queue, then wait for the lock
                assert not deadline.is_set(), "the writers never queued"
        finally:
            timer.cancel()
    for thread in threads:
        thread.join(GUARD)
        assert not thread.is_alive()
    return results


def test_concurrent_finishes_share_one_commit(tmp_path: Path) -> None:
    with SQLiteRunLog(tmp_path / "runs.db") as log:
        runs = log.start_runs([f"t{i}" for i in range(20)], created=1.0, start=1.0, owner="me")
        commits = _commits(log)
        results = _run_while_locked(
            log,
            [
                lambda r=r: log.finish_run(r.run_id, Action.SUCCESS, end=2.0, output=r.task_name)
                for r in runs
            ],
        )
        assert len(commits) == 1
        assert [r.action for r in results] == [Action.SUCCESS] * 20
        assert log.open_runs() == []
        for r in runs:
            assert log.last(r.task_name, Action.SUCCESS) == 2.0
        # and they are in the file, not just in this connection's view
        with SQLiteRunLog(tmp_path / "runs.db") as other:
            assert [(r.action, r.output) for r in other.records()] == [
                (Action.SUCCESS, f"t{i}") for i in range(20)
            ]


def test_a_refused_write_fails_alone_in_its_group(tmp_path: Path) -> None:
    with SQLiteRunLog(tmp_path / "runs.db") as log:
        a, b = log.start_runs(["a", "b"], created=1.0, start=1.0, owner="me")
        log.finish_run(b.run_id, Action.FAIL, end=1.5)
        commits = _commits(log)
        results = _run_while_locked(
            log,
            [
                lambda: log.finish_run("999", Action.SUCCESS, end=2.0),  # unknown run
                lambda: log.finish_run(a.run_id, Action.SUCCESS, end=2.0),
                lambda: log.finish_run(b.run_id, Action.SUCCESS, end=2.0),  # already ended
                lambda: log.start_run("c", created=2.0, start=2.0, owner="me"),
            ],
        )
        assert len(commits) == 1
        assert isinstance(results[0], KeyError)
        assert results[1].action is Action.SUCCESS
        assert isinstance(results[2], ValueError) and "already ended" in str(results[2])
        assert results[3].task_name == "c"
        assert log.last("a", Action.SUCCESS) == 2.0
        assert log.last("b", Action.SUCCESS) is None
        assert [r.task_name for r in log.open_runs()] == ["c"]


def test_many_threads_finishing_at_once_lose_nothing(tmp_path: Path) -> None:
    threads_n, per_thread = 32, 25
    with SQLiteRunLog(tmp_path / "runs.db") as log:
        names = [f"t{i}" for i in range(threads_n)]
        runs = [
            log.start_runs(names, created=float(k), start=float(k), owner="me")
            for k in range(per_thread)
        ]
        barrier = threading.Barrier(threads_n)
        errors: list[BaseException] = []

        def finisher(i: int) -> None:
            try:
                barrier.wait(GUARD)
                for k in range(per_thread):
                    record = runs[k][i]
                    done = log.finish_run(record.run_id, Action.SUCCESS, end=k + 0.5)
                    assert done.run_id == record.run_id and done.end == k + 0.5
                    # acknowledged: visible to this process at once
                    assert log.last(record.task_name, Action.SUCCESS) == k + 0.5
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=finisher, args=(i,)) for i in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(GUARD)
        assert errors == []
        assert log.open_runs() == []
        for name in names:
            assert log.count(name, Action.SUCCESS) == per_thread
            assert log.last(name, Action.SUCCESS) == per_thread - 1 + 0.5
    with SQLiteRunLog(tmp_path / "runs.db") as again:  # durable: another connection sees all
        records = again.records()
        assert len(records) == threads_n * per_thread
        assert {r.action for r in records} == {Action.SUCCESS}


def test_start_runs_takes_one_start_time_per_task(runlog: RunLogBase) -> None:
    records = runlog.start_runs(["a", "b"], created=5.0, start=[5.5, 6.5], owner="me")
    assert [(r.task_name, r.created, r.start) for r in records] == [
        ("a", 5.0, 5.5),
        ("b", 5.0, 6.5),
    ]
    assert runlog.last("b", Action.RUN) == 6.5
    with pytest.raises(ValueError, match="1 start times for 2 tasks"):
        runlog.start_runs(["a", "b"], created=5.0, start=[5.5], owner="me")
    assert runlog.count("a") == 1  # the refused batch wrote nothing
