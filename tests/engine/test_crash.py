"""Runs cut off by a dying process: a process task killed with SIGKILL while the scheduler
lives (``fail``), and a scheduler process killed mid-run and started again on the same
SQLite log (its open run becomes ``crash``; a ``daily`` task done today stays done).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from redengine_nb import RedEngine
from redengine_nb.records import Action
from redengine_nb.runlog.sqlite import SQLiteRunLog

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and FIFOs")

SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).resolve().parents[2]
GUARD = 60.0


def read_fifo(path: Path) -> str:
    """Block until a writer has opened the FIFO, written and closed it (guarded)."""
    seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        with open(path) as fifo:
            seen.append(fifo.read())
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    assert done.wait(GUARD), f"nothing was written to {path}"
    return seen[0]


def test_process_task_killed_mid_run_is_logged_as_a_failure(
    make_app: Callable[..., RedEngine], tmp_path: Path
) -> None:
    app = make_app(task_execution="process")

    def report_pid_and_block(fifo: str) -> None:
        # Defined here, so cloudpickle ships it by value: the child need not import this
        # test module (and pandas with it).
        with open(fifo, "w") as pipe:
            pipe.write(str(os.getpid()))
        threading.Event().wait(600)

    fifo = tmp_path / "pid.fifo"
    os.mkfifo(fifo)
    app.task("true", func=report_pid_and_block, name="victim", parameters={"fifo": str(fifo)})
    assert app.session.tick() == ["victim"]
    pid = int(read_fifo(fifo))
    assert pid != os.getpid()
    assert app.session["victim"].is_running
    os.kill(pid, signal.SIGKILL)
    assert app.session.wait_idle(GUARD)
    log = app.session.get_task_log(task="victim")
    assert list(log["action"]) == ["fail"]
    assert log["exc_text"].iloc[0] == "process killed by signal 9 (SIGKILL)"
    assert app.session["victim"].status == "fail"
    assert not app.session["victim"].is_running


def records(path: Path, task: str) -> list[tuple[Action, str | None]]:
    store = SQLiteRunLog(path)
    try:
        return [(r.action, r.output) for r in store.records(task=task)]
    finally:
        store.close()


@pytest.mark.slow
def test_scheduler_killed_mid_run_and_restarted_on_the_same_log(tmp_path: Path) -> None:
    log = tmp_path / "runs.db"
    fifo = tmp_path / "started.fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = [sys.executable, str(SCRIPTS / "crash_app.py"), str(log), str(fifo)]

    first = subprocess.Popen(
        script,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_fifo(fifo) == "running"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(GUARD)
    assert first.returncode == -signal.SIGKILL
    assert records(log, "daily_job") == [(Action.SUCCESS, "daily work done\n")]
    assert [action for action, _ in records(log, "long")] == [Action.RUN]

    second = subprocess.run(
        [*script, "again"], env=env, capture_output=True, text=True, timeout=GUARD
    )
    assert second.returncode == 0, second.stderr

    assert [action for action, _ in records(log, "long")] == [Action.CRASH]
    # daily_job finished today before the crash: the second scheduler did not run it again.
    assert records(log, "daily_job") == [(Action.SUCCESS, "daily work done\n")]
    assert records(log, "probe") == [(Action.SUCCESS, "probe ran\n")]
