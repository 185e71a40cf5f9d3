"""Two scheduler processes on one SQLite run log (issue 12, item 2): every due run starts
exactly once between them, and each sees the other's lease."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from redengine_nb.records import Action
from redengine_nb.runlog.sqlite import SQLiteRunLog

SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).resolve().parents[2]
GUARD = 120.0


@pytest.mark.slow
def test_two_schedulers_on_one_log_run_each_daily_once(tmp_path: Path) -> None:
    log = tmp_path / "runs.db"
    marks = tmp_path / "marks.txt"
    go = tmp_path / "go"
    SQLiteRunLog(log).close()  # the schema exists before both race to the first claim
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = [sys.executable, str(SCRIPTS / "shared_log_app.py"), str(log), str(marks), str(go)]
    procs = [
        subprocess.Popen(
            [*script, "4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        go.touch()
        outs = [p.communicate(timeout=GUARD) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(GUARD)
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    ran = Counter(line.split()[0] for line in marks.read_text().splitlines())
    assert ran == Counter({f"daily{i:02d}": 1 for i in range(40)})
    with SQLiteRunLog(log) as store:
        records = store.records()
        leases = store.leases(0.0)
    assert Counter(r.task_name for r in records) == Counter({f"daily{i:02d}": 1 for i in range(40)})
    assert {r.action for r in records} == {Action.SUCCESS}
    owners = {r.owner for r in records}
    assert all(o is not None and o.startswith("L") for o in owners)
    assert leases == []  # both stopped cleanly and released their leases
    pids = {line.split()[1] for line in marks.read_text().splitlines()}
    assert len(pids) >= 1
