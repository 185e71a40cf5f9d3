"""``redengine-nb serve`` as users run it: in its own process, stopped by --for or signals.

Slow-ish (each test starts one or two interpreters); kept short with ``--for 3s``.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import REPO, cli_command, cli_env, run_cli, start_cli

from redengine_nb.records import Action
from redengine_nb.runlog import SQLiteRunLog
from redengine_nb.runlog.base import is_lease_id

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

#: Tasks each shipped notebook must have run successfully within a few seconds.
EXPECTED = {
    "etl-demo.ipynb": {"fetch", "transform", "report"},
    "quickstart.ipynb": {"fetch", "report"},
    "dask.ipynb": {"squares"},  # on a LocalCluster that serve starts (and closes)
    "advanced.ipynb": {
        "run_things",
        "job_main",
        "hello_command",
        "hello",
        "do_things",
        "cell_task",
        "do_modify_tasks",
        "do_restart",
        "do_shutdown",
    },
}


def _records(db: Path) -> dict[str, list[Action]]:
    log = SQLiteRunLog(db)
    try:
        return {name: [r.action for r in log.records(task=name)] for name in log.task_names()}
    finally:
        log.close()


WaitFor = Any  # the root conftest's wait_for fixture


def alive(proc: subprocess.Popen[str]) -> Callable[[], None]:
    """A ``wait_for`` check: fail at once, with its output, if the server has ended."""

    def check() -> None:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"serve ended early: rc={proc.returncode}\n{out}\n{err}")

    return check


def test_every_shipped_notebook_is_listed() -> None:
    assert {p.name for p in NOTEBOOKS} == set(EXPECTED)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_serve_each_notebook_for_a_few_seconds(notebook: Path, tmp_path: Path) -> None:
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)
    db = tmp_path / "runs.db"
    done = run_cli("serve", copy.name, "--for", "3s", "--logs", str(db), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    records = _records(db)
    for task in EXPECTED[notebook.name]:
        assert Action.SUCCESS in records.get(task, []), (task, records, done.stdout)
    assert all(Action.RUN not in actions for actions in records.values())
    progress = {
        line.split()[2]
        for line in done.stdout.splitlines()
        if re.match(r"\d{4}-\d\d-\d\d ", line) and line.split()[3] == "success"
    }
    assert EXPECTED[notebook.name] <= progress
    assert "\ntask " in done.stdout  # the status table at the end

    status = run_cli("status", "--logs", str(db), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[3:]}
    for task in EXPECTED[notebook.name]:
        assert rows[task] == "success"


SLOW_TASK = """
from pathlib import Path
from redengine_nb.args import TerminationFlag

@app.task('daily', execution='thread')
def slow(flag=TerminationFlag()):
    Path('started').write_text('yes')
    stopped_early = flag.wait({seconds})
    print('stopped early' if stopped_early else 'did all its work')
"""


@pytest.mark.parametrize("instant", [False, True], ids=["wait", "instant"])
def test_sigterm_during_a_running_task(
    write_nb: Callable[..., Path], tmp_path: Path, instant: bool, wait_for: WaitFor
) -> None:
    nb = write_nb([SLOW_TASK.format(seconds=2.0)])
    db = tmp_path / "runs.db"
    extra = ["--config", "instant_shutdown=true"] if instant else []
    proc = start_cli("serve", nb.name, "--logs", str(db), *extra, cwd=tmp_path)
    wait_for(
        (tmp_path / "started").exists,
        "the task started",
        60,
        check=alive(proc),
        on_timeout=proc.kill,
    )
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "serve: stopping (SIGTERM)" in out

    log = SQLiteRunLog(db)
    try:
        assert log.open_runs() == []  # the log is consistent
        (run,) = log.records(task="slow")
    finally:
        log.close()
    assert run.runtime is not None
    if instant:
        assert run.action is Action.TERMINATE
        assert run.runtime < 2.0
    else:
        assert run.action is Action.SUCCESS
        assert run.runtime >= 1.9
        assert "did all its work" in (run.output or "")
    assert f"slow                     {run.action.value}" in out


def test_sigkill_then_serve_again_on_the_same_log(
    write_nb: Callable[..., Path], tmp_path: Path, wait_for: WaitFor
) -> None:
    nb = write_nb(["%%task daily --name quick\nprint('quick ran')", SLOW_TASK.format(seconds=120)])
    db = tmp_path / "runs.db"
    proc = start_cli("serve", nb.name, "--logs", str(db), cwd=tmp_path)

    def quick_done_and_slow_started() -> bool:
        if not (tmp_path / "started").exists() or not db.exists():
            return False
        return Action.SUCCESS in _records(db).get("quick", [])

    wait_for(
        quick_done_and_slow_started,
        "quick to finish and slow to start",
        60,
        check=alive(proc),
        on_timeout=proc.kill,
    )
    # status from another process while the server is writing the log
    status = run_cli("status", "--logs", str(db), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    table, fleet = status.stdout.split("\nschedulers (leases):\n")
    rows = {x.split()[0]: x.split()[1] for x in table.splitlines()[3:]}
    assert rows == {"quick": "success", "slow": "running"}
    # the server's lease, seen from another process, owning the open run
    [lease] = fleet.splitlines()[2:]
    assert " alive " in lease
    proc.kill()  # SIGKILL: no clean-up at all
    proc.communicate(timeout=30)
    assert _records(db)["slow"] == [Action.RUN]  # left open

    again = run_cli(
        "serve",
        nb.name,
        "--logs",
        str(db),
        "--for",
        "3s",
        "--config",
        "instant_shutdown=true",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    records = _records(db)
    assert records["quick"] == [Action.SUCCESS]  # finished today: daily does not run it again
    assert records["slow"][0] is Action.CRASH
    assert records["slow"][1:] == [Action.TERMINATE]  # ran again (a crash is no finish)
    crash_lines = [line for line in again.stdout.splitlines() if " crash " in line]
    assert len(crash_lines) == 1 and "left open by a process that died" in crash_lines[0]


@pytest.mark.parametrize("mode", ["replace", "relaunch", "fresh"])
def test_serve_restarts_with_a_new_interpreter(mode: str, tmp_path: Path) -> None:
    # advanced.ipynb restarts once (do_restart), then do_shutdown stops the new process;
    # replace is a new interpreter in the same process (exec), the others a new process.
    copy = tmp_path / "advanced.ipynb"
    shutil.copy(REPO / "notebooks" / "advanced.ipynb", copy)
    db = tmp_path / "runs.db"
    done = run_cli(
        "serve",
        copy.name,
        "--for",
        "20s",
        "--logs",
        str(db),
        "--config",
        f"restarting={mode}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lives = done.stdout
    if mode == "fresh":  # detached, with its own output: wait (guard) for its final table
        output = tmp_path / "redengine_nb.out"  # in the notebook's folder, serve's cwd
        deadline = time.monotonic() + 60
        while "\ntask " not in (output.read_text() if output.exists() else ""):
            assert time.monotonic() < deadline, done.stdout + done.stderr
            time.sleep(0.1)
        assert "redengine_nb: restarted (fresh) as process" in done.stderr
        assert done.stdout.count("serve: advanced.ipynb: 9 task(s)") == 1, done.stdout
        lives += output.read_text()
    records = _records(db)
    assert records["do_restart"] == [Action.SUCCESS]
    assert records["do_shutdown"] == [Action.SUCCESS]
    assert records["hello"] == [Action.SUCCESS]  # daily: not run again after the restart
    # Two lives: one pipe, or the pipe and fresh's own output.
    assert lives.count("serve: advanced.ipynb: 9 task(s)") == 2, lives
    log = SQLiteRunLog(db)
    try:
        (first_life,) = log.records(task="do_restart")
        (second_life,) = log.records(task="do_shutdown")
    finally:
        log.close()
    # Each life is a scheduler of its own: its own lease (the owner of its runs), even
    # where ``replace`` keeps the process id.
    assert is_lease_id(first_life.owner) and is_lease_id(second_life.owner)
    assert second_life.owner != first_life.owner


def test_a_second_signal_terminates_what_the_first_waits_for(
    write_nb: Callable[..., Path], tmp_path: Path, wait_for: WaitFor
) -> None:
    nb = write_nb([SLOW_TASK.format(seconds=120)])
    db = tmp_path / "runs.db"
    proc = start_cli("serve", nb.name, "--logs", str(db), cwd=tmp_path)
    wait_for(
        (tmp_path / "started").exists,
        "the task started",
        60,
        check=alive(proc),
        on_timeout=proc.kill,
    )
    proc.send_signal(signal.SIGTERM)  # waits for the 120 s task...
    proc.send_signal(signal.SIGINT)  # ...until asked again (Ctrl-C)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "terminating running tasks" in out
    assert [a.value for a in _records(db)["slow"]] == ["terminate"]


STUCK_TASK = """
import threading, time
from pathlib import Path

@app.task('daily', execution='thread')
def stuck():
    Path('started').write_text('yes')
    while True:  # never looks at its TerminationFlag
        time.sleep(0.05)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["second signal", "shutdown_timeout"])
def test_a_thread_task_that_never_returns_does_not_keep_serve_alive(
    how: str, write_nb: Callable[..., Path], tmp_path: Path, wait_for: WaitFor
) -> None:
    nb = write_nb([STUCK_TASK])
    db = tmp_path / "runs.db"
    extra = ["--config", "shutdown_timeout=1"] if how == "shutdown_timeout" else []
    proc = start_cli("serve", nb.name, "--logs", str(db), *extra, cwd=tmp_path)
    try:
        wait_for((tmp_path / "started").exists, "the task started", 60, check=alive(proc))
        proc.send_signal(signal.SIGTERM)
        if how == "second signal":
            proc.send_signal(signal.SIGINT)  # another signal: two SIGTERMs may merge
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
    assert proc.returncode == 0, out + err
    log = SQLiteRunLog(db)
    try:
        [run] = log.records(task="stuck")
        assert log.leases(0.0) == []
    finally:
        log.close()
    assert run.action is Action.TERMINATE
    assert run.exc_text is not None and "still running" in run.exc_text
    reason = "asked to stop again" if how == "second signal" else "shutdown_timeout of 1 s"
    assert reason in run.exc_text


READER_GOES = """
from pathlib import Path
from redengine_nb.args import TerminationFlag

@app.task('daily', execution='thread')
def slow(flag=TerminationFlag()):
    Path('started').write_text('yes')
    stopped_early = flag.wait({seconds})
    print('stopped early' if stopped_early else 'did all its work')
"""

TICKING = """
@app.task('every 0.1 seconds', execution='thread')
def tick():
    pass
"""


@pytest.mark.parametrize("noticed_by", ["a run line", "the --for stop line"])
def test_serve_stops_quietly_when_the_reader_of_its_output_goes(
    write_nb: Callable[..., Path], tmp_path: Path, noticed_by: str, wait_for: WaitFor
) -> None:
    """``serve NB | head -2``: once head has exited, serve stops like on SIGTERM (the
    running task finishes and is recorded), prints no traceback and exits 141.

    The broken pipe is met either by the line of a run that ended (``tick``), or by
    serve's own "stopping (--for)" line, which must not count as a second stop request
    (that would terminate ``slow`` instead of waiting for it)."""
    if noticed_by == "a run line":
        nb, duration = write_nb([READER_GOES.format(seconds=2.0), TICKING]), "10m"
    else:
        nb, duration = write_nb([READER_GOES.format(seconds=5.0)]), "3s"
    db = tmp_path / "runs.db"
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            cli_command("serve", nb.name, "--logs", str(db), "--for", duration),
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        assert proc.stdout is not None
        try:
            for _ in range(2):  # what `head -2` reads: the two lines of the header
                assert proc.stdout.readline()
            wait_for(
                (tmp_path / "started").exists,
                "the task started",
                60,
                check=alive(proc),
                on_timeout=proc.kill,
            )
            proc.stdout.close()  # the reader exits: serve's next line meets a broken pipe
            proc.wait(timeout=60)  # a guard (with 10m, --for would stop it much later)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert errors.read_text() == ""  # quiet: no BrokenPipeError traceback
    assert proc.returncode == 141  # 128 + SIGPIPE, as a shell reports `cat` in `cat | head`
    log = SQLiteRunLog(db)
    try:
        assert log.open_runs() == []  # a clean stop: every run was recorded with its end
        (run,) = log.records(task="slow")
        ticks = log.records(task="tick")
    finally:
        log.close()
    assert run.action is Action.SUCCESS  # waited for, as on SIGTERM
    assert "did all its work" in (run.output or "")
    assert all(r.action is Action.SUCCESS for r in ticks)
    assert bool(ticks) == (noticed_by == "a run line")
