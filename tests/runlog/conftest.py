"""Fixtures shared by the run-log tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from redengine_nb.runlog import MemoryRunLog, RunLog, SQLiteRunLog

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for a child interpreter that must import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(
    params=[
        "memory",
        "sqlite-file",
        "sqlite-memory",
        pytest.param("postgres", marks=pytest.mark.slow),
    ]
)
def runlog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunLog]:
    """Every store, so that the same behavioural tests pin them all."""
    log: RunLog
    if request.param == "postgres":
        from redengine_nb.runlog.postgres import PostgresRunLog

        log = PostgresRunLog(request.getfixturevalue("pg_url"))
    elif request.param == "memory":
        log = MemoryRunLog()
    elif request.param == "sqlite-file":
        log = SQLiteRunLog(tmp_path / "runs.db")
    else:
        log = SQLiteRunLog(":memory:")
    yield log
    log.close()
