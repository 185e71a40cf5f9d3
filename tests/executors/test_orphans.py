"""Process runs do not outlive their scheduler (issue 12, item 1): a real scheduler process
killed with SIGKILL takes its live children with it; at the next start, a child that is
still alive is killed before its run is marked crash, and run folders are removed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from redengine_nb.executors.orphans import sweep_orphans
from redengine_nb.records import Action
from redengine_nb.runlog.owner import start_token
from redengine_nb.runlog.sqlite import SQLiteRunLog

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl, /proc")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "engine" / "scripts" / "orphan_app.py"
GUARD = 60.0


def _alive(pid: int) -> bool:
    return start_token(pid) is not None  # None: gone or a zombie


def _run_folders() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("redengine-run-")}


@pytest.mark.slow
def test_kill_9_of_the_scheduler_kills_its_process_runs(tmp_path: Path, wait_for: Any) -> None:
    log = tmp_path / "runs.db"
    pidfile = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    scheduler = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(log), str(pidfile)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(pidfile.exists, "the process run started", GUARD)
        child = int(pidfile.read_text())
        assert _alive(child)
        # the run's folder, named after its scheduler (others may be making folders too)
        ours = {n for n in _run_folders() if n.startswith(f"redengine-run-{scheduler.pid}-")}
        assert len(ours) == 1
        os.kill(scheduler.pid, signal.SIGKILL)  # the scheduler alone, not its group
        scheduler.wait(GUARD)
        wait_for(lambda: not _alive(child), "the child died with its scheduler", GUARD)
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait(GUARD)
    assert (ours & _run_folders()) == ours  # the dead scheduler could not clean up
    again = subprocess.run(
        [sys.executable, str(SCRIPT), str(log), str(pidfile), "again"],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert again.returncode == 0, again.stderr
    assert not (ours & _run_folders())  # swept at the next start
    with SQLiteRunLog(log) as store:
        [run] = store.records(task="worker")
    assert run.action is Action.CRASH


@pytest.mark.slow
def test_sweep_kills_a_live_orphan_of_a_dead_scheduler_then_removes_its_folder(
    tmp_path: Path,
) -> None:
    # A dead scheduler: a process that has ended (its pid and start time no longer match).
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone_token = start_token(gone.pid)
    gone.wait(GUARD)
    orphan = subprocess.Popen(["sleep", "600"])
    live = subprocess.Popen(["sleep", "600"])
    try:
        dead_dir = tmp_path / f"redengine-run-{gone.pid}-{gone_token}-abc"
        dead_dir.mkdir()
        (dead_dir / "child").write_text(f"{orphan.pid} {start_token(orphan.pid)}\n")
        # A folder of a live scheduler (this test process): left alone, child and all.
        me = f"{os.getpid()}-{start_token(os.getpid())}"
        live_dir = tmp_path / f"redengine-run-{me}-xyz"
        live_dir.mkdir()
        (live_dir / "child").write_text(f"{live.pid} {start_token(live.pid)}\n")
        # A reused pid: the recorded start time is not the live process's.
        reused_dir = tmp_path / f"redengine-run-{gone.pid}-{gone_token}-def"
        reused_dir.mkdir()
        (reused_dir / "child").write_text(f"{live.pid} t1\n")
        assert sweep_orphans(str(tmp_path)) == [orphan.pid]
        assert orphan.wait(GUARD) == -signal.SIGKILL
        assert live.poll() is None  # neither the live scheduler's child nor a reused pid
        assert not dead_dir.exists() and not reused_dir.exists()
        assert live_dir.exists()
    finally:
        for proc in (orphan, live):
            if proc.poll() is None:
                proc.kill()
                proc.wait(GUARD)


def test_sweep_kills_every_run_child_recorded_in_an_executors_folder(tmp_path: Path) -> None:
    # One folder per executor: each run records its child in "<n>.child".
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone_token = start_token(gone.pid)
    gone.wait(GUARD)
    orphans = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
    try:
        folder = tmp_path / f"redengine-run-{gone.pid}-{gone_token}-abc"
        folder.mkdir()
        for n, orphan in enumerate(orphans, start=1):
            (folder / f"{n}.child").write_text(f"{orphan.pid} {start_token(orphan.pid)}\n")
            (folder / f"{n}.out").write_text("output")
        assert sorted(sweep_orphans(str(tmp_path))) == sorted(p.pid for p in orphans)
        for orphan in orphans:
            assert orphan.wait(GUARD) == -signal.SIGKILL
        assert not folder.exists()
    finally:
        for proc in orphans:
            if proc.poll() is None:
                proc.kill()
                proc.wait(GUARD)


def test_sweep_kills_every_process_in_a_template_folders_children_list(
    tmp_path: Path,
) -> None:
    # The template process's layout: one "children" list, a line per process (itself,
    # then each run's child), the last line possibly cut short by a death mid-write.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone_token = start_token(gone.pid)
    gone.wait(GUARD)
    orphans = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
    try:
        folder = tmp_path / f"redengine-run-{gone.pid}-{gone_token}-abc"
        folder.mkdir()
        lines = [f"{p.pid} {start_token(p.pid)}\n" for p in orphans]
        (folder / "children").write_text(f"{gone.pid} {gone_token}\n" + "".join(lines) + "12")
        assert sorted(sweep_orphans(str(tmp_path))) == sorted(p.pid for p in orphans)
        for orphan in orphans:
            assert orphan.wait(GUARD) == -signal.SIGKILL
        assert not folder.exists()
    finally:
        for proc in orphans:
            if proc.poll() is None:
                proc.kill()
                proc.wait(GUARD)


_BURST_SCHEDULER = """
import os, sys, threading, time
from redengine_nb.executors.base import RunSpec
from redengine_nb.executors.process import ProcessExecutor
from redengine_nb.testing import FakeClock

def wait_forever():
    threading.Event().wait()

executor = ProcessExecutor(6, FakeClock("2024-03-10 09:00", tz="UTC"), start_method="template")
for n in range(3):  # runs that never end
    executor.start(RunSpec("long", str(n), wait_forever), lambda outcome: None)
print(executor._folder, executor._link.proc.pid, flush=True)
n = 0
while True:  # a burst of short runs, until this process is killed
    if executor.capacity():
        n += 1
        executor.start(RunSpec("short", str(n), os.getpid), lambda outcome: None)
        if n == 50:
            print("burst", flush=True)
    else:
        time.sleep(0.001)
"""


def _listed(path: str) -> list[int]:
    with open(path) as fh:
        return [int(line.split()[0]) for line in fh.read().splitlines()]


@pytest.mark.slow
def test_kill_9_of_the_scheduler_mid_burst_ends_its_template_and_every_run(
    wait_for: Any,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    scheduler = subprocess.Popen(
        [sys.executable, "-c", _BURST_SCHEDULER],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert scheduler.stdout is not None
        folder, template = scheduler.stdout.readline().split()
        assert scheduler.stdout.readline() == "burst\n"  # short runs are being started
        listing = os.path.join(folder, "children")
        wait_for(lambda: len(_listed(listing)) > 20, "children noted themselves", GUARD)
        os.kill(scheduler.pid, signal.SIGKILL)
        scheduler.wait(GUARD)
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait(GUARD)
    # The template's list: itself, then every child it forked (each writes its own line).
    listed = _listed(listing)
    assert listed[0] == int(template)
    for pid in listed:
        wait_for(lambda: not _alive(pid), f"process {pid} died with its scheduler", GUARD)  # noqa: B023
    # (no sweep_orphans() here: it would sweep other tests' dead schedulers too)
    shutil.rmtree(folder)
