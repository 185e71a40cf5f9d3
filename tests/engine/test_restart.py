"""``restarting``: ``replace``, ``relaunch`` and ``fresh`` with a headless app in a
subprocess that restarts once and then shuts down, verified through its SQLite run log.
(``recall``, which stays in-process, is tested with the session.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from redengine_nb._engine.restart import (
    RESTART_COUNT_ENV,
    restart_command,
    restart_count,
    restart_process,
)
from redengine_nb.errors import ConfigError
from redengine_nb.records import Action
from redengine_nb.runlog.sqlite import SQLiteRunLog

SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).resolve().parents[2]
GUARD = 60.0


def run_chain(
    mode: str, log: Path
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, int]]]:
    """Run the app until the whole chain of processes has ended; return its lives."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(RESTART_COUNT_ENV, None)
    # The pipes stay open while any process of the chain lives, so communicate() returns
    # only when the last life has ended.
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "restart_app.py"), mode, str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    store = SQLiteRunLog(log)
    try:
        records = store.records(task="lifetime")
    finally:
        store.close()
    assert records, f"no runs logged; stderr:\n{err}"
    assert {r.action for r in records} == {Action.SUCCESS}, [r.exc_text for r in records]
    lives = []
    for record in records:
        match = re.fullmatch(r"life=(\d+) pid=(-?\d+) sid=(-?\d+)\n", record.output or "")
        assert match, record.output
        lives.append(dict(zip(("life", "pid", "sid"), map(int, match.groups()), strict=True)))
    return done, lives


def by_life(lives: list[dict[str, int]]) -> dict[int, dict[str, int]]:
    assert sorted({entry["life"] for entry in lives}) == [0, 1], lives
    return {entry["life"]: entry for entry in lives}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="execv replaces the process on POSIX only")
def test_replace_re_executes_the_same_process(tmp_path: Path) -> None:
    done, lives = run_chain("replace", tmp_path / "runs.db")
    assert done.returncode == 0, done.stderr
    life = by_life(lives)
    assert life[0]["pid"] == life[1]["pid"]
    # The one process went on to the end: the second life's own "ended" line is printed.
    assert done.stdout.splitlines() == ["life 1 ended"]


@pytest.mark.slow
def test_relaunch_starts_a_new_process_in_the_same_session(tmp_path: Path) -> None:
    done, lives = run_chain("relaunch", tmp_path / "runs.db")
    assert done.returncode == 0, done.stderr
    life = by_life(lives)
    assert life[0]["pid"] != life[1]["pid"]
    if hasattr(os, "getsid"):
        assert life[0]["sid"] == life[1]["sid"]
    # The first life exited without reaching the end of main(); the second did.
    assert done.stdout.splitlines() == ["life 1 ended"]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="session ids are POSIX")
def test_fresh_starts_a_detached_process_in_a_new_session(tmp_path: Path) -> None:
    done, lives = run_chain("fresh", tmp_path / "runs.db")
    assert done.returncode == 0, done.stderr
    life = by_life(lives)
    assert life[0]["pid"] != life[1]["pid"]
    assert life[1]["sid"] == life[1]["pid"]  # the new process leads its own session
    assert life[1]["sid"] != life[0]["sid"]
    assert done.stdout.splitlines() == ["life 1 ended"]


def test_restart_command_is_the_original_command_line() -> None:
    command = restart_command()
    assert command[0] == sys.executable
    assert command[1:] == sys.orig_argv[1:]


def test_restart_count_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RESTART_COUNT_ENV, raising=False)
    assert restart_count() == 0
    monkeypatch.setenv(RESTART_COUNT_ENV, "2")
    assert restart_count() == 2
    monkeypatch.setenv(RESTART_COUNT_ENV, "garbage")
    assert restart_count() == 0


@pytest.mark.parametrize("mode", ["recall", "reboot", ""])
def test_modes_other_than_the_process_ones_are_refused(mode: str) -> None:
    with pytest.raises(ConfigError, match="'replace', 'relaunch', 'fresh'") as info:
        restart_process(mode)
    if mode == "recall":
        assert "session" in str(info.value)
