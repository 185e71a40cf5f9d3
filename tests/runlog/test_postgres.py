"""The PostgreSQL run log against a real server: URLs, errors, outages, schema, events.

The behaviour it shares with the other stores is pinned by test_runlog_contract.py; the
shared-log protocol (leases, claims) by test_postgres_claims.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from pg_server import PgServer, started_server, wait_until

from redengine_nb.errors import RunLogError
from redengine_nb.records import Action
from redengine_nb.runlog import open_runlog
from redengine_nb.runlog.postgres import SCHEMA_VERSION, PostgresRunLog

pytestmark = pytest.mark.slow


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresRunLog]:
    log = PostgresRunLog(pg_url)
    yield log
    log.close()


# -- URLs -------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql", "postgres"])
def test_open_runlog_takes_postgres_urls(pg_url: str, scheme: str) -> None:
    url = scheme + pg_url[len("postgresql+psycopg") :]
    log = open_runlog(url)
    try:
        assert isinstance(log, PostgresRunLog)
        rec = log.start_run("t", created=1.0, start=1.0, owner="me")
        assert log.records()[0].run_id == rec.run_id
    finally:
        log.close()


def test_the_location_hides_the_password(pg_server: PgServer, pg_database: str) -> None:
    with pg_server.admin() as conn:
        conn.execute("DROP ROLE IF EXISTS withpw")
        conn.execute("CREATE ROLE withpw LOGIN SUPERUSER PASSWORD 's3cret'")
    url = f"postgresql+psycopg://withpw:s3cret@127.0.0.1:{pg_server.port}/{pg_database}"
    with PostgresRunLog(url, listen=False) as log:
        assert "s3cret" not in log.location and "withpw" in log.location
        assert "s3cret" not in repr(log)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg2://u@h/db", "the driver 'psycopg2' is not supported"),
        ("postgresql+psycopg://u@h", "names no database"),
        ("postgresql+psycopg://u@h:notaport/db", "is not a database URL"),
    ],
)
def test_bad_urls_say_what_is_accepted(url: str, message: str) -> None:
    with pytest.raises(RunLogError, match=message) as info:
        open_runlog(url)
    assert "postgresql+psycopg://" in str(info.value)


def test_a_server_that_is_down(pg_server: PgServer) -> None:
    from pg_server import _free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/postgres"
    with pytest.raises(RunLogError, match="not reachable") as info:
        PostgresRunLog(url)
    assert "127.0.0.1" in str(info.value)


def test_a_database_that_does_not_exist(pg_server: PgServer) -> None:
    with pytest.raises(RunLogError, match="createdb nosuchdb"):
        PostgresRunLog(pg_server.url("nosuchdb"))


def test_an_unknown_role(pg_server: PgServer, pg_database: str) -> None:
    with pytest.raises(RunLogError, match="user name and password"):
        PostgresRunLog(pg_server.url(pg_database, user="nobody_at_all"))


# -- permissions ----------------------------------------------------------------------------
@pytest.fixture
def weak_role(pg_server: PgServer, pg_database: str) -> Iterator[str]:
    """A login role with no rights on the database beyond connecting."""
    with pg_server.admin(pg_database) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'weak'").fetchone():
            conn.execute("DROP OWNED BY weak CASCADE")
            conn.execute("DROP ROLE weak")
        conn.execute("CREATE ROLE weak LOGIN")
    yield "weak"
    with pg_server.admin(pg_database) as conn:
        conn.execute("DROP OWNED BY weak CASCADE")
        conn.execute("DROP ROLE weak")


def test_a_role_that_may_not_create_the_tables(
    pg_server: PgServer, pg_database: str, pg_url: str, weak_role: str
) -> None:
    with pytest.raises(RunLogError, match="lacks a right") as info:
        PostgresRunLog(pg_server.url(pg_database, user=weak_role))
    assert "GRANT" in str(info.value) and "permission denied" in str(info.value)


def test_a_role_without_rights_on_existing_tables(
    pg_server: PgServer, pg_database: str, pg_url: str, weak_role: str
) -> None:
    PostgresRunLog(pg_url, listen=False).close()  # made by the superuser
    with pytest.raises(RunLogError, match="lacks a right"):
        PostgresRunLog(pg_server.url(pg_database, user=weak_role))


def test_rights_revoked_mid_run(
    pg_server: PgServer, pg_database: str, pg_url: str, weak_role: str
) -> None:
    PostgresRunLog(pg_url, listen=False).close()
    with pg_server.admin(pg_database) as conn:
        conn.execute("GRANT USAGE ON SCHEMA redengine_nb TO weak")
        conn.execute("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA redengine_nb TO weak")
    with PostgresRunLog(pg_server.url(pg_database, user=weak_role), listen=False) as log:
        rec = log.start_run("t", created=1.0, start=1.0, owner="me")
        with pg_server.admin(pg_database) as conn:
            conn.execute("REVOKE UPDATE ON ALL TABLES IN SCHEMA redengine_nb FROM weak")
        with pytest.raises(RunLogError, match="lacks a right"):
            log.finish_run(rec.run_id, Action.SUCCESS, end=2.0)
        assert [r.run_id for r in log.open_runs()] == [rec.run_id]  # nothing half-written


# -- the schema -------------------------------------------------------------------------------
def test_a_schema_of_another_application_is_left_untouched(
    pg_server: PgServer, pg_database: str, pg_url: str
) -> None:
    with pg_server.admin(pg_database) as conn:
        conn.execute("CREATE SCHEMA redengine_nb")
        conn.execute("CREATE TABLE redengine_nb.runs (x int)")
        conn.execute("INSERT INTO redengine_nb.runs VALUES (42)")
    with pytest.raises(RunLogError, match="not a redengine_nb run log"):
        PostgresRunLog(pg_url)
    with pg_server.admin(pg_database) as conn:
        assert conn.execute("SELECT x FROM redengine_nb.runs").fetchall() == [(42,)]


def test_a_newer_schema_is_refused(pg_server: PgServer, pg_database: str, pg_url: str) -> None:
    PostgresRunLog(pg_url, listen=False).close()
    with pg_server.admin(pg_database) as conn:
        conn.execute(
            "UPDATE redengine_nb.meta SET value = %s WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )
    with pytest.raises(RunLogError, match="newer than this redengine_nb understands"):
        PostgresRunLog(pg_url)


def test_another_schema_name_keeps_logs_apart(pg_url: str) -> None:
    with PostgresRunLog(pg_url) as a, PostgresRunLog(pg_url, schema="other_log") as b:
        a.start_run("t", created=1.0, start=1.0, owner="me")
        assert b.records() == [] and len(a.records()) == 1


def test_schema_made_once_by_concurrent_openers(pg_url: str) -> None:
    errors: list[BaseException] = []
    stores: list[PostgresRunLog] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        barrier.wait()
        try:
            stores.append(PostgresRunLog(pg_url, listen=False))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, s in enumerate(stores):
        s.start_run(f"t{i}", created=1.0, start=1.0, owner="me")
    assert stores[0].task_names() == ["t0", "t1", "t2", "t3"]
    for s in stores:
        s.close()


# -- other schedulers' writes ------------------------------------------------------------------
def test_a_write_elsewhere_wakes_the_listener_and_drops_the_cache(pg_url: str) -> None:
    with PostgresRunLog(pg_url) as a, PostgresRunLog(pg_url) as b:
        assert wait_until(lambda: a.listening)
        woke = threading.Event()
        remove = a.on_change(woke.set)
        a.refresh()
        assert a.last("t", Action.RUN) is None  # cached now
        rec = a.start_run("t", created=1.0, start=1.0, owner="a")
        assert not woke.wait(0.3)  # its own writes do not wake it
        b.finish_run(rec.run_id, Action.SUCCESS, end=5.0)
        assert woke.wait(10)
        a.refresh()
        assert a.last("t", Action.SUCCESS) == 5.0
        remove()


def test_rows_written_elsewhere_reach_the_cache_without_a_query(
    pg_server: PgServer, pg_database: str, pg_url: str
) -> None:
    with PostgresRunLog(pg_url) as a, PostgresRunLog(pg_url) as b:
        assert wait_until(lambda: a.listening)
        a.refresh()
        assert a.last("t", Action.SUCCESS) is None and a.last("t", Action.RUN) is None
        woke = threading.Event()
        a.on_change(woke.set)
        rec = b.start_run("t", created=1.0, start=1.5, owner="b")
        b.finish_run(rec.run_id, Action.FAIL, end=4.0)
        assert woke.wait(10) and wait_until(lambda: a.last("t", Action.FAIL) == 4.0)
        assert a.last("t", Action.RUN) == 1.5
        # answered from the cache: true with every connection of a's cut
        pg_server.terminate_backends(pg_database)
        assert a.last("t", Action.FAIL) == 4.0 and a.last("t", Action.SUCCESS) is None


def test_without_a_listener_refresh_always_rereads(pg_url: str) -> None:
    with PostgresRunLog(pg_url, listen=False) as a, PostgresRunLog(pg_url) as b:
        assert a.last("t", Action.SUCCESS) is None
        rec = b.start_run("t", created=1.0, start=1.0, owner="b")
        b.finish_run(rec.run_id, Action.SUCCESS, end=3.0)
        a.refresh()
        assert a.last("t", Action.SUCCESS) == 3.0


# -- lost connections and outages ----------------------------------------------------------
def test_a_terminated_connection_is_made_again(
    pg_server: PgServer, pg_database: str, store: PostgresRunLog
) -> None:
    rec = store.start_run("t", created=1.0, start=1.0, owner="me")
    assert pg_server.terminate_backends(pg_database) >= 2  # reads, writes, listener
    store.finish_run(rec.run_id, Action.SUCCESS, end=2.0)  # the write connection again
    store.refresh()
    assert store.count("t", Action.SUCCESS) == 1  # and the read connection
    assert wait_until(lambda: store.listening)  # and the listener


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    """A server of this test's own, to stop and start."""
    server = started_server()
    yield server
    server.destroy()


def test_run_ends_during_an_outage_are_kept_and_written_later(own_server: PgServer) -> None:
    from redengine_nb.runlog.base import end_runs

    log = PostgresRunLog(own_server.url(), retry_for=0.3)
    try:
        a = log.start_run("a", created=1.0, start=1.0, owner="me")
        b = log.start_run("b", created=1.0, start=1.0, owner="me")
        assert log.last("a", Action.SUCCESS) is None
        own_server.stop()
        results = end_runs(
            log,
            [
                ("a", a.run_id, Action.SUCCESS, 2.0, None, "out"),
                ("b", b.run_id, Action.FAIL, 3.0, "boom", None),
            ],
        )
        assert results == [None, None]
        assert log.pending_ends == 2
        assert log.last("a", Action.SUCCESS) == 2.0  # answered from what is kept
        with pytest.raises(RunLogError, match="not reachable"):
            log.start_run("c", created=4.0, start=4.0, owner="me")  # a start is not kept
        own_server.start()
        log.refresh()  # writes what was kept
        assert log.pending_ends == 0
    finally:
        log.close()
    with PostgresRunLog(own_server.url(), listen=False) as again:
        got = {r.task_name: (r.action, r.end, r.output, r.exc_text) for r in again.records()}
        assert got == {
            "a": (Action.SUCCESS, 2.0, "out", None),
            "b": (Action.FAIL, 3.0, None, "boom"),
        }


def test_a_short_outage_is_ridden_out_by_retrying(own_server: PgServer) -> None:
    log = PostgresRunLog(own_server.url(), retry_for=60)
    try:
        rec = log.start_run("a", created=1.0, start=1.0, owner="me")
        own_server.stop()
        restart = threading.Timer(0.5, own_server.start)
        restart.start()
        done = log.finish_run(rec.run_id, Action.SUCCESS, end=2.0)  # waits, retrying
        restart.join()
        assert done.action is Action.SUCCESS
        assert log.pending_ends == 0
    finally:
        log.close()
