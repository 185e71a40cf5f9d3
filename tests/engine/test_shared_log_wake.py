"""Two schedulers on one SQLite run log: a run that ends in one wakes the other, which
has nothing due by the clock (its own wake-up cap is an hour). SQLite pushes nothing; the
store's watcher (``redengine_nb/runlog/sqlite_watch.py``) notices the other writer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from redengine_nb.records import Action
from redengine_nb.runlog import sqlite_watch
from redengine_nb.runlog.sqlite import SQLiteRunLog

SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).resolve().parents[2]
GUARD = 60.0  # well below the follower's hour: only a wake from the log gets there


@pytest.mark.slow
def test_a_run_ending_in_one_scheduler_wakes_the_other(tmp_path: Path) -> None:
    log = tmp_path / "runs.db"
    marks = tmp_path / "marks.txt"
    SQLiteRunLog(log).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    follower = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "follower_app.py"), str(log), str(marks)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().strip() == "ready"  # stepped once, now waits
        # The other scheduler (this process, its own connection) runs 'fetch'.
        with SQLiteRunLog(log) as other:
            lease = other.acquire_lease(now=100.0, ttl=3600.0, host="other", pid=os.getpid())
            (run,) = other.claim_starts(
                ["fetch"], created=100.0, start=100.0, owner=lease, recheck=lambda t: t
            )
            other.finish_run(run.run_id, Action.SUCCESS, end=101.0)
            _out, err = follower.communicate(timeout=GUARD)
            other.release_lease(lease)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait(GUARD)
    assert follower.returncode == 0, err
    assert marks.read_text() == "report\n"
    with SQLiteRunLog(log) as store:
        assert [(r.task_name, r.action) for r in store.records()] == [
            ("fetch", Action.SUCCESS),
            ("report", Action.SUCCESS),
        ]


@pytest.mark.parametrize("mode", ["inotify", "poll"])
def test_own_writes_do_not_wake_the_watcher_and_others_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    if mode == "poll":  # as where inotify is not available
        monkeypatch.setattr(sqlite_watch, "_inotify", lambda path: None)
    elif not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux's")
    path = tmp_path / "runs.db"
    with SQLiteRunLog(path) as mine, SQLiteRunLog(path) as theirs:
        woke = threading.Event()
        calls: list[int] = []

        def changed() -> None:
            calls.append(1)
            woke.set()

        lease = mine.acquire_lease(now=100.0, ttl=3600.0, host="mine", pid=1)
        mine.on_change(changed)
        assert mine.watching is None  # alone on the file: no watcher, no wake-up
        theirs.acquire_lease(now=100.0, ttl=3600.0, host="theirs", pid=2)
        assert mine.renew_lease(lease, now=101.0, ttl=3600.0)  # the heartbeat sees them
        assert mine.watching == mode
        watcher = mine._watcher
        assert watcher is not None
        assert woke.wait(30.0)  # called once: what they wrote before is not known
        woke.clear()
        calls.clear()
        for i in range(50):
            run = mine.start_run("own", created=float(i), start=float(i), owner="me")
            mine.finish_run(run.run_id, Action.SUCCESS, end=i + 0.5)
        # A look now finds no change: our own commits do not move data_version (had they,
        # this look or the watcher's would have called back).
        assert mine._watch_look()
        assert calls == []
        assert mine.last("fetch", Action.SUCCESS) is None  # cached: no record yet
        run = theirs.start_run("fetch", created=1.0, start=1.0, owner="them")
        theirs.finish_run(run.run_id, Action.SUCCESS, end=2.0)
        assert woke.wait(30.0)
        # The cache does not serve the answer read before the other's write.
        assert mine.last("fetch", Action.SUCCESS) == 2.0
        assert mine.count("fetch", Action.SUCCESS) == 1  # the counts were dropped too
    assert not watcher._thread.is_alive()  # closing stopped it


def test_a_memory_log_has_no_watcher() -> None:
    with SQLiteRunLog(":memory:") as store:
        remove = store.on_change(lambda: None)
        assert store.watching is None
        remove()


def test_watch_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="watch_interval must be a number of seconds above 0"):
        SQLiteRunLog(tmp_path / "runs.db", watch_interval=0)
