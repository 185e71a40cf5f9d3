"""SQLiteRunLog: persistence, refusing files that are not ours, locks, the cache, plans."""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from redengine_nb.errors import RunLogError
from redengine_nb.records import Action, RunRecord
from redengine_nb.runlog import MemoryRunLog, SQLiteRunLog
from redengine_nb.runlog.sqlite import APPLICATION_ID, SCHEMA_VERSION, RunLogLost
from redengine_nb.runlog.sqlite_schema import TIME


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with SQLiteRunLog(path) as log:
        a = log.start_run("t", created=1.0, start=1.5, owner="me")
        log.finish_run(a.run_id, Action.SUCCESS, end=2.0, output="out")
        b = log.start_run("t", created=3.0, start=3.0, owner="me")
        before = log.records()
    with SQLiteRunLog(str(path)) as log:
        assert log.records() == before
        assert log.last("t", Action.SUCCESS) == 2.0
        assert log.last("t", Action.RUN) == 3.0
        assert [r.run_id for r in log.open_runs()] == [b.run_id]
        c = log.start_run("t", created=4.0, start=4.0, owner="me")
        assert int(c.run_id) > int(b.run_id)


def test_file_is_marked_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteRunLog(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
        assert cols == [
            "run_id",
            "task_name",
            "action",
            "created",
            "start",
            "end",
            "exc_text",
            "output",
            "owner",
        ]
    finally:
        conn.close()


def test_synchronous_normal(tmp_path: Path) -> None:
    with SQLiteRunLog(tmp_path / "runs.db") as log:
        assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_missing_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(RunLogError, match=r"no-such-folder.*does not exist"):
        SQLiteRunLog(missing / "runs.db")
    assert not missing.exists()


def test_a_folder_is_not_a_log(tmp_path: Path) -> None:
    with pytest.raises(RunLogError, match="is a folder"):
        SQLiteRunLog(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"garbage, not a database\n" + bytes(range(256)) * 8,
        b"SQLite format 3\x00" + b"\xff" * 4080,  # the header, then rubbish
    ],
    ids=["garbage", "corrupt-after-header"],
)
def test_not_sqlite_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(content)
    stat = path.stat()
    with pytest.raises(RunLogError, match=r"runs\.db") as info:
        SQLiteRunLog(path)
    assert "Move it aside" in str(info.value)  # and how to go on, whichever way it is broken
    assert path.read_bytes() == content
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert _files(tmp_path) == ["runs.db"]  # no -wal / -shm / -journal left behind


def test_other_applications_database_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    content = path.read_bytes()
    with pytest.raises(RunLogError, match=r"other application.*untouched"):
        SQLiteRunLog(path)
    assert path.read_bytes() == content
    assert _files(tmp_path) == ["app.db"]


def test_other_application_id_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()
    content = path.read_bytes()
    with pytest.raises(RunLogError, match="other application"):
        SQLiteRunLog(path)
    assert path.read_bytes() == content


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteRunLog(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RunLogError, match="newer"):
        SQLiteRunLog(path)


_V1_INDEXES = f"""
CREATE INDEX ix_runs_task_time ON runs (task_name, {TIME});
CREATE INDEX ix_runs_task_action_created ON runs (task_name, action, created);
CREATE INDEX ix_runs_time ON runs ({TIME});
CREATE INDEX ix_runs_action_created ON runs (action, created);
PRAGMA user_version = 1;
"""


def test_version_1_file_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with SQLiteRunLog(path) as log:
        done = log.start_run("t", created=1.0, start=1.0, owner="me")
        log.finish_run(done.run_id, Action.SUCCESS, end=2.0)
        log.start_run("t", created=3.0, start=3.0, owner="me")
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE leases;" + _V1_INDEXES)  # what version 1 wrote
    conn.close()
    with SQLiteRunLog(path) as log:
        assert log.last("t", Action.SUCCESS) == 2.0
        assert [r.start for r in log.open_runs()] == [3.0]
        assert log.count("t") == 2
    conn = sqlite3.connect(path)
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert version == SCHEMA_VERSION == 3
    assert "leases" in tables  # version 3
    assert not names & {"ix_runs_task_time", "ix_runs_time", "ix_runs_action_created"}
    assert {"ix_runs_task_start", "ix_runs_task_action_time"} <= names


def test_finish_runs_writes_a_batch_and_refuses_bad_ones_alone(tmp_path: Path) -> None:
    with SQLiteRunLog(tmp_path / "runs.db") as log:
        a = log.start_run("a", created=1.0, start=1.0, owner="me")
        b = log.start_run("b", created=1.0, start=1.0, owner="me")
        log.finish_run(b.run_id, Action.FAIL, end=1.5)
        out = log.finish_runs(
            [
                (a.run_id, Action.SUCCESS, 2.0, None, "out"),
                (b.run_id, Action.SUCCESS, 2.0, None, None),  # already ended
                ("999", Action.SUCCESS, 2.0, None, None),  # unknown
            ]
        )
        assert isinstance(out[0], RunRecord) and out[0].output == "out"
        assert isinstance(out[1], ValueError)
        assert isinstance(out[2], KeyError)
        assert log.last("a", Action.SUCCESS) == 2.0
        assert log.last("b", Action.SUCCESS) is None


def test_empty_file_becomes_a_log(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.touch()
    with SQLiteRunLog(path) as log:
        log.start_run("t", created=1.0, start=1.0, owner="me")
        assert log.count("t") == 1


#: Run as an unprivileged user (``nobody``) when the tests run as root: root reads files
#: whatever their mode. Everything is imported as root first (the interpreter may live in
#: root's home); the child works in the log's folder, so the path it opens is relative.
_UNPRIVILEGED_OPEN = """
import os, sys
from redengine_nb.errors import RunLogError
from redengine_nb.runlog import SQLiteRunLog

os.chdir(sys.argv[1])
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
os.stat(sys.argv[2])  # the folder lets us in: only the file's own mode keeps us out
try:
    SQLiteRunLog(sys.argv[2])
except RunLogError as exc:
    print(exc)
    sys.exit(0)
print("the run log opened")
sys.exit(1)
"""
_REPO = str(Path(__file__).resolve().parents[2])


def _open_error_as_unprivileged(path: Path) -> str:
    """The ``RunLogError`` message of opening ``path`` as a user its mode keeps out."""
    if os.geteuid() != 0:
        with pytest.raises(RunLogError) as info:
            SQLiteRunLog(path)
        return str(info.value)
    path.parent.chmod(0o755)  # pytest's folders are root's alone: open this one
    done = subprocess.run(
        [sys.executable, "-c", _UNPRIVILEGED_OPEN, str(path.parent), path.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": _REPO},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX file modes")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteRunLog(path).close()
    content = path.read_bytes()
    before = _files(tmp_path)
    path.chmod(0)
    try:
        message = _open_error_as_unprivileged(path)
        assert re.search(r"runs\.db'.*Permission denied.*Fix its permissions", message), message
        assert stat.S_IMODE(path.stat().st_mode) == 0
    finally:
        path.chmod(0o600)
    assert path.read_bytes() == content
    assert _files(tmp_path) == before


def _hold_exclusive_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("PRAGMA locking_mode = EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO runs (task_name, action, created) VALUES ('x', 'run', 0)")
    return other


def test_locked_database_on_open(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteRunLog(path).close()
    other = _hold_exclusive_lock(path)
    try:
        with pytest.raises(RunLogError, match=r"runs.db.*locked.*busy timeout"):
            SQLiteRunLog(path, busy_timeout=0.05)
    finally:
        other.execute("ROLLBACK")
        other.close()
    SQLiteRunLog(path, busy_timeout=0.05).close()  # fine once the lock is gone


def test_locked_database_on_write_raises_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    log = SQLiteRunLog(path, busy_timeout=0.05)
    first = log.start_run("t", created=1.0, start=1.0, owner="me")
    assert log.last("t", Action.RUN) == 1.0  # cached
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        with pytest.raises(RunLogError, match="locked"):
            log.start_run("t", created=2.0, start=2.0, owner="me")
        with pytest.raises(RunLogError, match="locked"):
            log.finish_run(first.run_id, Action.SUCCESS, end=3.0)
        # reads still work in WAL mode while another process writes
        assert log.last("t", Action.RUN) == 1.0
        assert [r.run_id for r in log.open_runs()] == [first.run_id]
    finally:
        other.execute("ROLLBACK")
        other.close()
    done = log.finish_run(first.run_id, Action.SUCCESS, end=3.0)
    assert done.action is Action.SUCCESS
    assert log.count("t") == 1
    log.close()


def test_refresh_sees_another_connections_writes(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    mine, theirs = SQLiteRunLog(path), SQLiteRunLog(path)
    try:
        assert mine.last("t", Action.RUN) is None  # now cached
        theirs.start_run("t", created=5.0, start=5.0, owner="them")
        # count is never cached; last answers from the cache until refresh()
        assert mine.count("t") == 1
        assert mine.last("t", Action.RUN) is None
        mine.refresh()
        assert mine.last("t", Action.RUN) == 5.0
        # own writes keep the cache true without a refresh
        mine.start_run("t", created=6.0, start=6.0, owner="me")
        assert mine.last("t", Action.RUN) == 6.0
        mine.refresh()  # our own write is not "another connection's"
        assert mine.last("t", Action.RUN) == 6.0
    finally:
        mine.close()
        theirs.close()


def test_cache_updated_by_own_finish_log_and_crash() -> None:
    with SQLiteRunLog(":memory:") as log:
        for action in (Action.SUCCESS, Action.FAIL, Action.CRASH, Action.RUN):
            assert log.last("t", action) is None  # cache every key
        rec = log.start_run("t", created=1.0, start=1.0, owner="me")
        log.finish_run(rec.run_id, Action.SUCCESS, end=2.0)
        log.log_run(RunRecord("", "t", Action.FAIL, 3.0, 3.0, 4.0))
        rec = log.start_run("t", created=5.0, start=5.0, owner="me")
        log.mark_crashed([rec.run_id], end=6.0)
        assert log.last("t", Action.SUCCESS) == 2.0
        assert log.last("t", Action.FAIL) == 4.0
        assert log.last("t", Action.CRASH) == 6.0
        assert log.last("t", Action.RUN) == 5.0


def test_cache_is_bounded() -> None:
    with SQLiteRunLog(":memory:", cache_size=8) as log:
        for i in range(50):
            rec = log.start_run(f"task{i}", created=i, start=i, owner="me")
            log.finish_run(rec.run_id, Action.SUCCESS, end=i + 0.5)
        for i in range(50):
            for action in Action:
                log.last(f"task{i}", action)
            assert len(log._cache) <= 8
        # evicted answers are read again, correctly
        assert log.last("task0", Action.SUCCESS) == 0.5
        assert log.last("task49", Action.RUN) == 49.0


def test_cache_disabled() -> None:
    with SQLiteRunLog(":memory:", cache_size=0) as log:
        log.start_run("t", created=1.0, start=1.0, owner="me")
        assert log.last("t", Action.RUN) == 1.0
        assert len(log._cache) == 0


def test_thread_safe_writes_and_reads(tmp_path: Path) -> None:
    log = SQLiteRunLog(tmp_path / "runs.db")
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(n: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(150):
                rec = log.start_run(f"t{n}", created=i, start=i, owner="me")
                log.finish_run(rec.run_id, Action.SUCCESS, end=i + 0.5)
                log.last(f"t{n}", Action.SUCCESS)
                log.count(f"t{(n + 1) % 6}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(log.records()) == 900
    assert all(log.count(f"t{n}", Action.SUCCESS) == 150 for n in range(6))
    assert all(log.last(f"t{n}", Action.SUCCESS) == 149.5 for n in range(6))
    log.close()


def test_closed_log_raises_runlogerror() -> None:
    log = SQLiteRunLog(":memory:")
    log.close()
    with pytest.raises(RunLogError, match="closed"):
        log.start_run("t", created=1.0, start=1.0, owner="me")


# -- query plans: lookups never scan the table ----------------------------------------------


def _plans(log: SQLiteRunLog, call: object) -> list[tuple[str, list[str]]]:
    """Run ``call`` and return, for each SELECT it made, the EXPLAIN QUERY PLAN lines."""
    seen: list[str] = []
    log._conn.set_trace_callback(seen.append)
    try:
        assert callable(call)
        call()
    finally:
        log._conn.set_trace_callback(None)
    plans = []
    for sql in seen:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            rows = log._conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            plans.append((sql, [row[-1] for row in rows]))
    assert plans, "no query was traced"
    return plans


def _uses_index(plan: list[str]) -> bool:
    scans = [line for line in plan if line.startswith("SCAN runs")]
    return not scans and any("INDEX" in line for line in plan)


@pytest.fixture
def big_log() -> SQLiteRunLog:
    log = SQLiteRunLog(":memory:", cache_size=0)
    for i in range(200):
        log.log_run(
            RunRecord(
                "",
                f"t{i % 7}",
                Action.SUCCESS if i % 5 else Action.FAIL,
                float(i),
                float(i),
                i + 0.5,
            )
        )
    log.start_run("t1", created=300.0, start=300.0, owner="me")
    return log


@pytest.mark.parametrize(
    "lookup",
    [
        lambda log: log.last("t1", Action.RUN),
        lambda log: log.last("t1", Action.SUCCESS),
        lambda log: log.count("t1"),
        lambda log: log.count("t1", Action.RUN, since=10.0, until=50.0),
        lambda log: log.count("t1", Action.FAIL, since=10.0),
        lambda log: log.count("t1", None, until=100.0),
        lambda log: log.open_runs(),
        lambda log: log.records(task="t1"),
        lambda log: log.records(task="t1", limit=5),
        lambda log: log.records(task="t1", action=Action.FAIL, limit=5),
        lambda log: log.records(action=Action.FAIL),
        lambda log: log.records(since=150.0),
        lambda log: log.records(since=150.0, limit=3),
        lambda log: log.records(task="t2", since=150.0),
        lambda log: log.task_names(),
    ],
    ids=[
        "last-run",
        "last-success",
        "count",
        "count-run-span",
        "count-fail-since",
        "count-any-until",
        "open-runs",
        "records-task",
        "records-task-limit",
        "records-task-action",
        "records-action",
        "records-since",
        "records-since-limit",
        "records-task-since",
        "task-names",
    ],
)
def test_lookups_use_an_index(big_log: SQLiteRunLog, lookup: object) -> None:
    for sql, plan in _plans(big_log, lambda: lookup(big_log)):  # type: ignore[operator]
        assert _uses_index(plan), f"{sql}\n{plan}"


def test_answers_match_memory_on_the_same_records(big_log: SQLiteRunLog) -> None:
    mem = MemoryRunLog(dataclasses.replace(r) for r in big_log.records())
    assert mem.task_names() == big_log.task_names()
    for task in big_log.task_names():
        for action in [None, *Action]:
            span = {"since": 20.0, "until": 150.0}
            assert mem.count(task, action, **span) == big_log.count(task, action, **span)
            assert mem.count(task, action) == big_log.count(task, action)
            if action is not None:
                assert mem.last(task, action) == big_log.last(task, action), (task, action)


def _statements(log: SQLiteRunLog) -> list[str]:
    seen: list[str] = []
    log._conn.set_trace_callback(seen.append)
    return seen


def test_first_look_at_a_new_task_reads_nothing(tmp_path: Path) -> None:
    """The pairs the file holds are read once (one skip scan); a task without records is
    then answered from memory, however many actions are asked for."""
    with SQLiteRunLog(tmp_path / "runs.db") as log:
        rec = log.start_run("old", created=1.0, start=1.0, owner="me")
        log.finish_run(rec.run_id, Action.SUCCESS, end=2.0)
    with SQLiteRunLog(tmp_path / "runs.db") as log:
        seen = _statements(log)
        assert log.last("new-0", Action.SUCCESS) is None
        assert len(seen) == 1 and "pairs" in seen[0]
        for i in range(50):
            for action in Action:
                assert log.last(f"new-{i}", action) is None
        assert log.last_of("new-51", tuple(Action)) is None
        assert len(seen) == 1
        # A pair the file holds is read from it.
        assert log.last("old", Action.SUCCESS) == 2.0
        assert log.last("old", Action.RUN) == 1.0
        assert log.last("old", Action.FAIL) is None
        assert len(seen) == 3  # SUCCESS and RUN queried; FAIL known absent


def test_own_writes_and_refresh_keep_new_tasks_visible(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    mine, theirs = SQLiteRunLog(path, cache_size=4), SQLiteRunLog(path)
    try:
        assert mine.last("a", Action.SUCCESS) is None  # pairs loaded: the file is empty
        for i in range(20):  # more than the cache holds: answers come back from the file
            rec = mine.start_run(f"t{i}", created=i, start=i, owner="me")
            mine.finish_run(rec.run_id, Action.FAIL, end=i + 0.5)
        mine.log_run(RunRecord("", "a", Action.SUCCESS, 30.0, 30.0, 31.0))
        assert [mine.last(f"t{i}", Action.FAIL) for i in range(20)] == [i + 0.5 for i in range(20)]
        assert mine.last("t3", Action.RUN) == 3.0
        assert mine.last("a", Action.SUCCESS) == 31.0
        rec = mine.start_run("c", created=40.0, start=40.0, owner="me")
        mine.mark_crashed([rec.run_id], end=41.0)
        assert mine.last("c", Action.CRASH) == 41.0
        # Another connection's new task: seen after refresh(), like every cached answer.
        assert mine.last("b", Action.SUCCESS) is None
        theirs.log_run(RunRecord("", "b", Action.SUCCESS, 50.0, 50.0, 51.0))
        mine.refresh()
        assert mine.last("b", Action.SUCCESS) == 51.0
        assert mine.last("b", Action.RUN) == 50.0
    finally:
        mine.close()
        theirs.close()


def test_refresh_if_free_skips_while_the_connection_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    mine, theirs = SQLiteRunLog(path), SQLiteRunLog(path)
    try:
        assert mine.last("t", Action.RUN) is None
        theirs.start_run("t", created=5.0, start=5.0, owner="them")
        busy, done = threading.Event(), threading.Event()

        def hold() -> None:
            with mine._lock:  # as our end writer does while it commits
                busy.set()
                done.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert busy.wait(30)
        assert mine.refresh_if_free() is False  # did not wait for the lock
        done.set()
        holder.join(30)
        assert mine.last("t", Action.RUN) is None  # not refreshed yet
        assert mine.refresh_if_free() is True
        assert mine.last("t", Action.RUN) == 5.0
    finally:
        mine.close()
        theirs.close()


# -- issue 12: faults of the file itself ----------------------------------------------------


def _history(log: SQLiteRunLog) -> None:
    for i in range(200):
        rec = log.start_run(f"t{i % 5}", created=100.0 + i, start=100.0 + i, owner="me")
        log.finish_run(rec.run_id, Action.SUCCESS if i % 3 else Action.FAIL, end=100.5 + i)
    log.start_run("t1", created=400.0, start=400.0, owner="me")


def _answers(log: SQLiteRunLog) -> list[object]:
    return [
        len(log.records(since=150.0)),
        len(log.records(action=Action.SUCCESS, since=150.0)),
        len(log.records(action=Action.FAIL)),
        [r.run_id for r in log.records(since=150.0, limit=7)],
        [r.run_id for r in log.records(action=Action.SUCCESS, since=150.0, limit=3)],
        [r.run_id for r in log.open_runs()],
        log.task_names(),
        log.count("t1", Action.SUCCESS, since=150.0),
        log.count("t1", None, since=150.0),
        log.last("t2", Action.FAIL),
        log.last("t1", Action.RUN),
    ]


def test_queries_after_pragma_optimize_give_the_same_rows(tmp_path: Path) -> None:
    """SQLite 3.40 (Debian 12's) plans a ``names JOIN runs`` on the expression index with a
    Bloom filter once ``PRAGMA optimize`` has written statistics, and returned no rows."""
    path = tmp_path / "runs.db"
    with SQLiteRunLog(path) as log:
        _history(log)
        before = _answers(log)
    with sqlite3.connect(path) as conn:  # close() ran PRAGMA optimize; make sure of stats
        conn.execute("ANALYZE")
        assert conn.execute("SELECT COUNT(*) FROM sqlite_stat1").fetchone()[0] > 0
    with SQLiteRunLog(path) as again:
        after = _answers(again)
    assert before[0] == 151 and before[1] > 0 and before[5]
    assert after == before


def test_new_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    old = os.umask(0o022)
    try:
        with SQLiteRunLog(path) as log:
            log.start_run("t", created=1.0, start=1.0, owner="me")
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(f"{path}-wal").st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_lost_file_stops_every_write_with_a_clear_error(tmp_path: Path, how: str) -> None:
    path = tmp_path / "runs.db"
    log = SQLiteRunLog(path)
    try:
        rec = log.start_run("t", created=1.0, start=1.0, owner="me")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{path}{suffix}"):
                os.unlink(f"{path}{suffix}")
        if how == "replaced":
            SQLiteRunLog(path).close()
        with pytest.raises(RunLogLost, match="deleted or replaced"):
            log.finish_run(rec.run_id, Action.SUCCESS, end=2.0)
        for write in (
            lambda: log.start_runs(["t"], created=3.0, start=3.0, owner="me"),
            lambda: log.end_runs([("t", rec.run_id, Action.SUCCESS, 2.0, None, None)]),
            lambda: log.log_run(RunRecord("", "t", Action.FAIL, 1.0, 1.0, 1.0)),
        ):
            with pytest.raises(RunLogLost):
                write()
    finally:
        log.close()


def test_readonly_log_is_read_by_status_and_log(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with SQLiteRunLog(path) as log:
        rec = log.start_run("t", created=1.0, start=1.0, owner="me")
        log.finish_run(rec.run_id, Action.SUCCESS, end=2.0)
    os.chmod(path, 0o400)
    os.chmod(tmp_path, 0o500)
    try:
        if os.geteuid() != 0:  # root may write anyway
            with pytest.raises(RunLogError, match="read-only"):
                SQLiteRunLog(path)
        with SQLiteRunLog(path, readonly=True) as ro:
            assert [r.action for r in ro.records()] == [Action.SUCCESS]
            assert ro.last("t", Action.SUCCESS) == 2.0
            with pytest.raises(RunLogError):
                ro.start_run("t", created=3.0, start=3.0, owner="me")
    finally:
        os.chmod(tmp_path, 0o700)
        os.chmod(path, 0o600)
