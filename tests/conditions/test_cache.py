"""The cached window arithmetic never serves a stale answer.

Conditions keep the segment of time over which their window arithmetic is constant (keyed
by epoch seconds *and* the zone), and ``next_due`` answers are memoised as datetimes keyed
by (seconds, zone). A condition object that has answered many questions must answer each
new one exactly as a fresh object does: when the clock moves back across a window
boundary, when it jumps far, and when the same instant is asked about in another zone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from redengine_nb.conditions import BaseCondition, Context, daily, parse
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


def check_against_fresh(cond: BaseCondition, text: str, ctx: Context) -> None:
    assert answers(cond, ctx) == answers(parse(text), ctx), (text, ctx.now)


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


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(TEXTS),
    st.lists(
        st.tuples(st.integers(-3 * 24 * 60, 3 * 24 * 60), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=25,
    ),
)
def test_a_used_condition_answers_like_a_fresh_one(
    text: str, steps: list[tuple[int, int, bool]]
) -> None:
    # Around the spring-forward night in Helsinki (2024-03-31), to and fro, in three zones.
    base = at("2024-03-30 09:00")
    log = history(base)
    cond = parse(text)
    for minutes, zone, running in steps:
        tz = ZONES[zone]
        ts = base.timestamp() + minutes * 60
        if not _unambiguous(ts, tz):
            continue
        now = datetime.fromtimestamp(ts, tz)
        ctx = Context(now, log, "t", (lambda _n: True) if running else (lambda _n: False))
        check_against_fresh(cond, text, ctx)
