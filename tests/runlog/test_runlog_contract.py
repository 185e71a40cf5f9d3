"""The behaviour every run-log store shares (MemoryRunLog and SQLiteRunLog alike)."""

from __future__ import annotations

import pytest

from redengine_nb.records import Action, RunRecord
from redengine_nb.runlog import History, RunLog


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
