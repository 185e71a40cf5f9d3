"""A task's runs and fails counts stay true as records are written: by this log (kept as
it writes) and by another connection (seen at the next refresh)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from redengine_nb.records import Action, RunRecord
from redengine_nb.runlog import SQLiteRunLog
from redengine_nb.runlog.base import end_runs, start_runs


def _fresh(path: Path, task: str) -> tuple[int, int]:
    """The counts as a query over the file says them."""
    with sqlite3.connect(path) as conn:
        runs = conn.execute(
            "SELECT COUNT(*) FROM runs WHERE task_name = ? AND start IS NOT NULL", (task,)
        ).fetchone()[0]
        fails = conn.execute(
            "SELECT COUNT(*) FROM runs WHERE task_name = ? AND action = 'fail'", (task,)
        ).fetchone()[0]
    return runs, fails


def _counts(log: SQLiteRunLog, task: str) -> tuple[int, int]:
    return log.count(task, Action.RUN), log.count(task, Action.FAIL)


def test_counts_follow_every_kind_of_write(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    log = SQLiteRunLog(path)
    assert _counts(log, "a") == (0, 0)  # counted (and kept) before any write
    one = log.start_run("a", created=1.0, start=1.0, owner="me")
    assert _counts(log, "a") == (1, 0)
    log.finish_run(one.run_id, Action.FAIL, end=2.0)
    two, three = start_runs(log, ["a", "a"], created=3.0, start=3.0, owner="me")
    assert _counts(log, "a") == (3, 1)
    end_runs(log, [("a", two.run_id, Action.FAIL, 4.0, None, None)])
    end_runs(log, [("a", three.run_id, Action.SUCCESS, 4.0, None, None)])
    log.log_run(RunRecord("", "a", Action.FAIL, 5.0, None, 5.0))  # failed before its start
    log.log_run(RunRecord("", "a", Action.SUCCESS, 6.0, 6.0, 6.5))
    assert _counts(log, "a") == _fresh(path, "a") == (4, 3)
    assert log.count("a", Action.FAIL, since=4.5) == 1  # a span is still a query
    log.close()


def test_another_writer_is_seen_at_the_next_refresh(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    ours, theirs = SQLiteRunLog(path), SQLiteRunLog(path)
    assert _counts(ours, "a") == (0, 0)
    run = theirs.start_run("a", created=1.0, start=1.0, owner="them")
    theirs.finish_run(run.run_id, Action.FAIL, end=2.0)
    ours.refresh()
    assert _counts(ours, "a") == (1, 1)
    ours.close()
    theirs.close()
