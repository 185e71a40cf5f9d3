"""The behaviour every run-log store shares (MemoryRunLog and SQLiteRunLog alike)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from redengine_nb.records import Action, RunRecord
from redengine_nb.runlog import History, RunLog
from redengine_nb.runlog.base import LeaseLost


def test_is_a_runlog(runlog: RunLog) -> None:
    assert isinstance(runlog, RunLog)
    assert isinstance(runlog, History)
    assert runlog.location


def test_empty(runlog: RunLog) -> None:
    assert runlog.last("t", Action.RUN) is None
    assert runlog.last("t", Action.SUCCESS) is None
    assert runlog.count("t") == 0
    assert runlog.count("t", Action.RUN) == 0
    assert runlog.records() == []
    assert list(runlog.open_runs()) == []
    assert runlog.task_names() == []


def test_start_run_is_open_and_indexed_by_start(runlog: RunLog) -> None:
    rec = runlog.start_run("t", created=100.0, start=101.0, owner="me")
    assert rec.run_id
    assert (rec.task_name, rec.action, rec.created, rec.start, rec.owner) == (
        "t",
        Action.RUN,
        100.0,
        101.0,
        "me",
    )
    assert runlog.last("t", Action.RUN) == 101.0
    assert runlog.last("t", Action.SUCCESS) is None
    assert [r.run_id for r in runlog.open_runs()] == [rec.run_id]
    assert runlog.count("t", Action.RUN) == 1
    assert runlog.count("t") == 1
    assert runlog.count("other") == 0


def test_finish_run_updates_the_one_row(runlog: RunLog) -> None:
    rec = runlog.start_run("t", created=100.0, start=101.0, owner="me")
    done = runlog.finish_run(rec.run_id, Action.SUCCESS, end=105.0, output="hi\n")
    assert (done.run_id, done.action, done.start, done.end, done.output) == (
        rec.run_id,
        Action.SUCCESS,
        101.0,
        105.0,
        "hi\n",
    )
    assert done.runtime == 4.0
    assert runlog.last("t", Action.SUCCESS) == 105.0
    assert runlog.last("t", Action.RUN) == 101.0  # a run that ended still started
    assert runlog.last("t", Action.FAIL) is None
    assert list(runlog.open_runs()) == []
    # one row per run: counted once in total, once as started, once as a success
    assert len(runlog.records()) == 1
    assert runlog.count("t") == 1
    assert runlog.count("t", Action.RUN) == 1
    assert runlog.count("t", Action.SUCCESS) == 1
    [stored] = runlog.records()
    assert stored.action is Action.SUCCESS and stored.end == 105.0


def test_finish_run_errors(runlog: RunLog) -> None:
    rec = runlog.start_run("t", created=1.0, start=1.0, owner="me")
    with pytest.raises(ValueError):
        runlog.finish_run(rec.run_id, Action.RUN, end=2.0)
    runlog.finish_run(rec.run_id, Action.FAIL, end=2.0, exc_text="Traceback ...")
    with pytest.raises(ValueError, match="already ended"):
        runlog.finish_run(rec.run_id, Action.SUCCESS, end=3.0)
    with pytest.raises(KeyError):
        runlog.finish_run("999999", Action.SUCCESS, end=3.0)
    # the failed attempts changed nothing
    [stored] = runlog.records()
    assert (stored.action, stored.end, stored.exc_text) == (Action.FAIL, 2.0, "Traceback ...")
    assert runlog.last("t", Action.SUCCESS) is None


def test_last_is_the_newest_whatever_the_write_order(runlog: RunLog) -> None:
    runlog.log_run(RunRecord("", "t", Action.SUCCESS, 50.0, 50.0, 60.0))
    runlog.log_run(RunRecord("", "t", Action.SUCCESS, 10.0, 10.0, 20.0))  # older, later
    runlog.log_run(RunRecord("", "t", Action.FAIL, 30.0, 30.0, 40.0))
    assert runlog.last("t", Action.SUCCESS) == 60.0
    assert runlog.last("t", Action.FAIL) == 40.0
    assert runlog.last("t", Action.RUN) == 50.0


def test_log_run_assigns_ids_and_indexes(runlog: RunLog) -> None:
    a = runlog.log_run(RunRecord("", "t", Action.FAIL, 5.0, None, 5.0, exc_text="bad param"))
    b = runlog.start_run("t", created=6.0, start=6.0, owner="me")
    assert a.run_id and b.run_id and a.run_id != b.run_id
    assert runlog.last("t", Action.FAIL) == 5.0
    assert runlog.last("t", Action.RUN) == 6.0  # a run that never started has no start
    assert runlog.count("t", Action.RUN) == 1
    assert runlog.count("t") == 2


def test_log_run_keeps_a_free_id_and_never_reuses_it(runlog: RunLog) -> None:
    kept = runlog.log_run(RunRecord("1", "t", Action.SUCCESS, 1.0, 1.0, 2.0))
    assert kept.run_id == "1"
    new = runlog.start_run("t", created=3.0, start=3.0, owner="me")
    assert new.run_id != "1"
    dup = runlog.log_run(RunRecord("1", "t", Action.SUCCESS, 4.0, 4.0, 5.0))
    assert dup.run_id not in ("1", new.run_id)
    assert len(runlog.records()) == 3


def test_count_in_a_half_open_span(runlog: RunLog) -> None:
    for end in (10.0, 20.0, 30.0):
        runlog.log_run(RunRecord("", "t", Action.SUCCESS, end - 5, end - 5, end))
    assert runlog.count("t", Action.SUCCESS) == 3
    assert runlog.count("t", Action.SUCCESS, since=20.0) == 2
    assert runlog.count("t", Action.SUCCESS, until=20.0) == 1
    assert runlog.count("t", Action.SUCCESS, since=10.0, until=30.0) == 2
    assert runlog.count("t", Action.SUCCESS, since=31.0) == 0
    # started: counted by start
    assert runlog.count("t", Action.RUN, since=15.0, until=25.0) == 1
    # any action: each record once, by its time (its end)
    assert runlog.count("t", None, since=20.0) == 2


def test_records_order_filters_and_limit(runlog: RunLog) -> None:
    made = []
    for i in range(6):
        task = "a" if i % 2 == 0 else "b"
        rec = runlog.start_run(task, created=float(i), start=float(i), owner="me")
        if i < 5:
            action = Action.SUCCESS if i % 3 else Action.FAIL
            runlog.finish_run(rec.run_id, action, end=float(i) + 0.5)
        made.append(rec.run_id)
    assert [r.run_id for r in runlog.records()] == made  # oldest first
    assert [r.run_id for r in runlog.records(limit=2)] == made[-2:]  # the newest two
    assert runlog.records(limit=0) == []
    assert [r.run_id for r in runlog.records(task="a")] == made[0::2]
    assert [r.run_id for r in runlog.records(task="a", limit=1)] == [made[4]]
    assert [r.created for r in runlog.records(action=Action.FAIL)] == [0.0, 3.0]
    assert [r.created for r in runlog.records(action=Action.RUN)] == [5.0]
    # since compares the record's time: its end once ended, else its start
    assert [r.created for r in runlog.records(since=3.5)] == [3.0, 4.0, 5.0]
    assert [r.created for r in runlog.records(task="b", since=3.5, limit=1)] == [5.0]


def test_records_sorted_by_created_not_by_write_order(runlog: RunLog) -> None:
    runlog.log_run(RunRecord("", "t", Action.SUCCESS, 20.0, 20.0, 21.0))
    runlog.log_run(RunRecord("", "t", Action.SUCCESS, 10.0, 10.0, 11.0))  # clock went back
    assert [r.created for r in runlog.records()] == [10.0, 20.0]
    assert [r.created for r in runlog.records(limit=1)] == [20.0]


def test_mark_crashed(runlog: RunLog) -> None:
    a = runlog.start_run("a", created=1.0, start=1.0, owner="gone")
    b = runlog.start_run("b", created=2.0, start=2.0, owner="gone")
    c = runlog.start_run("c", created=3.0, start=3.0, owner="alive")
    runlog.finish_run(b.run_id, Action.SUCCESS, end=2.5)
    n = runlog.mark_crashed([a.run_id, b.run_id, "424242", "not-an-id"], end=9.0)
    assert n == 1  # b had ended; the others do not exist
    assert [r.run_id for r in runlog.open_runs()] == [c.run_id]
    assert runlog.last("a", Action.CRASH) == 9.0
    assert runlog.last("b", Action.CRASH) is None
    [crashed] = runlog.records(task="a")
    assert (crashed.action, crashed.end, crashed.owner) == (Action.CRASH, 9.0, "gone")
    assert runlog.mark_crashed([], end=10.0) == 0


def test_task_names(runlog: RunLog) -> None:
    for name in ["b", "a", "b", "c & d", "a"]:
        runlog.start_run(name, created=1.0, start=1.0, owner="me")
    assert runlog.task_names() == ["a", "b", "c & d"]


def test_text_stored_as_given(runlog: RunLog) -> None:
    text = "ünïcödé ✓ 'quotes' \"and\" \x00 nul\n" + "x" * 100_000
    rec = runlog.start_run("t", created=1.0, start=1.0, owner="me")
    runlog.finish_run(rec.run_id, Action.FAIL, end=2.0, exc_text=text, output=text[::-1])
    [stored] = runlog.records()
    assert stored.exc_text == text
    assert stored.output == text[::-1]


def test_refresh_and_close_are_safe(runlog: RunLog) -> None:
    runlog.start_run("t", created=1.0, start=1.0, owner="me")
    runlog.refresh()
    assert runlog.last("t", Action.RUN) == 1.0
    runlog.close()
    runlog.close()  # idempotent


def test_last_of_is_the_newest_over_the_actions(runlog: RunLog) -> None:
    last_of = runlog.last_of  # type: ignore[attr-defined]
    finished = (Action.SUCCESS, Action.FAIL, Action.TERMINATE, Action.INACTION)
    assert last_of("t", finished) is None
    runlog.log_run(RunRecord("", "t", Action.SUCCESS, 1.0, 1.0, 2.0))
    runlog.log_run(RunRecord("", "t", Action.FAIL, 3.0, 3.0, 4.0))
    runlog.log_run(RunRecord("", "other", Action.SUCCESS, 9.0, 9.0, 10.0))
    assert last_of("t", finished) == 4.0
    assert last_of("t", (Action.SUCCESS,)) == 2.0
    assert last_of("t", (Action.CRASH, Action.TERMINATE)) is None
    assert last_of("other", finished) == 10.0


def test_end_runs_closes_a_batch_and_refuses_bad_ones_alone(runlog: RunLog) -> None:
    from redengine_nb.runlog.base import end_runs

    a, b, c = (runlog.start_run(t, created=1.0, start=1.0, owner="me") for t in "abc")
    assert runlog.last("a", Action.SUCCESS) is None  # cached (where a store caches)
    good = end_runs(
        runlog,
        [
            ("a", a.run_id, Action.SUCCESS, 2.0, None, "out"),
            ("b", b.run_id, Action.FAIL, 3.0, "boom", None),
        ],
    )
    assert good == [None, None]
    assert runlog.last("a", Action.SUCCESS) == 2.0 and runlog.last("b", Action.FAIL) == 3.0
    mixed = end_runs(
        runlog,
        [
            ("c", c.run_id, Action.TERMINATE, 4.0, None, None),
            ("a", a.run_id, Action.SUCCESS, 5.0, None, None),  # already ended
            ("z", "999999", Action.SUCCESS, 5.0, None, None),  # no such run
        ],
    )
    assert mixed[0] is None
    assert isinstance(mixed[1], ValueError) and "already ended" in str(mixed[1])
    assert isinstance(mixed[2], KeyError)
    assert runlog.last("c", Action.TERMINATE) == 4.0
    assert runlog.last("a", Action.SUCCESS) == 2.0  # the refused end changed nothing
    assert list(runlog.open_runs()) == []
    (rec_a,) = runlog.records(task="a")
    assert (rec_a.action, rec_a.end, rec_a.output) == (Action.SUCCESS, 2.0, "out")


# -- the shared-log protocol: leases and claims (docs/reliability.md) --------------------


def _lease(log: RunLog, now: float = 100.0, ttl: float = 30.0) -> str:
    return log.acquire_lease(now=now, ttl=ttl, host="h", pid=1, info="test")


def test_leases_are_acquired_renewed_and_released(runlog: RunLog) -> None:
    a = _lease(runlog, now=100.0)
    b = _lease(runlog, now=101.0)
    assert a != b and a.startswith("L") and ":" not in a
    [la, lb] = runlog.leases(100.0)
    assert (la.lease_id, la.started, la.expires, la.info) == (a, 100.0, 130.0, "test")
    assert lb.lease_id == b
    assert runlog.renew_lease(a, now=120.0, ttl=30.0) is True
    assert [x.expires for x in runlog.leases(120.0) if x.lease_id == a] == [150.0]
    runlog.release_lease(b)
    assert [x.lease_id for x in runlog.leases(120.0)] == [a]
    assert runlog.renew_lease(b, now=121.0, ttl=30.0) is False  # gone: stop writing


def test_reap_expired_crashes_the_runs_of_dead_leases_only(runlog: RunLog) -> None:
    dead = _lease(runlog, now=100.0, ttl=10.0)
    live = _lease(runlog, now=100.0, ttl=100.0)
    mine = runlog.claim_starts(["a"], created=101.0, start=101.0, owner=dead, recheck=list)
    theirs = runlog.claim_starts(["b"], created=101.0, start=101.0, owner=live, recheck=list)
    legacy = runlog.start_run("c", created=101.0, start=101.0, owner="host:123:t5")
    assert runlog.reap_expired(now=105.0) == []  # nobody expired yet
    assert runlog.reap_expired(now=120.0) == [mine[0].run_id]
    assert [x.lease_id for x in runlog.leases(120.0)] == [live]
    [crashed] = runlog.records(task="a")
    assert (crashed.action, crashed.end) == (Action.CRASH, 120.0)
    assert runlog.last("a", Action.CRASH) == 120.0
    # the live lease's run and the old host:pid owner's run are left alone
    assert {r.run_id for r in runlog.open_runs()} == {theirs[0].run_id, legacy.run_id}
    with pytest.raises(LeaseLost):
        runlog.claim_starts(["a"], created=121.0, start=121.0, owner=dead, recheck=list)
    assert runlog.count("a") == 1  # the fenced claim wrote nothing


def test_claim_alone_does_not_recheck(runlog: RunLog) -> None:
    owner = _lease(runlog)
    calls: list[list[str]] = []

    def recheck(names: Sequence[str]) -> list[str]:
        calls.append(list(names))
        return []

    recs = runlog.claim_starts(
        ["a", "b"], created=5.0, start=[5.5, 6.0], owner=owner, recheck=recheck
    )
    recs += runlog.claim_starts(["a"], created=7.0, start=7.0, owner=owner, recheck=recheck)
    assert calls == []  # one scheduler: its own writes never make it look again
    assert [(r.task_name, r.start, r.owner) for r in recs] == [
        ("a", 5.5, owner),
        ("b", 6.0, owner),
        ("a", 7.0, owner),
    ]
    assert runlog.count("a", Action.RUN) == 2
    assert runlog.claim_starts([], created=8.0, start=8.0, owner=owner, recheck=recheck) == []


def test_claims_of_two_schedulers_start_a_due_run_once(
    shared_pair: tuple[RunLog, RunLog],
) -> None:
    """Both found 'daily' due against what they had read; the second claim sees the first
    scheduler's start inside its own write transaction and writes nothing."""
    one, two = shared_pair
    lease1 = _lease(one)
    lease2 = _lease(two)
    assert one.last("daily", Action.RUN) is None and two.last("daily", Action.RUN) is None

    def still_due(log: RunLog) -> Callable[[Sequence[str]], list[str]]:
        def recheck(names: Sequence[str]) -> list[str]:
            return [n for n in names if log.last(n, Action.RUN) is None]

        return recheck

    first = one.claim_starts(
        ["daily", "x"], created=10.0, start=10.0, owner=lease1, recheck=still_due(one)
    )
    assert [r.task_name for r in first] == ["daily", "x"]
    second = two.claim_starts(
        ["daily", "y"], created=10.0, start=10.5, owner=lease2, recheck=still_due(two)
    )
    assert [r.task_name for r in second] == ["y"]
    assert two.last("daily", Action.RUN) == 10.0  # its cache was refreshed, too
    assert one.count("daily", Action.RUN) == 1


def test_a_later_claim_of_one_step_still_rechecks_after_an_earlier_one_did(
    shared_pair: tuple[RunLog, RunLog],
) -> None:
    """One step found 'a' and 'b' due, then claimed them in two batches. Another scheduler
    had started both in one commit in between: the first claim rechecks 'a' and drops it;
    the second must recheck 'b' too, though nothing was written since the first claim
    (its decision was made before the first claim looked). Two schedulers each ran the
    tail of a 40-task launch twice before this held."""
    one, two = shared_pair
    lease1 = _lease(one)
    lease2 = _lease(two)
    assert two.last("a", Action.RUN) is None and two.last("b", Action.RUN) is None  # read
    rechecked: list[str] = []

    def still_due(names: Sequence[str]) -> list[str]:
        rechecked.extend(names)
        return [n for n in names if two.last(n, Action.RUN) is None]

    one.claim_starts(["a", "b"], created=10.0, start=10.0, owner=lease1, recheck=list)
    assert two.claim_starts(["a"], created=10.0, start=10.2, owner=lease2, recheck=still_due) == []
    assert two.claim_starts(["b"], created=10.0, start=10.3, owner=lease2, recheck=still_due) == []
    assert rechecked == ["a", "b"]
    assert one.count("a") == 1 and one.count("b") == 1
    # A new step reads afresh (refresh): from there on, claims need no recheck again.
    two.refresh()
    assert two.claim_starts(["c"], created=11.0, start=11.0, owner=lease2, recheck=still_due)
    assert rechecked == ["a", "b"]


def test_claim_raises_lease_lost_once_reaped_by_another(
    shared_pair: tuple[RunLog, RunLog],
) -> None:
    one, two = shared_pair
    lease1 = _lease(one, now=100.0, ttl=10.0)
    lease2 = _lease(two, now=100.0, ttl=100.0)
    run = one.claim_starts(["a"], created=101.0, start=101.0, owner=lease1, recheck=list)[0]
    assert two.reap_expired(now=150.0) == [run.run_id]
    with pytest.raises(LeaseLost, match="lease"):
        one.claim_starts(["a"], created=151.0, start=151.0, owner=lease1, recheck=list)
    assert one.renew_lease(lease1, now=151.0, ttl=10.0) is False
    two.refresh()
    assert two.count("a") == 1 and two.records(task="a")[0].action is Action.CRASH
    assert lease2 in {x.lease_id for x in two.leases(150.0)}


# -- retention ----------------------------------------------------------------------------


def test_prune_deletes_old_and_surplus_ended_records_never_open_ones(runlog: RunLog) -> None:
    for i in range(5):
        rec = runlog.start_run("t", created=float(i), start=float(i), owner="me")
        runlog.finish_run(rec.run_id, Action.SUCCESS, end=i + 0.5)
    openrec = runlog.start_run("t", created=1.0, start=1.0, owner="me")
    runlog.log_run(RunRecord("", "u", Action.FAIL, 0.0, 0.0, 0.2))
    assert runlog.prune() == 0
    assert runlog.prune(before=2.0) == 3  # t at 0.5 and 1.5, u at 0.2
    assert runlog.last("u", Action.FAIL) is None
    assert [r.end for r in runlog.records(task="t")] == [None, 2.5, 3.5, 4.5]
    assert runlog.prune(keep=1) == 2
    assert sorted((r.action, r.end) for r in runlog.records(task="t")) == [
        (Action.RUN, None),
        (Action.SUCCESS, 4.5),
    ]
    assert [r.run_id for r in runlog.open_runs()] == [openrec.run_id]
    assert runlog.last("t", Action.SUCCESS) == 4.5
    assert runlog.count("t", Action.SUCCESS) == 1
    runlog.vacuum()
    assert runlog.count("t") == 2
