"""Two processes writing one SQLite run log at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from redengine_nb.records import Action
from redengine_nb.runlog import SQLiteRunLog

WRITER = """
import sys
from redengine_nb.records import Action
from redengine_nb.runlog import SQLiteRunLog
from redengine_nb.runlog.owner import current_owner

path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.stdin.readline()  # both start together
log = SQLiteRunLog(path, busy_timeout=30)
owner = current_owner()
for i in range(n):
    rec = log.start_run(name, created=float(i), start=float(i), owner=owner)
    log.finish_run(rec.run_id, Action.SUCCESS, end=i + 0.5)
log.close()
print("done", flush=True)
"""


@pytest.mark.slow
def test_two_processes_append_5000_runs_each(tmp_path: Path, child_env: dict[str, str]) -> None:
    path = tmp_path / "shared.db"  # new: the two writers also race to create it
    n = 5000
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        for name in ("a", "b")
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    with SQLiteRunLog(path) as log:
        assert len(log.records()) == 2 * n
        assert log.task_names() == ["a", "b"]
        for name in ("a", "b"):
            assert log.count(name, Action.SUCCESS) == n
            assert log.last(name, Action.SUCCESS) == n - 0.5
        assert list(log.open_runs()) == []
        ids = [int(r.run_id) for r in log.records()]
        assert len(set(ids)) == 2 * n
