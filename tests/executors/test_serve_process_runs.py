"""``redengine-nb serve`` stopped by a signal while process runs (template children) are
live: a bounded shutdown, the runs recorded ``terminate``, no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from redengine_nb.records import Action
from redengine_nb.runlog.owner import start_token
from redengine_nb.runlog.sqlite import SQLiteRunLog

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the template, /proc"),
]

ROOT = Path(__file__).resolve().parents[2]
GUARD = 60.0

#: Two process runs that never end on their own (they ignore their TerminationFlag).
TASKS = """
import os, threading
from pathlib import Path

def forever(name):
    Path(name + '.pid').write_text(str(os.getpid()))
    threading.Event().wait()

@app.task('daily', execution='process')
def first():
    forever('first')

@app.task('daily', execution='process')
def second():
    forever('second')
"""


def _notebook(path: Path, source: str) -> None:
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "tasks01",
        "metadata": {},
        "outputs": [],
        "source": source,
    }
    path.write_text(
        json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read()
    return int(raw[raw.rfind(b")") + 2 :].split()[1])


@pytest.mark.parametrize("how", ["SIGTERM, instant_shutdown", "SIGTERM then Ctrl-C"])
def test_a_signal_to_serve_ends_its_live_process_runs_as_terminate(
    how: str, tmp_path: Path, wait_for: Any
) -> None:
    _notebook(tmp_path / "nb.ipynb", TASKS)
    db = tmp_path / "runs.db"
    extra = ["--config", "instant_shutdown=true"] if how.endswith("instant_shutdown") else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("REDENGINE_NB_SERVE_DEADLINE", None)
    env.pop("REDENGINE_NB_RESTARTS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "redengine_nb", "serve", "nb.ipynb", "--logs", str(db), *extra],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pidfiles = [tmp_path / "first.pid", tmp_path / "second.pid"]
        wait_for(
            lambda: all(p.exists() and p.read_text() for p in pidfiles) or proc.poll() is not None,
            "both process runs started",
            GUARD,
        )
        assert proc.poll() is None, proc.communicate()
        children = [int(p.read_text()) for p in pidfiles]
        template = _parent(children[0])
        assert _parent(children[1]) == template != proc.pid
        proc.send_signal(signal.SIGTERM)
        if not extra:  # SIGTERM waits for the runs; asked again (Ctrl-C), serve ends them
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(GUARD)
    assert proc.returncode == 0, out + err
    for pid in [*children, template]:
        wait_for(lambda: start_token(pid) is None, f"process {pid} ended", GUARD)  # noqa: B023
    with SQLiteRunLog(db) as log:
        assert log.open_runs() == []
        actions = {name: [r.action for r in log.records(task=name)] for name in ("first", "second")}
    assert actions == {"first": [Action.TERMINATE], "second": [Action.TERMINATE]}
