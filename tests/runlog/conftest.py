"""Fixtures shared by the run-log tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
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


#: Every store the contract suite (test_runlog_contract.py and the other tests taking the
#: ``runlog`` fixture) runs against: a name and how to open a fresh, empty one. A new store
#: is one line here; a store needing a server takes it from a fixture through ``request``
#: (``request.getfixturevalue("pg_url")``) and is marked ``slow`` in ``SLOW``.
STORES: dict[str, Callable[[pytest.FixtureRequest, Path], RunLog]] = {
    "memory": lambda request, tmp: MemoryRunLog(),
    "sqlite-file": lambda request, tmp: SQLiteRunLog(tmp / "runs.db"),
    "sqlite-memory": lambda request, tmp: SQLiteRunLog(":memory:"),
    "postgres": lambda request, tmp: _postgres(request),
}

#: The stores two schedulers can share: each call gives another handle on the same records.
SHARED: dict[str, Callable[[pytest.FixtureRequest, Path], RunLog]] = {
    "sqlite-file": lambda request, tmp: SQLiteRunLog(tmp / "runs.db"),
    "postgres": lambda request, tmp: _postgres(request),
}
#: Stores that need a server: their tests are ``slow``.
SLOW = {"postgres"}


def _postgres(request: pytest.FixtureRequest) -> RunLog:
    from redengine_nb.runlog.postgres import PostgresRunLog

    return PostgresRunLog(request.getfixturevalue("pg_url"))


def _params(names: dict[str, object]) -> list[object]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@pytest.fixture(params=_params(STORES))
def runlog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunLog]:
    """Every store, so that the same behavioural tests pin them all."""
    log = STORES[request.param](request, tmp_path)
    yield log
    log.close()


@pytest.fixture(params=_params(SHARED))
def shared_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RunLog, RunLog]]:
    """Two handles on one store, as two schedulers (two processes) would hold them."""
    first = SHARED[request.param](request, tmp_path)
    second = SHARED[request.param](request, tmp_path)
    yield first, second
    second.close()
    first.close()
