"""``restarting``: ``replace``, ``relaunch`` and ``fresh`` with a headless app in a
subprocess that restarts once and then shuts down, verified through its SQLite run log.
(``recall``, which stays in-process, is tested with the session.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redengine_nb._engine.restart import (
    FRESH_OUTPUT_ENV,
    FRESH_OUTPUT_NAME,
    RESTART_COUNT_ENV,
    fresh_output_path,
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


def wait_for_text(path: Path, text: str) -> str:
    """The content of ``path`` once it holds ``text`` (a guard of GUARD seconds)."""
    deadline = time.monotonic() + GUARD
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        assert time.monotonic() < deadline, f"{path} never said {text!r}: {content!r}"
        time.sleep(0.05)


def run_chain(
    mode: str, log: Path
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, int]]]:
    """Run the app until the whole chain of processes has ended; return its lives."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(RESTART_COUNT_ENV, None)
    env.pop(FRESH_OUTPUT_ENV, None)
    # The pipes stay open while any process of the chain that inherited them lives, so
    # communicate() returns when the last such life has ended. A fresh life has its own
    # output (in the working folder): wait for its last line there.
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "restart_app.py"), mode, str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=log.parent,
    )
    try:
        out, err = proc.communicate(timeout=GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if mode == "fresh":
        wait_for_text(log.parent / FRESH_OUTPUT_NAME, "life 1 ended")
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
    # Its own output: nothing of it reaches the first life's pipes (issue 18.5), which
    # ended with the first life; it went to redengine_nb.out in the working folder.
    output = tmp_path / FRESH_OUTPUT_NAME
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"redengine_nb: restarted (fresh) as process {life[1]['pid']}; its output: {output}"
    )
    assert output.read_text().splitlines() == ["life 1 ended"]
    assert output.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_fresh_output_goes_where_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(FRESH_OUTPUT_ENV, raising=False)
    assert fresh_output_path() == str(tmp_path / FRESH_OUTPUT_NAME)
    monkeypatch.setenv(FRESH_OUTPUT_ENV, str(tmp_path / "logs" / "app.out"))
    assert fresh_output_path() == str(tmp_path / "logs" / "app.out")


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
