"""Two apps (as two schedulers on two machines) sharing one PostgreSQL run log."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pg_server import wait_until

from redengine_nb import RedEngine
from redengine_nb.testing import FakeClock

pytestmark = pytest.mark.slow


@pytest.fixture
def make_app(pg_url: str) -> Iterator[Callable[[], RedEngine]]:
    apps: list[RedEngine] = []

    def make() -> RedEngine:
        clock = FakeClock("2024-03-11 09:00", tz="Europe/Helsinki")
        app = RedEngine({"task_execution": "thread"}, logs=pg_url, clock=clock)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.session.wait_idle(10)
        app.session.close_executors(terminate=True)
        app.runlog.close()


def step(app: RedEngine) -> list[str]:
    started = app.session.tick()
    assert app.session.wait_idle(30)
    return started


def test_a_run_ending_on_one_scheduler_wakes_the_other(
    make_app: Callable[[], RedEngine],
) -> None:
    here, there = make_app(), make_app()
    here.task("after task 'parent'", func=lambda: None, name="child")
    there.task("daily", func=lambda: None, name="parent")
    assert step(here) == []
    assert wait_until(lambda: here.runlog.listening)  # type: ignore[attr-defined]
    here.session.wake.clear()
    assert step(there) == ["parent"]
    # No polling: as its runner does, here steps only when its wake event is set -- by
    # the other scheduler's NOTIFYs (parent's start, then its end).
    started: list[str] = []
    for _ in range(5):
        assert here.session.wake.wait(30)
        here.session.wake.clear()
        started = step(here)
        if started:
            break
    assert started == ["child"]
    assert step(here) == []


def test_status_shows_the_fleet(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from redengine_nb.cli import main
    from redengine_nb.runlog.postgres import PostgresRunLog

    with PostgresRunLog(pg_url, listen=False) as log:
        now = time.time()
        alive = log.acquire_lease(now=now, ttl=60, host="hostA", pid=101, info="serve a.ipynb")
        log.acquire_lease(now=now - 120, ttl=60, host="hostB", pid=202)
        log.start_run("fetch", created=now, start=now, owner=alive)
    assert main(["status", "--logs", pg_url]) == 0
    out = capsys.readouterr().out
    assert "fetch" in out and "running" in out
    fleet = out.split("schedulers (leases):", 1)[1].splitlines()[3:]
    rows = {line.split()[0]: line.split() for line in fleet if line.strip()}
    assert set(rows) == {"hostA:101", "hostB:202"}
    assert rows["hostA:101"][2] == "alive" and rows["hostA:101"][-3:] == ["1", "serve", "a.ipynb"]
    assert rows["hostB:202"][2] == "expired"
