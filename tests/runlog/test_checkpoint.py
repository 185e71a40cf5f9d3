"""The WAL is checkpointed by a thread of its own, never inside one of the log's commits,
and it does not grow without bound."""

from __future__ import annotations

import itertools
import os
import sqlite3
from pathlib import Path

import pytest

from redengine_nb.records import Action
from redengine_nb.runlog import SQLiteRunLog, checkpoint

GUARD = 30.0


def test_commits_leave_checkpoints_to_the_checkpointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "WAL_PAGES", 40)
    path = tmp_path / "log.db"
    log = SQLiteRunLog(path)
    try:
        # The log's own connection never checkpoints on commit.
        assert log._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        checkpointer = log._checkpointer
        assert checkpointer is not None
        sizes = []
        for i in range(600):
            run = log.start_run(f"t{i % 7}", created=float(i), start=float(i), owner="me")
            log.finish_run(run.run_id, Action.SUCCESS, end=float(i) + 0.5, output="x" * 500)
            sizes.append(os.stat(f"{path}-wal").st_size)
            if i == 300:
                assert checkpointer.done.wait(GUARD), "no checkpoint was made"
        # Checkpointed and started over (cut back to the limit then): the -wal file
        # shrank at least once, where a log never checkpointed only grows (these 600
        # runs write ~19 MB of frames).
        assert any(after < before for before, after in itertools.pairwise(sizes))
    finally:
        log.close()
    # Nothing lost.
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 600


def test_a_memory_log_has_no_checkpointer() -> None:
    log = SQLiteRunLog(":memory:")
    assert log._checkpointer is None
    log.close()
