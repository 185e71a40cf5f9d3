"""The run log failing under a running scheduler (issue 12, items 5 and 6): a run that
ends on a full disk keeps its outcome until it can be written; a log file deleted while
serving stops the scheduler with an error, never a clean exit."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redengine_nb import RedEngine
from redengine_nb.errors import RunLogError
from redengine_nb.records import Action
from redengine_nb.runlog.base import RunLogLost
from redengine_nb.testing import FakeClock

GUARD = 60.0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB file system (tmpfs), so that the disk really fills up."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root only): {done.stderr!r}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue  # ENOSPC: go on with smaller writes
    finally:
        os.close(fd)


def test_a_run_ending_on_a_full_disk_keeps_its_outcome_until_written(
    small_fs: Path, wait_for: Any
) -> None:
    clock = FakeClock("2024-03-11 09:00", tz="UTC")
    app = RedEngine({"task_execution": "thread"}, logs=str(small_fs / "runs.db"), clock=clock)
    go = threading.Event()
    filler = small_fs / "filler"
    try:
        app.task("every 1 hour", func=lambda: go.wait(GUARD) and "done", name="job")
        assert app.session.tick() == ["job"]
        _fill(filler)
        go.set()  # the run ends on a full disk
        wait_for(lambda: app.session.store_error is not None, "the store error", GUARD)
        assert "full" in app.session.store_error  # type: ignore[operator]
        assert app.session.is_task_running("job")  # not acknowledged: not started again
        assert app.session.tick() == []
        os.unlink(filler)
        app.session.ends.retry_wake.set()  # do not wait for the next retry
        assert app.session.wait_idle(GUARD)
        assert app.session.store_error is None
        [record] = app.session.runlog.records(task="job")
        assert record.action is Action.SUCCESS
    finally:
        go.set()
        app.session.close_executors(terminate=True)
        app.runlog.close()


def test_a_log_deleted_while_serving_stops_the_scheduler_with_an_error(
    tmp_path: Path, wait_for: Any
) -> None:
    log = tmp_path / "runs.db"
    clock = FakeClock("2024-03-11 09:00", tz="UTC")
    app = RedEngine({"task_execution": "thread"}, logs=str(log), clock=clock)
    go = threading.Event()
    try:
        app.task("every 1 hour", func=lambda: go.wait(GUARD), name="job")
        assert app.session.tick() == ["job"]
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{log}{suffix}"):
                os.unlink(f"{log}{suffix}")
        go.set()
        wait_for(lambda: app.session.fatal_error is not None, "the fatal error", GUARD)
        assert isinstance(app.session.fatal_error, RunLogLost)
        assert app.session.stop_requested
        with pytest.raises(RunLogError, match="deleted or replaced"):
            app.session.runlog.start_run("x", created=1.0, start=1.0, owner="me")
    finally:
        go.set()
        app.session.close_executors(terminate=True)
        app.runlog.close()


def test_log_retention_deletes_old_runs_in_the_end_writer(tmp_path: Path) -> None:
    clock = FakeClock("2024-03-11 09:00", tz="UTC")
    app = RedEngine(
        {"task_execution": "thread", "log_retention": "2 runs"},
        logs=str(tmp_path / "runs.db"),
        clock=clock,
    )
    try:
        app.task("every 1 minute", func=lambda: None, name="job")
        for _ in range(5):
            assert app.session.tick() == ["job"]
            assert app.session.wait_idle(GUARD)
            clock.advance("1 minute")
        ends = [r.end for r in app.session.runlog.records(task="job")]
        # pruned after each end (one pass a minute): the newest two are left
        assert len(ends) == 2 and ends == sorted(ends)
        assert app.session.runlog.last("job", Action.SUCCESS) == ends[-1]
    finally:
        app.session.close_executors(terminate=True)
        app.runlog.close()
