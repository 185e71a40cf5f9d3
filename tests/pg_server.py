"""A real PostgreSQL server for the tests: Debian's binaries, a temporary data directory,
a free loopback port and a unix socket beside the data.

``initdb`` and ``postgres`` refuse to run as root; as root the server runs as the
``postgres`` system user (Debian's package creates it). Without the binaries the tests
that need the server are skipped -- except in CI (``CI=true``), where that is a failure:
scripts/test.sh installs the package there.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_BIN_DIRS = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (17, 16, 15, 14, 13)]


def pg_bin() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``/``postgres``, or ``None``."""
    env = os.environ.get("REDENGINE_NB_PG_BIN")
    for folder in ([Path(env)] if env else []) + PG_BIN_DIRS:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def need_pg_bin() -> Path:
    """The binaries' folder; skips the test without them, fails in CI."""
    folder = pg_bin()
    if folder is None:
        message = (
            "PostgreSQL binaries not found (apt-get install postgresql, or set "
            "REDENGINE_NB_PG_BIN to the folder of initdb/pg_ctl)"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(message)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgServer:
    """One PostgreSQL cluster: ``start()``, ``stop()``, ``url(db)``, ``admin()``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="renb-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = _free_port()
        self._demote: Callable[[], None] | None = None
        self.os_user: str | None = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")  # the Debian package's system user
            self.os_user = entry.pw_name
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            uid, gid = entry.pw_uid, entry.pw_gid

            def demote() -> None:
                os.setgid(gid)
                os.setuid(uid)

            self._demote = demote
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self.running = False

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / tool), *args],
            preexec_fn=self._demote,
            capture_output=True,
            text=True,
            check=check,
            cwd=self.root,
            timeout=120,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        for _attempt in range(3):
            done = self._run(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.logfile),
                "-o",
                options,
                check=False,
            )
            if done.returncode == 0:
                self.running = True
                return
            self.port = _free_port()  # the port may have been taken meanwhile
            options = options.replace(options.split()[1], str(self.port), 1)
        raise RuntimeError(f"PostgreSQL did not start:\n{done.stdout}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data), check=False)
            self.running = False

    def log_tail(self) -> str:
        try:
            return self.logfile.read_text()[-3000:]
        except OSError:
            return ""

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={database} user={user}"

    @contextlib.contextmanager
    def admin(self, database: str = "postgres") -> Iterator[Any]:
        """An autocommit psycopg connection as the superuser."""
        import psycopg

        conn = psycopg.connect(self.dsn(database), autocommit=True)
        try:
            yield conn
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def terminate_backends(self, database: str) -> int:
        """``pg_terminate_backend`` on every other connection to ``database``."""
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        return len(rows)


def started_server() -> PgServer:
    server = PgServer(need_pg_bin())
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    return server


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``check`` until true (a guard with a generous timeout, not a timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# -- fixtures (imported by tests/conftest.py) --------------------------------------------
@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole test session (stopped at its end)."""
    server = started_server()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def pg_database(pg_server: PgServer, request: pytest.FixtureRequest) -> str:
    """A database of its own for each test module; its name."""
    name = "t_" + request.module.__name__.rsplit(".", 1)[-1][:50]
    pg_server.create_database(name)
    return name


@pytest.fixture
def pg_url(pg_server: PgServer, pg_database: str) -> str:
    """A URL to an empty run log: the module's database, the store's schema dropped."""
    with pg_server.admin(pg_database) as conn:
        conn.execute("DROP SCHEMA IF EXISTS redengine_nb CASCADE")
    return pg_server.url(pg_database)
