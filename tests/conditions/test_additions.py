"""Rocketry's additions that Red Engine lacks: the year unit (``yearly``, ``time of year``)
and ``retry`` (issue 13, item 6). Their meaning is checked against Rocketry 2.5.1 in
test_reference.py; here, exact instants with a FakeClock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Sim
from hypothesis import given, settings
from hypothesis import strategies as st

from redengine_nb.conditions import (
    BaseCondition,
    Context,
    daily,
    parse,
    retry,
    time_of_year,
    yearly,
)
from redengine_nb.conditions.status import Retry
from redengine_nb.errors import ConditionParseError
from redengine_nb.records import Action
from redengine_nb.runlog.memory import MemoryRunLog
from redengine_nb.testing import FakeClock

TZ = "Europe/Helsinki"
S, F = Action.SUCCESS, Action.FAIL


def history(*runs: tuple[str, Action]) -> MemoryRunLog:
    """Runs of task 't' given as (wall time, final action; RUN for one still open)."""
    log = MemoryRunLog()
    for when, action in runs:
        ts = FakeClock(when, tz=TZ).time()
        rec = log.start_run("t", created=ts, start=ts, owner="x")
        if action is not Action.RUN:
            log.finish_run(rec.run_id, action, end=ts + 1)
    return log


def ctx(when: str, log: MemoryRunLog) -> Context:
    return Context(FakeClock(when, tz=TZ).now(), log, "t")


def wall(cond: BaseCondition, c: Context, undue: bool = False) -> str | None:
    d = cond.next_undue(c) if undue else cond.next_due(c)
    return None if d is None else d.strftime("%Y-%m-%d %H:%M")


# -- the year ---------------------------------------------------------------------------------
# (condition, now, runs, met, next_due, next_undue)
YEAR_TABLE = [
    ("yearly", "2023-06-01 12:00", [], True, "2023-06-01 12:00", "2024-01-01 00:00"),
    (
        "yearly",
        "2023-06-01 12:00",
        [("2023-01-05 10:00", S)],
        False,
        "2024-01-01 00:00",
        "2023-06-01 12:00",
    ),
    # A window in months: March to May, both whole.
    (
        "yearly between Mar and May",
        "2023-02-10 00:00",
        [],
        False,
        "2023-03-01 00:00",
        "2023-02-10 00:00",
    ),
    (
        "yearly between Mar and May",
        "2023-05-31 23:00",
        [],
        True,
        "2023-05-31 23:00",
        "2023-06-01 00:00",
    ),
    (
        "yearly between Mar and May",
        "2023-04-01 00:00",
        [("2023-03-20 10:00", Action.INACTION)],
        False,
        "2024-03-01 00:00",
        "2023-04-01 00:00",
    ),
    # Wrapping the turn of the year: one occurrence, November to the end of February.
    (
        "yearly between Nov and Feb",
        "2024-01-15 00:00",
        [("2023-11-02 10:00", S)],
        False,
        "2024-11-01 00:00",
        "2024-01-15 00:00",
    ),
    (
        "time of year between Nov and Feb",
        "2024-02-29 12:00",
        [],
        True,
        "2024-02-29 12:00",
        "2024-03-01 00:00",
    ),
    # Days and times of the year.
    (
        "time of year after Dec 24th 18:00",
        "2023-12-24 17:00",
        [],
        False,
        "2023-12-24 18:00",
        "2023-12-24 17:00",
    ),
    # A day without a time ends at the end of that day (as a day of the month does).
    (
        "time of year before Mar 5th",
        "2023-03-05 12:00",
        [],
        True,
        "2023-03-05 12:00",
        "2023-03-06 00:00",
    ),
    ("time of year on Mar", "2023-03-31 23:59", [], True, "2023-03-31 23:59", "2023-04-01 00:00"),
    (
        "time of year on Mar 5th",
        "2023-03-04 12:00",
        [],
        False,
        "2023-03-05 00:00",
        "2023-03-04 12:00",
    ),
    # The leap day: on the axis of a leap year, so in 2023 it is the 1st of March.
    (
        "time of year between Feb 29th and Mar 2nd",
        "2023-02-28 23:00",
        [],
        False,
        "2023-03-01 00:00",
        "2023-02-28 23:00",
    ),
    (
        "time of year between Feb 29th and Mar 2nd",
        "2024-02-29 01:00",
        [],
        True,
        "2024-02-29 01:00",
        "2024-03-03 00:00",
    ),
    # A window wholly on the leap day occurs in leap years only.
    (
        "time of year on Feb 29th",
        "2025-01-01 00:00",
        [],
        False,
        "2028-02-29 00:00",
        "2025-01-01 00:00",
    ),
    (
        "yearly on Feb 29th",
        "2024-02-29 10:00",
        [("2024-02-29 09:00", S)],
        False,
        "2028-02-29 00:00",
        "2024-02-29 10:00",
    ),
    # 2100 is not a leap year: eight years from one leap day to the next.
    (
        "yearly on Feb 29th",
        "2097-01-01 00:00",
        [("2096-02-29 09:00", S)],
        False,
        "2104-02-29 00:00",
        "2097-01-01 00:00",
    ),
    # Years anchored on the 1st of March.
    (
        "yearly starting Mar",
        "2024-02-20 00:00",
        [("2023-03-10 00:00", S)],
        False,
        "2024-03-01 00:00",
        "2024-02-20 00:00",
    ),
    (
        "yearly starting Mar",
        "2024-03-01 00:00",
        [("2023-03-10 00:00", S)],
        True,
        "2024-03-01 00:00",
        "2025-03-01 00:00",
    ),
]


@pytest.mark.parametrize(("text", "now", "runs", "met", "due", "undue"), YEAR_TABLE)
def test_year_table(
    text: str,
    now: str,
    runs: list[tuple[str, Action]],
    met: bool,
    due: str | None,
    undue: str | None,
) -> None:
    cond = parse(text)
    c = ctx(now, history(*runs))
    assert cond.is_met(c) is met
    assert wall(cond, c) == due
    assert wall(cond, c, undue=True) == undue


def test_yearly_runs_once_a_year_and_the_leap_day_only_in_leap_years(
    make_sim: Callable[..., Sim],
) -> None:
    sim = make_sim("2023-01-01 00:00")
    runs = sim.simulate(yearly.between("Dec 24th", "Dec 26th"), 3 * 366, every="1 day")
    assert [r.strftime("%Y-%m-%d") for r in runs] == ["2023-12-24", "2024-12-24", "2025-12-24"]

    sim = make_sim("2023-01-01 00:00")
    leap = yearly.on("Feb 29th")
    assert [r.strftime("%Y-%m-%d") for r in sim.simulate(leap, 6 * 366, every="1 day")] == [
        "2024-02-29",
        "2028-02-29",
    ]


def test_a_window_opened_by_a_dst_gap_opens_after_it() -> None:
    # 2024-03-31 03:00 does not exist in Helsinki (the clocks go from 03:00 to 04:00).
    cond = parse("time of year after Mar 31st 03:30")
    c = ctx("2024-03-31 02:00", MemoryRunLog())
    due = cond.next_due(c)
    assert due is not None and due.strftime("%Y-%m-%d %H:%M %z") == "2024-03-31 04:00 +0300"


def test_text_and_python_spell_the_same_year_conditions() -> None:
    assert parse("yearly") == yearly
    assert parse("time of year between Mar and May") == time_of_year.between("Mar", "May")
    assert parse("yearly on Dec 24th") == yearly.on("Dec 24th")
    assert parse("yearly after September 15th 10:00") == yearly.after("Sep 15th 10:00")
    assert parse("yearly starting Mar") == yearly.starting("Mar")
    assert parse("yearly between Mar and May") != parse("yearly between Mar and May 1st")


_MONTHS = st.sampled_from(["Jan", "February", "mar", "Apr", "June", "Aug", "Oct", "Dec"])
_year_points = st.one_of(
    _MONTHS,
    st.builds(lambda m, d: f"{m} {d}", _MONTHS, st.integers(1, 28)),
    st.builds(
        lambda m, d, h: f"{m} {d}. {h:02d}:30", _MONTHS, st.integers(1, 28), st.integers(0, 23)
    ),
    st.sampled_from(["Feb 29th", "Jan 1st 00:00", "Dec 31st 23:30"]),
)
_year_conds = st.one_of(
    st.builds(lambda a, b: yearly.between(a, b), _year_points, _year_points),
    st.builds(lambda a, b: time_of_year.between(a, b), _year_points, _year_points),
    st.builds(lambda a: yearly.after(a), _year_points),
    st.builds(lambda b: time_of_year.before(b), _year_points),
    st.builds(lambda a: yearly.on(a), _year_points),
    st.builds(lambda a: yearly.starting(a), _year_points),
    st.builds(lambda n: retry(n), st.integers(0, 5)),
    st.just(retry),
)


@settings(max_examples=300, deadline=None)
@given(_year_conds)
def test_year_and_retry_texts_round_trip(cond: BaseCondition) -> None:
    text = str(cond)
    assert parse(text) == cond
    assert str(parse(text)) == text


# -- retry ------------------------------------------------------------------------------------
# (condition, runs, met): Rocketry's Retry(n): the last run failed, and at most n failures
# in a row since the last success, crash, inaction or termination.
RETRY_TABLE = [
    ("retry", [], False),
    ("retry", [("2024-03-10 08:00", S)], False),
    ("retry", [("2024-03-10 08:00", F)], True),
    ("retry", [("2024-03-10 07:00", F), ("2024-03-10 08:00", S)], False),
    ("retry", [("2024-03-10 07:00", F), ("2024-03-10 08:00", Action.RUN)], False),
    ("retry 0 times", [("2024-03-10 08:00", F)], False),
    ("retry 1 time", [("2024-03-10 08:00", F)], True),
    ("retry 1 time", [("2024-03-10 07:00", F), ("2024-03-10 08:00", F)], False),
    ("retry 2 times", [("2024-03-10 07:00", F), ("2024-03-10 08:00", F)], True),
    (
        "retry 2 times",
        [("2024-03-10 06:00", F), ("2024-03-10 07:00", F), ("2024-03-10 08:00", F)],
        False,
    ),
    # A crash (or a success, inaction, termination) starts a new streak.
    (
        "retry 1 time",
        [("2024-03-10 06:00", F), ("2024-03-10 07:00", Action.CRASH), ("2024-03-10 08:00", F)],
        True,
    ),
    ("retry", [("2024-03-10 08:00", Action.TERMINATE)], False),
]


@pytest.mark.parametrize(("text", "runs", "met"), RETRY_TABLE)
def test_retry_table(text: str, runs: list[tuple[str, Action]], met: bool) -> None:
    cond = parse(text)
    c = ctx("2024-03-10 09:00", history(*runs))
    assert cond.is_met(c) is met
    # Only a run event changes it: due now or not before an event; undue likewise.
    assert wall(cond, c) == ("2024-03-10 09:00" if met else None)
    assert wall(cond, c, undue=True) == (None if met else "2024-03-10 09:00")


def test_a_failing_daily_task_is_retried_twice_then_waits_for_the_next_day(
    make_sim: Callable[..., Sim],
) -> None:
    sim = make_sim("2024-03-10 00:00")
    cond = parse("daily | retry 2 times")
    ran: list[str] = []
    for _ in range(2 * 24 * 4):  # two days, every 15 minutes
        if cond.is_met(sim.ctx()):
            ran.append(sim.clock.now().strftime("%d %H:%M"))
            sim.run(action=Action.FAIL)
        sim.clock.advance("15 minutes")
    # The streak is counted since the last run that did not fail, not per day (Rocketry's
    # meaning): the next day's failure is the third in a row beyond the first, no retry.
    assert ran == ["10 00:00", "10 00:15", "10 00:30", "11 00:00"]


def test_retry_spellings_and_errors() -> None:
    assert parse("retry 3 times") == retry(3) == Retry(3)
    assert parse("RETRY") == retry
    assert str(retry(1)) == "retry 1 time"
    with pytest.raises(ValueError, match="whole number"):
        retry(-1)
    with pytest.raises(ConditionParseError, match="retry 3 times") as info:
        parse("retries 3")
    assert info.value.suggestion == "retry 3 times"
    with pytest.raises(ConditionParseError, match="a number of times"):
        parse("retry twice")
    with pytest.raises(ConditionParseError, match="'times'"):
        parse("retry 3")


@pytest.mark.parametrize(
    ("text", "fragment", "suggestion"),
    [
        ("yearli", "unknown phrase", "yearly"),
        ("time of yaer", "year", "year"),
        ("time of year between Marc and May", "a month such as 'Mar'", None),
        ("yearly before Feb 30th", "February has 29 days", None),
        ("yearly on 15th", "a month such as", None),
        ("time of year between Mar and", "expected a time", None),
        ("time of second", "'time of second' is not supported", None),
    ],
)
def test_bad_year_text_says_what_is_accepted(
    text: str, fragment: str, suggestion: str | None
) -> None:
    with pytest.raises(ConditionParseError) as info:
        parse(text)
    assert fragment in str(info.value)
    assert info.value.suggestion == suggestion


def test_the_hourly_window_spellings_are_unchanged_by_the_year() -> None:
    # 'daily' windows still take clock times; the year did not widen them.
    assert parse("daily between 08:00 and 10:00") == daily.between("08:00", "10:00")


# -- in a session -------------------------------------------------------------------------------
def test_a_session_retries_a_failing_task_and_runs_a_yearly_one_once() -> None:
    from redengine_nb import RedEngine

    clock = FakeClock("2024-12-24 17:00", tz="UTC")
    app = RedEngine({"task_execution": "main"}, logs=":memory:", clock=clock)
    try:
        calls: list[str] = []

        def flaky() -> None:
            calls.append(clock.now().strftime("%H:%M"))
            raise RuntimeError("the service is down")

        app.task("daily after 18:00 | retry 2 times", func=flaky, name="fetch")
        app.task("yearly on Dec 24th", func=lambda: None, name="greet")
        assert app.session.tick() == ["greet"]
        clock.advance("1 hour")
        for _ in range(5):
            app.session.tick()
            clock.advance("1 minute")
        # The run at 18:00 and two retries right after its failures; then nothing.
        assert calls == ["18:00", "18:01", "18:02"]
        clock.advance("1 hour")
        assert app.session.tick() == []
    finally:
        app.session.runlog.close()
