"""open_runlog: what the ``logs=`` argument of RedEngine can be."""

from __future__ import annotations

from pathlib import Path

import pytest

from redengine_nb.errors import RunLogError
from redengine_nb.records import Action
from redengine_nb.runlog import (
    DEFAULT_LOG_FILE,
    MemoryRunLog,
    SQLiteRunLog,
    open_runlog,
)


def test_none_is_the_default_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    log = open_runlog(None)
    try:
        assert isinstance(log, SQLiteRunLog)
        assert DEFAULT_LOG_FILE == "redengine_nb.db"
        assert Path(log.location) == tmp_path / DEFAULT_LOG_FILE
        log.start_run("t", created=1.0, start=1.0, owner="me")
    finally:
        log.close()
    assert (tmp_path / DEFAULT_LOG_FILE).is_file()


def test_an_instance_is_itself() -> None:
    mem = MemoryRunLog()
    assert open_runlog(mem) is mem


def test_memory() -> None:
    log = open_runlog(":memory:")
    assert isinstance(log, SQLiteRunLog)
    assert log.location == ":memory:"
    log.close()


@pytest.mark.parametrize("kind", ["str", "path", "url"])
def test_paths_and_sqlite_urls(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "runs.db"
    logs: str | Path = {"str": str(path), "path": path, "url": f"sqlite:///{path}"}[kind]
    log = open_runlog(logs)
    try:
        assert isinstance(log, SQLiteRunLog)
        log.start_run("t", created=1.0, start=1.0, owner="me")
    finally:
        log.close()
    with SQLiteRunLog(path) as again:
        assert again.last("t", Action.RUN) == 1.0


@pytest.mark.parametrize("url", ["mysql+pymysql://h/db", "mssql://h/db", "redis://h"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(RunLogError, match="only PostgreSQL URLs are supported"):
        open_runlog(url)


def test_bad_type() -> None:
    with pytest.raises(RunLogError, match="logs= takes"):
        open_runlog(42)  # type: ignore[arg-type]
