"""The shared-log protocol (leases, claims, reaping; see CLAIMS.md / docs/scale-out.md) on
the PostgreSQL run log, with several stores (as several schedulers would hold) on one
real server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import pytest

from redengine_nb.records import Action
from redengine_nb.runlog.postgres import LeaseLost, PostgresRunLog

pytestmark = pytest.mark.slow


@pytest.fixture
def stores(pg_url: str) -> Iterator[Callable[[], PostgresRunLog]]:
    """Open as many stores on one log as a test wants (closed at its end)."""
    made: list[PostgresRunLog] = []

    def make() -> PostgresRunLog:
        made.append(PostgresRunLog(pg_url))
        return made[-1]

    yield make
    for store in made:
        store.close()


def never(names: Sequence[str]) -> Sequence[str]:
    raise AssertionError(f"recheck called for {list(names)} with no other writer")


# -- leases ---------------------------------------------------------------------------------
def test_lease_lifecycle(stores: Callable[[], PostgresRunLog]) -> None:
    log = stores()
    a = log.acquire_lease(now=100.0, ttl=10.0, host="h1", pid=11, info="serve nb.ipynb")
    b = log.acquire_lease(now=101.0, ttl=10.0, host="h2", pid=22)
    assert a != b
    found = {x.lease_id: x for x in log.leases(now=105.0)}
    assert set(found) == {a, b}
    assert (found[a].host, found[a].pid, found[a].info, found[a].expires) == (
        "h1",
        11,
        "serve nb.ipynb",
        110.0,
    )
    assert found[a].alive(105.0) and a.startswith("L") and ":" not in a
    assert log.renew_lease(a, now=108.0, ttl=10.0)
    assert {x.lease_id: x.alive(112.0) for x in log.leases(now=112.0)} == {a: True, b: False}
    log.release_lease(b)
    assert [x.lease_id for x in log.leases(now=112.0)] == [a]


def test_reap_crashes_the_runs_of_expired_and_missing_leases_only(
    stores: Callable[[], PostgresRunLog],
) -> None:
    log, other = stores(), stores()
    live = log.acquire_lease(now=100.0, ttl=60.0, host="h", pid=1)
    dead = other.acquire_lease(now=100.0, ttl=5.0, host="h", pid=2)
    mine = log.start_run("a", created=100.0, start=100.0, owner=live)
    gone = other.start_run("b", created=100.0, start=100.0, owner=dead)
    done = other.start_run("c", created=100.0, start=100.0, owner=dead)
    other.finish_run(done.run_id, Action.SUCCESS, end=101.0)
    stray = log.start_run("d", created=100.0, start=100.0, owner="L" + "0" * 24)  # no lease
    legacy = log.start_run("e", created=100.0, start=100.0, owner="host:1:t1")  # no lease id
    assert log.last("b", Action.CRASH) is None  # cached: reaping must keep it true
    crashed = log.reap_expired(now=120.0)
    assert sorted(crashed) == sorted([gone.run_id, stray.run_id])
    assert [r.run_id for r in log.open_runs()] == [mine.run_id, legacy.run_id]
    assert log.last("b", Action.CRASH) == 120.0
    assert [x.lease_id for x in log.leases(now=120.0)] == [live]
    assert not other.renew_lease(dead, now=121.0, ttl=5.0)  # fenced: it must stop
    assert log.reap_expired(now=121.0) == []


# -- claims ---------------------------------------------------------------------------------
def test_one_scheduler_claims_without_rechecking(stores: Callable[[], PostgresRunLog]) -> None:
    log = stores()
    lease = log.acquire_lease(now=0.0, ttl=60.0, host="h", pid=1)
    first = log.claim_starts(["a", "b"], created=1.0, start=1.0, owner=lease, recheck=never)
    assert [(r.task_name, r.start, r.owner) for r in first] == [
        ("a", 1.0, lease),
        ("b", 1.0, lease),
    ]
    again = log.claim_starts(["b", "a"], created=2.0, start=[2.0, 2.5], owner=lease, recheck=never)
    assert [(r.task_name, r.start) for r in again] == [("b", 2.0), ("a", 2.5)]
    assert log.count("a", Action.RUN) == 2 and log.last("a", Action.RUN) == 2.5


def test_a_claim_after_another_scheduler_rechecks_that_task(
    stores: Callable[[], PostgresRunLog],
) -> None:
    one, two = stores(), stores()
    l1 = one.acquire_lease(now=0.0, ttl=60.0, host="h", pid=1)
    l2 = two.acquire_lease(now=0.0, ttl=60.0, host="h", pid=2)
    one.claim_starts(["a", "b"], created=1.0, start=1.0, owner=l1, recheck=never)
    asked: list[list[str]] = []

    def recheck(names: Sequence[str]) -> Sequence[str]:
        asked.append(list(names))
        # the history the condition reads is current here: 'a' started at 1.0 elsewhere
        assert two.last("a", Action.RUN) == 1.0
        return [n for n in names if two.last(n, Action.RUN) is None]

    got = two.claim_starts(["a", "c"], created=1.0, start=1.0, owner=l2, recheck=recheck)
    assert asked == [["a"]]  # 'c' was never claimed: no one else can have started it
    assert [r.task_name for r in got] == ["c"]
    assert one.count("a", Action.RUN) == 1
    # one's view of 'c' is stale now: claiming it rechecks
    asked.clear()
    got = one.claim_starts(["c"], created=2.0, start=2.0, owner=l1, recheck=lambda n: [])
    assert got == [] and one.count("c", Action.RUN) == 1


def test_fencing_a_lost_lease_writes_nothing(stores: Callable[[], PostgresRunLog]) -> None:
    log, reaper = stores(), stores()
    lease = log.acquire_lease(now=0.0, ttl=10.0, host="h", pid=1)
    # expired, not reaped yet: the claim is written, and the reaper crashes it
    [late] = log.claim_starts(["a"], created=11.0, start=11.0, owner=lease, recheck=never)
    assert reaper.reap_expired(now=12.0) == [late.run_id]
    with pytest.raises(LeaseLost, match="gone"):
        log.claim_starts(["b"], created=12.0, start=12.0, owner=lease, recheck=never)
    assert log.task_names() == ["a"] and log.count("b") == 0


def test_skip_locked_a_task_being_claimed_is_left_to_its_claimer(
    stores: Callable[[], PostgresRunLog],
) -> None:
    one, two = stores(), stores()
    l1 = one.acquire_lease(now=0.0, ttl=60.0, host="h", pid=1)
    l2 = two.acquire_lease(now=0.0, ttl=60.0, host="h", pid=2)
    two.claim_starts(["a"], created=1.0, start=1.0, owner=l2, recheck=never)
    inside, release = threading.Event(), threading.Event()

    def slow_recheck(names: Sequence[str]) -> Sequence[str]:
        inside.set()  # one holds the lock of 'a' now
        assert release.wait(30)
        return names

    claimed: list[str] = []
    worker = threading.Thread(
        target=lambda: claimed.extend(
            r.task_name
            for r in one.claim_starts(["a"], created=2.0, start=2.0, owner=l1, recheck=slow_recheck)
        )
    )
    worker.start()
    try:
        assert inside.wait(30)
        # two does not wait for one's transaction: 'a' is skipped, 'b' claimed
        got = two.claim_starts(["a", "b"], created=2.0, start=2.0, owner=l2, recheck=never)
        assert [r.task_name for r in got] == ["b"]
    finally:
        release.set()
        worker.join(30)
    assert claimed == ["a"]
    assert two.count("a", Action.RUN) == 2


def test_many_schedulers_claiming_at_once_start_each_run_once(
    stores: Callable[[], PostgresRunLog],
) -> None:
    tasks = [f"t{i:02d}" for i in range(40)]
    logs = [stores() for _ in range(6)]
    leases = [log.acquire_lease(now=0.0, ttl=600.0, host="h", pid=i) for i, log in enumerate(logs)]
    rounds = 5
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def scheduler(k: int) -> None:
        log, lease = logs[k], leases[k]
        try:
            for at in range(1, rounds + 1):
                barrier.wait(30)
                log.refresh()
                due = [t for t in tasks if (log.last(t, Action.RUN) or 0.0) < at]
                log.claim_starts(
                    due,
                    created=float(at),
                    start=float(at),
                    owner=lease,
                    # the condition: 'not started at this time yet', read from the log
                    recheck=lambda names, at=at, log=log: [
                        n for n in names if (log.last(n, Action.RUN) or 0.0) < at
                    ],
                )
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=scheduler, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    starts = sorted((r.task_name, r.start) for r in logs[0].records())
    assert starts == sorted((t, float(at)) for t in tasks for at in range(1, rounds + 1))
