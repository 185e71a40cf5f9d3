"""DST transitions, swept densely: the window laws hold at every instant and nothing raises.

Minute and hour windows are elapsed-time-like (the second pass of a repeated hour has its own
minutes and hours); day windows keep "a repeated wall-clock hour fires once". See
docs/conditions.md, "Daylight saving time".
"""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redengine_nb.conditions import Context, parse, periods
from redengine_nb.conditions.periods import DAY, HOUR, MINUTE, YEAR, TimeWindow
from redengine_nb.conditions.time import clear_segment_cache
from redengine_nb.records import Action
from redengine_nb.runlog.memory import MemoryRunLog

# zone -> (spring transition, autumn transition) in 2024, epoch seconds of the jump.
TRANSITIONS = {
    "Europe/Helsinki": (1711846800, 1729990800),  # 03:00 -> 04:00, 04:00 -> 03:00
    "America/New_York": (1710054000, 1730613600),  # 02:00 -> 03:00, 02:00 -> 01:00
    "Australia/Lord_Howe": (1728142200, 1712415600),  # 02:00 -> 02:30, 02:00 -> 01:30
}
ZONES = sorted(TRANSITIONS)

WINDOWS = [
    TimeWindow(MINUTE, 0, 30),  # time of minute before :30
    TimeWindow(MINUTE, 40, 10),  # wraps into the next minute
    TimeWindow(MINUTE, 15, 16),
    TimeWindow(MINUTE),  # minutely
    TimeWindow(HOUR),  # hourly
    TimeWindow(HOUR, 0, 15 * 60),
    TimeWindow(HOUR, 20 * 60, 40 * 60),
    TimeWindow(HOUR, 50 * 60, 10 * 60),
    TimeWindow(HOUR, 45 * 60, 45 * 60),  # hourly starting :45
    TimeWindow(DAY),
    TimeWindow(DAY, 1 * 3600 + 1800, 2 * 3600 + 1800),
    TimeWindow(DAY, 2 * 3600 + 600, 2 * 3600 + 1500),
    TimeWindow(DAY, 3 * 3600 + 1800, 4 * 3600 + 1800),
    TimeWindow(DAY, 22 * 3600, 3 * 3600 + 600),
    TimeWindow(YEAR),  # yearly
    # time of year between Mar 31st 03:30 and 04:30 (inside Helsinki's gap, then after it)
    TimeWindow(YEAR, 90 * 86400 + 3 * 3600 + 1800, 90 * 86400 + 4 * 3600 + 1800),
    # time of year between Mar 10th 02:10 and 02:25 (wholly inside New York's gap)
    TimeWindow(YEAR, 69 * 86400 + 2 * 3600 + 600, 69 * 86400 + 2 * 3600 + 1500),
    # time of year after Oct 27th 03:30 (Helsinki's repeated hour)
    TimeWindow(YEAR, 300 * 86400 + 3 * 3600 + 1800, 366 * 86400),
]

TEXTS = [
    "time of minute before :30",
    "time of minute between :40 and :10",
    "time of hour before :15",
    "time of hour between :20 and :40",
    "minutely",
    "hourly",
    "hourly starting :45",
    "hourly between 10:00 and 50:00",
    "hourly & time of day between 01:00 and 05:00",
    "minutely between 40 and 10",
    "minutely & time of day between 01:40 and 02:10",
    "daily",
    "daily on 03:30",
    "daily between 01:40 and 02:20",
    "time of day between 02:10 and 02:50",
    "has succeeded this hour",
    "has succeeded this minute",
    "~time of minute before :30 & hourly",
    "yearly",
    "time of year between Mar 31st 03:30 and Mar 31st 04:30",
    "yearly after Mar 10th 02:10",
    "yearly between Oct 27th 03:30 and Nov 3rd 01:30",
    "hourly & time of year on Oct 6th",
]

# Instants within three hours either side of a transition, to the second.
near = st.builds(
    lambda zone, spring, delta: (zone, TRANSITIONS[zone][0 if spring else 1] + delta),
    st.sampled_from(ZONES),
    st.booleans(),
    st.integers(-3 * 3600, 3 * 3600),
)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(WINDOWS), near)
def test_window_laws_across_transitions(window: TimeWindow, at: tuple[str, int]) -> None:
    zone, ts = at
    now = datetime.fromtimestamp(ts, ZoneInfo(zone))
    back = window.rollback(now)
    assert back.start_ts <= ts < back.end_ts or back.end_ts <= ts
    assert back.start_ts < back.end_ts
    forward = window.rollforward(now)
    assert forward.timestamp() >= ts
    assert window.contains(forward)
    nxt = window.next_after(now)
    assert nxt.start_ts > ts
    assert nxt.start_ts >= back.end_ts  # occurrences do not overlap
    # No occurrence lies between the one rolled back to and the next one.
    assert window.rollback(datetime.fromtimestamp(nxt.start_ts, ZoneInfo(zone))) == nxt


def _history(zone: str, ts: int, offset: int | None) -> MemoryRunLog:
    log = MemoryRunLog()
    if offset is not None:
        rec = log.start_run("t", created=ts + offset, start=ts + offset, owner="x")
        log.finish_run(rec.run_id, Action.SUCCESS, end=ts + offset)
    return log


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(TEXTS),
    near,
    st.one_of(st.none(), st.integers(-2 * 3600, 0)),
    st.booleans(),
)
def test_condition_laws_across_transitions(
    text: str, at: tuple[str, int], ran: int | None, warm: bool
) -> None:
    zone, ts = at
    tz = ZoneInfo(zone)
    log = _history(zone, ts, ran)
    cond = parse(text)
    if warm:  # results must not depend on what is cached
        for back in (7200, 3600, 1800, 90, 30, 1):
            cond.is_met(Context(datetime.fromtimestamp(ts - back, tz), log, "t"))
            cond.next_due(Context(datetime.fromtimestamp(ts - back, tz), log, "t"))
    ctx = Context(datetime.fromtimestamp(ts, tz), log, "t")
    met = cond.is_met(ctx)
    fresh = parse(text)
    assert fresh.is_met(ctx) is met
    due, undue = cond.next_due(ctx), cond.next_undue(ctx)
    assert (due, undue) == (fresh.next_due(ctx), fresh.next_undue(ctx))
    assert due is None or due.timestamp() >= ts
    assert undue is None or undue.timestamp() >= ts
    assert (due is not None and due.timestamp() == ts) is met
    assert (undue is not None and undue.timestamp() == ts) is not met
    if due is not None and due.timestamp() > ts:
        # Never late: false at every second before it (no event happens meanwhile), and the
        # predicted instant is a real one at which it is true.
        scan = parse(text)
        for s in range(ts, min(int(due.timestamp()), ts + 3 * 3600)):
            assert not scan.is_met(Context(datetime.fromtimestamp(s, tz), log, "t")), s
        assert parse(text).is_met(Context(due, log, "t"))


def _ctx(zone: str, wall: str, fold: int = 0) -> Context:
    now = datetime.fromisoformat(wall).replace(tzinfo=ZoneInfo(zone), fold=fold)
    return Context(now, MemoryRunLog(), "t")


@pytest.mark.parametrize("zone", ZONES)
def test_time_of_minute_in_the_second_pass_of_the_repeated_hour(zone: str) -> None:
    autumn = datetime.fromtimestamp(TRANSITIONS[zone][1], ZoneInfo(zone))
    assert autumn.fold == 1
    cond = parse("time of minute before :30")
    base = autumn.replace(tzinfo=None, fold=0, minute=autumn.minute + 10)  # 10 min into it
    first_half = _ctx(zone, base.replace(second=10).isoformat(), fold=1)
    second_half = _ctx(zone, base.replace(second=45).isoformat(), fold=1)
    assert cond.is_met(first_half)
    assert cond.next_undue(first_half).timestamp() == first_half.ts + 20  # type: ignore[union-attr]
    assert not cond.is_met(second_half)
    assert cond.next_due(second_half).timestamp() == second_half.ts + 15  # type: ignore[union-attr]
    # The same wall times in the first pass, one repeat earlier.
    assert cond.is_met(_ctx(zone, base.replace(second=10).isoformat()))
    assert not cond.is_met(_ctx(zone, base.replace(second=45).isoformat()))


def test_hourly_runs_again_in_the_repeated_hour_but_daily_on_does_not() -> None:
    zone = "Europe/Helsinki"
    log = MemoryRunLog()
    first = _ctx(zone, "2024-10-27 03:05")
    rec = log.start_run("t", created=first.ts, start=first.ts, owner="x")
    log.finish_run(rec.run_id, Action.SUCCESS, end=first.ts)
    second = Context(_ctx(zone, "2024-10-27 03:05", fold=1).now, log, "t")
    assert second.ts - first.ts == 3600
    assert parse("hourly").is_met(second)
    assert not parse("daily on 03:00").is_met(second)
    assert not parse("time of day between 03:00 and 03:30").is_met(second)
    assert parse("time of hour before :30").is_met(second)
    # In the first pass, the hour ends at the jump, and the next begins there.
    assert parse("hourly").next_due(Context(first.now, log, "t")) == second.now.replace(minute=0)


@pytest.fixture
def fresh_gap_log() -> None:
    """Forget which gaps were logged (other tests in this process log them too), and the
    shared segments (a window served from them is not recomputed, so not logged)."""
    periods._GAP_LOGGED.clear()
    clear_segment_cache()


@pytest.mark.usefixtures("fresh_gap_log")
def test_a_skipped_window_start_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    zone = "Europe/Helsinki"
    caplog.set_level(logging.INFO)
    cond = parse("daily on 03:30")
    log = MemoryRunLog()
    for wall in ("2024-03-31 01:00", "2024-03-31 02:59", "2024-03-31 04:00", "2024-03-31 04:10"):
        ctx = Context(_ctx(zone, wall).now, log, "t")
        cond.is_met(ctx)
        cond.next_due(ctx)
        parse("daily on 03:30").next_due(ctx)  # a fresh object: still once
    lines = [r for r in caplog.records if r.name.startswith("redengine_nb.")]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.INFO
    assert lines[0].name == "redengine_nb.periods"
    message = lines[0].getMessage()
    assert "2024-03-31 03:30:00" in message
    assert "2024-03-31 04:00:00+03:00" in message
    assert "Europe/Helsinki" in message


@pytest.mark.usefixtures("fresh_gap_log")
def test_a_minute_window_cut_by_the_gap_logs_its_late_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Lord Howe jumps 02:00 -> 02:30: the :20-:40 window of hour 02 opens at 02:30.
    caplog.set_level(logging.INFO)
    cond = parse("time of hour between :20 and :40")
    ctx = _ctx("Australia/Lord_Howe", "2024-10-06 01:50")
    assert cond.next_due(ctx) == _ctx("Australia/Lord_Howe", "2024-10-06 02:30").now
    lines = [r.getMessage() for r in caplog.records if r.name == "redengine_nb.periods"]
    assert len(lines) == 1
    assert "2024-10-06 02:20:00" in lines[0]


@pytest.mark.usefixtures("fresh_gap_log")
def test_no_log_without_a_gap(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cond = parse("daily on 03:30 | hourly | time of minute before :30")
    for wall in ("2024-10-27 03:30", "2024-03-30 03:30"):
        cond.next_due(_ctx("Europe/Helsinki", wall))
    assert [r for r in caplog.records if r.name.startswith("redengine_nb.")] == []
