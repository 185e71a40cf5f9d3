"""The cached window arithmetic never serves a stale answer.

Conditions keep the segment of time over which their window arithmetic is constant (keyed
by epoch seconds *and* the zone), and ``next_due`` answers are memoised as datetimes keyed
by (seconds, zone); segments are also shared between equal condition objects (keyed by the
window and the zone object, looked up by the span they hold). A condition object that has
answered many questions, or a fresh one served by the shared segments, must answer each
new one exactly as an object that computes everything itself does: when the clock moves
back across a window boundary, when it jumps far, and when the same instant is asked about
in another zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redengine_nb.conditions import BaseCondition, Context, daily, parse
from redengine_nb.conditions import time as time_conditions
from redengine_nb.conditions.periods import Interval, TimeWindow
from redengine_nb.records import Action
from redengine_nb.runlog.memory import MemoryRunLog

HEL = ZoneInfo("Europe/Helsinki")
NYC = ZoneInfo("America/New_York")
LHI = ZoneInfo("Australia/Lord_Howe")
ZONES = (HEL, NYC, LHI)

COMPOUND = (
    "(daily between 08:00 and 10:00 | every 10 minutes) & after task 'x' "
    "& ~has failed today & ~is running & time of week between Mon and Fri"
)
TEXTS = [
    "daily",
    "hourly",
    "daily between 08:00 and 10:00",
    "daily between 22:00 and 02:00",
    "daily on 03:30",
    "weekly on Monday",
    "monthly after 20th",
    "daily starting 10:00",
    "every 10 minutes",
    "cron */15 * * * *",
    "time of day between 08:00 and 10:00",
    "time of week between Mon and Fri",
    "has failed today",
    "has succeeded today between 08:00 and 10:00",
    "has started in past 2 hours",
    "~has failed today & daily after 09:00",
    "~(daily between 08:00 and 10:00) | time of hour before :15",
    COMPOUND,
]


def at(text: str, tz: ZoneInfo = HEL) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def history(base: datetime) -> MemoryRunLog:
    log = MemoryRunLog()
    t0 = base.timestamp()
    for minutes, task, action in [
        (-26 * 60, "t", Action.FAIL),
        (-90, "x", Action.SUCCESS),
        (-75, "t", Action.SUCCESS),
        (-30, "t", Action.FAIL),
        (-20, "x", Action.SUCCESS),
        (35, "t", Action.SUCCESS),  # in the future once the clock has gone back
    ]:
        ts = t0 + minutes * 60
        rec = log.start_run(task, created=ts, start=ts, owner="test")
        log.finish_run(rec.run_id, action, end=ts + 5)
    return log


def answers(cond: BaseCondition, ctx: Context) -> tuple[object, ...]:
    def ts(when: datetime | None) -> tuple[float, float] | None:
        if when is None:
            return None
        offset = when.utcoffset()
        assert offset is not None
        # The answer must be in the context's zone: a memoised datetime of another zone
        # for the same instant would be a stale answer.
        assert when.tzinfo is ctx.now.tzinfo
        return when.timestamp(), offset.total_seconds()

    return cond.is_met(ctx), ts(cond.next_due(ctx)), ts(cond.next_undue(ctx))


def unshared_answers(text: str, ctx: Context) -> tuple[object, ...]:
    """The answers of a fresh object that computes everything itself: the shared segment
    cache is set aside meanwhile (and put back, so that it keeps what it held)."""
    saved = list(time_conditions._SHARED.items())
    time_conditions.clear_segment_cache()
    try:
        return answers(parse(text), ctx)
    finally:
        time_conditions.clear_segment_cache()
        time_conditions._SHARED.update(saved)


def check_against_fresh(cond: BaseCondition, text: str, ctx: Context) -> None:
    assert answers(cond, ctx) == unshared_answers(text, ctx), (text, ctx.now)


def test_clock_back_across_a_window_boundary() -> None:
    cond = daily.between("08:00", "10:00")
    log = MemoryRunLog()
    inside = Context(at("2024-03-11 09:00"), log, "t")
    assert cond.is_met(inside)
    assert cond.next_due(inside) == inside.now
    # Back across the opening: the cached "inside" segment must not answer.
    before = Context(at("2024-03-11 07:59"), log, "t")
    assert not cond.is_met(before)
    assert cond.next_due(before) == at("2024-03-11 08:00")
    assert cond.next_undue(before) == before.now
    # Forward again, then past the close, then back inside.
    assert cond.next_undue(inside) == at("2024-03-11 10:00")
    after = Context(at("2024-03-11 10:00"), log, "t")
    assert not cond.is_met(after)
    assert cond.next_due(after) == at("2024-03-12 08:00")
    assert cond.is_met(inside)


def test_compound_clock_back_across_a_window_boundary() -> None:
    base = at("2024-03-11 09:00")
    log = history(base)
    cond = parse(COMPOUND)
    for minutes in (0, -61, 0, 60, -3, -24 * 60, 0, 15 * 60, -9 * 60 - 1, 0):
        ctx = Context(base + timedelta(minutes=minutes), log, "t")
        check_against_fresh(cond, COMPOUND, ctx)


def test_same_instant_in_another_zone() -> None:
    # 2024-03-11 01:00 in Helsinki is 2024-03-10 19:00 in New York: another day. The run
    # at 00:00 Helsinki (18:00 New York) is today's in both zones, but the next day
    # begins at a different instant in each.
    when = at("2024-03-11 01:00")
    log = MemoryRunLog()
    ran = when.timestamp() - 3600
    rec = log.start_run("t", created=ran, start=ran, owner="test")
    log.finish_run(rec.run_id, Action.SUCCESS, end=ran)
    cond = parse("daily")
    hel = Context(when, log, "t")
    nyc = Context(when.astimezone(NYC), log, "t")
    assert not cond.is_met(hel)
    assert cond.next_due(hel) == at("2024-03-12 00:00")
    assert not cond.is_met(nyc)
    due = cond.next_due(nyc)
    assert due is not None and due.tzinfo is NYC
    assert due == at("2024-03-11 00:00", NYC)
    assert cond.next_due(hel) == at("2024-03-12 00:00")
    # The same instant as a next_due answer in two zones: each in its own zone.
    tod = parse("time of day between 08:00 and 10:00")
    a, b = tod.next_due(hel), tod.next_due(Context(when.astimezone(LHI), log, "t"))
    assert a is not None and a.tzinfo is HEL
    assert b is not None and b.tzinfo is LHI


def _unambiguous(ts: float, tz: ZoneInfo) -> bool:
    wall = datetime.fromtimestamp(ts, tz).replace(tzinfo=None)
    return (
        wall.replace(tzinfo=tz, fold=0).utcoffset() == wall.replace(tzinfo=tz, fold=1).utcoffset()
    )


#: Steps around the spring-forward night in Helsinki (2024-03-31), to and fro: minutes
#: from the base instant, which of three zones, and whether the task is running.
STEPS = st.lists(
    st.tuples(st.integers(-3 * 24 * 60, 3 * 24 * 60), st.integers(0, 2), st.booleans()),
    min_size=1,
    max_size=25,
)


def contexts(steps: list[tuple[int, int, bool]]) -> Iterator[Context]:
    """A context per step (skipping wall times a backward jump makes ambiguous)."""
    base = at("2024-03-30 09:00")
    log = history(base)
    for minutes, zone, running in steps:
        tz = ZONES[zone]
        ts = base.timestamp() + minutes * 60
        if not _unambiguous(ts, tz):
            continue
        now = datetime.fromtimestamp(ts, tz)
        yield Context(now, log, "t", (lambda _n: True) if running else (lambda _n: False))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TEXTS), STEPS)
def test_a_used_condition_answers_like_a_fresh_one(
    text: str, steps: list[tuple[int, int, bool]]
) -> None:
    cond = parse(text)
    for ctx in contexts(steps):
        check_against_fresh(cond, text, ctx)


# -- the segment cache shared between equal objects ------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TEXTS), STEPS)
def test_fresh_objects_sharing_segments_answer_like_unshared_ones(
    text: str, steps: list[tuple[int, int, bool]]
) -> None:
    # Each step asks a new object (served by the segments earlier objects left, computed at
    # other instants and in other zones) and one that computes everything itself.
    for ctx in contexts(steps):
        assert answers(parse(text), ctx) == unshared_answers(text, ctx), (text, ctx.now)


def test_equal_objects_share_the_window_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    time_conditions.clear_segment_cache()
    calls = []
    rollback = TimeWindow.rollback

    def counted(self: TimeWindow, when: datetime) -> Interval:
        calls.append(when)
        return rollback(self, when)

    monkeypatch.setattr(TimeWindow, "rollback", counted)
    log = MemoryRunLog()
    ctx = Context(at("2024-03-11 09:00"), log, "t")
    assert all(parse("daily").is_met(ctx) for _ in range(100))
    assert len(calls) == 1
    # Later in the same day: still the same segment.
    later = Context(at("2024-03-11 23:59"), log, "t")
    assert parse("daily").next_due(later) == later.now
    assert len(calls) == 1


def test_the_shared_cache_serves_no_stale_answer() -> None:
    time_conditions.clear_segment_cache()
    log = MemoryRunLog()
    inside = Context(at("2024-03-11 09:00"), log, "t")
    assert parse("daily between 08:00 and 10:00").is_met(inside)
    # Fresh objects before the window opened, at its close and the next day: none is
    # served the "inside" segment another object left.
    before = Context(at("2024-03-11 07:59"), log, "t")
    assert not parse("daily between 08:00 and 10:00").is_met(before)
    assert parse("daily between 08:00 and 10:00").next_due(before) == at("2024-03-11 08:00")
    closed = Context(at("2024-03-11 10:00"), log, "t")
    assert not parse("daily between 08:00 and 10:00").is_met(closed)
    assert parse("daily between 08:00 and 10:00").next_due(closed) == at("2024-03-12 08:00")
    tomorrow = Context(at("2024-03-12 09:30"), log, "t")
    assert parse("daily between 08:00 and 10:00").next_undue(tomorrow) == at("2024-03-12 10:00")
    # Another window is another key.
    assert not parse("daily between 08:00 and 08:30").is_met(inside)
    assert not parse("time of day between 08:00 and 08:30").is_met(inside)


def test_the_shared_cache_serves_no_answer_of_another_zone() -> None:
    time_conditions.clear_segment_cache()
    when = at("2024-03-11 01:00")
    log = MemoryRunLog()
    ran = when.timestamp() - 3600
    rec = log.start_run("t", created=ran, start=ran, owner="test")
    log.finish_run(rec.run_id, Action.SUCCESS, end=ran)
    hel = Context(when, log, "t")
    nyc = Context(when.astimezone(NYC), log, "t")
    assert parse("daily").next_due(hel) == at("2024-03-12 00:00")
    due = parse("daily").next_due(nyc)
    assert due is not None and due.tzinfo is NYC
    assert due == at("2024-03-11 00:00", NYC)
    assert parse("daily").next_due(hel) == at("2024-03-12 00:00")
    # Another zone object for the same zone key gets segments of its own, and answers in
    # its own zone.
    other = ZoneInfo.no_cache("Europe/Helsinki")
    ctx = Context(when.astimezone(other), log, "t")
    due = parse("daily").next_due(ctx)
    assert due is not None and due.tzinfo is other
    assert due.timestamp() == at("2024-03-12 00:00").timestamp()
    keys = [key for key in time_conditions._SHARED if key[1] is other]
    assert keys and all(seg[0] is other for key in keys for seg in time_conditions._SHARED[key])


def test_the_shared_cache_stays_bounded() -> None:
    time_conditions.clear_segment_cache()
    log = MemoryRunLog()
    base = at("2024-03-11 00:00")
    # Many windows (keys), and one window asked about at many instants.
    for minute in range(0, 24 * 60, 3):
        hh, mm = divmod(minute, 60)
        cond = parse(f"daily after {hh:02d}:{mm:02d}")
        for zone in ZONES:
            cond.next_due(Context(base.astimezone(zone), log, "t"))
    for hours in range(0, 24 * 40, 5):
        parse("daily between 08:00 and 10:00").next_due(
            Context(base + timedelta(hours=hours), log, "t")
        )
    assert 0 < len(time_conditions._SHARED) <= time_conditions._SHARED_KEYS
    assert all(
        len(segs) <= time_conditions._SHARED_PER_KEY for segs in time_conditions._SHARED.values()
    )
    time_conditions.clear_segment_cache()
    assert not time_conditions._SHARED
