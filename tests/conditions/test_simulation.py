"""Whole days, DST and wall-clock jumps, simulated minute by minute on a fake clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from redengine_nb.conditions import Context, daily, every, hourly, parse
from redengine_nb.records import Action
from redengine_nb.runlog.memory import MemoryRunLog

Sim = Any  # the harness object from conftest.py
MakeSim = Callable[..., Any]


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        ("daily", "2024-03-10 00:00", 1),
        ("every 10 minutes", "2024-03-10 00:00", 144),
        ("hourly & time of day between 09:00 and 17:00", "2024-03-10 00:00", 8),
        ("hourly between 09:00 and 17:00", "2024-03-10 00:00", 24),  # minutes 9-17 of each hour
        ("cron */15 * * * *", "2024-03-10 00:00", 96),
        ("daily between 22:00 and 02:00", "2024-03-10 12:00", 1),
        ("hourly", "2024-03-10 00:00", 24),
        ("minutely & time of day between 10:00 and 10:30", "2024-03-10 00:00", 30),
        ("weekly", "2024-03-10 12:00", 2),  # Sunday noon, then Monday starts a new week
        ("daily starting 10:00", "2024-03-10 00:00", 2),  # the 09:59 day, then the 10:00 one
        ("time of day between 10:00 and 10:05", "2024-03-10 00:00", 5),
    ],
)
def test_a_whole_day(make_sim: MakeSim, text: str, start: str, expected: int) -> None:
    sim = make_sim(start)
    assert len(sim.simulate(parse(text), 24 * 60)) == expected


def test_daily_between_wrapping_runs_once_a_night_even_if_started_after_midnight(
    make_sim: MakeSim,
) -> None:
    sim = make_sim("2024-03-10 00:30")
    runs = sim.simulate(parse("daily between 22:00 and 02:00"), 24 * 60)
    assert [r.strftime("%d %H:%M") for r in runs] == ["10 00:30", "10 22:00"]


def test_hourly_during_working_hours_runs_at_each_hour(make_sim: MakeSim) -> None:
    sim = make_sim()
    runs = sim.simulate(parse("hourly & time of day between 09:00 and 17:00"), 24 * 60)
    assert [r.hour for r in runs] == list(range(9, 17))
    assert all(r.minute == 0 for r in runs)


def test_hourly_window_is_minutes_of_each_hour_as_in_red_engine(make_sim: MakeSim) -> None:
    sim = make_sim()
    runs = sim.simulate(parse("hourly between 45:00 and 50:00"), 24 * 60)
    assert [r.hour for r in runs] == list(range(24))
    assert all(r.minute == 45 for r in runs)


def test_after_task_runs_once_per_success(make_sim: MakeSim) -> None:
    sim = make_sim()
    cond = parse("after task 'a'")
    a_times = {60, 61, 300, 301, 302, 900}  # minutes at which 'a' succeeds

    def maybe_a(s: Sim) -> None:
        minute = int((s.clock.time() - datetime(2024, 3, 10, tzinfo=s.clock.tz).timestamp()) // 60)
        if minute in a_times:
            s.run("a")

    runs = sim.simulate(cond, 24 * 60, on_step=maybe_a)
    assert len(runs) == len(a_times)
    # A failure of 'a' does not trigger it.
    sim.run("a", Action.FAIL)
    assert not cond.is_met(sim.ctx())


# -- DST ---------------------------------------------------------------------------------
DST = [
    # zone, spring day, a time in the gap, a window in the gap, autumn day, in the repeat
    ("Europe/Helsinki", "2024-03-31", "03:30", ("03:10", "03:50"), "2024-10-27", "03:30"),
    ("America/New_York", "2024-03-10", "02:30", ("02:10", "02:50"), "2024-11-03", "01:30"),
    ("Australia/Lord_Howe", "2024-10-06", "02:10", ("02:05", "02:25"), "2024-04-07", "01:45"),
]


@pytest.mark.parametrize(("tz", "spring", "gap_time", "gap_window", "autumn", "repeat"), DST)
def test_dst_spring_gap_runs_once_right_after_the_gap(
    make_sim: MakeSim,
    tz: str,
    spring: str,
    gap_time: str,
    gap_window: tuple[str, str],
    autumn: str,
    repeat: str,
) -> None:
    for cond in (daily.at(gap_time), daily.between(*gap_window)):
        sim = make_sim(f"{spring} 00:00", tz)
        runs = sim.simulate(cond, 24 * 60)
        assert len(runs) == 1, (cond, runs)
        # The first instant after the jump: the wall clock reads the end of the gap.
        before = runs[0] - timedelta(seconds=1)
        assert before.utcoffset() != runs[0].utcoffset()


@pytest.mark.parametrize(("tz", "spring", "gap_time", "gap_window", "autumn", "repeat"), DST)
def test_dst_repeated_hour_runs_once(
    make_sim: MakeSim,
    tz: str,
    spring: str,
    gap_time: str,
    gap_window: tuple[str, str],
    autumn: str,
    repeat: str,
) -> None:
    h, m = repeat.split(":")
    end = f"{int(h):02d}:{int(m) + 10:02d}"
    for cond in (daily.at(repeat), daily.between(repeat, end)):
        sim = make_sim(f"{autumn} 00:00", tz)
        runs = sim.simulate(cond, 25 * 60)
        assert len(runs) == 1, (cond, runs)
        assert runs[0].fold == 0


@pytest.mark.parametrize("tz", ["Europe/Helsinki", "America/New_York"])
def test_hourly_on_the_autumn_day_runs_25_times(make_sim: MakeSim, tz: str) -> None:
    # Hours are elapsed-time-like: the second pass of the repeated hour is an hour of its own.
    autumn = {"Europe/Helsinki": "2024-10-27", "America/New_York": "2024-11-03"}[tz]
    sim = make_sim(f"{autumn} 00:00", tz)
    runs = sim.simulate(hourly, 25 * 60)  # 25 real hours: midnight to midnight
    assert len(runs) == 25
    assert [r.fold for r in runs].count(1) == 1


@pytest.mark.parametrize(("tz", "spring", "gap_time", "gap_window", "autumn", "repeat"), DST)
def test_every_keeps_elapsed_spacing_across_dst(
    make_sim: MakeSim,
    tz: str,
    spring: str,
    gap_time: str,
    gap_window: tuple[str, str],
    autumn: str,
    repeat: str,
) -> None:
    for day in (spring, autumn):
        sim = make_sim(f"{day} 00:00", tz)
        runs = sim.simulate(every("10 minutes"), 25 * 60)
        # Same-zone datetime subtraction is wall time in Python: compare timestamps.
        gaps = {b.timestamp() - a.timestamp() for a, b in itertools.pairwise(runs)}
        assert gaps == {600.0}
        assert len(runs) == 150


# -- wall-clock jumps --------------------------------------------------------------------
class CountingHistory:
    """Counts lookups, to show that evaluating after a jump does not walk the gap."""

    def __init__(self, inner: MemoryRunLog) -> None:
        self.inner = inner
        self.calls = 0

    def last(self, task: str, action: Action) -> float | None:
        self.calls += 1
        return self.inner.last(task, action)

    def count(
        self,
        task: str,
        action: Action | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        self.calls += 1
        return self.inner.count(task, action, since, until)


JUMP_CONDITIONS = [
    "daily",
    "hourly",
    "minutely",
    "every 10 minutes",
    "daily between 08:00 and 10:00",
    "weekly on Monday",
    "monthly",
    "cron */15 * * * *",
    "daily between 22:00 and 02:00",
]


@pytest.mark.parametrize("text", JUMP_CONDITIONS)
@pytest.mark.parametrize("jump", ["1 day", "3652 days"])
def test_jump_forward_runs_at_most_once(make_sim: MakeSim, text: str, jump: str) -> None:
    sim = make_sim("2024-03-11 09:00")
    cond = parse(text)
    sim.simulate(cond, 5)
    sim.clock.advance(jump)
    counting = CountingHistory(sim.log)
    ctx = Context(sim.clock.now(), counting, "t")
    met = cond.is_met(ctx)
    due = cond.next_due(ctx)
    assert counting.calls <= 10
    assert due is None or due.timestamp() >= sim.clock.time()
    ran = sim.step(cond)
    assert ran == met
    # Immediately after, nothing more is due in this instant.
    assert not cond.is_met(sim.ctx())
    assert sum(sim.step(cond) for _ in range(3)) == 0


@pytest.mark.parametrize("text", JUMP_CONDITIONS)
@pytest.mark.parametrize("back", ["2 minutes", "1 day"])
def test_jump_back_nothing_runs_twice(make_sim: MakeSim, text: str, back: str) -> None:
    sim = make_sim("2024-03-11 09:00")
    cond = parse(text)
    # Make sure the condition has just run.
    for _ in range(24 * 60):
        if sim.step(cond):
            break
        sim.clock.advance("1 minute")
    else:
        pytest.fail(f"{text} never ran")
    ran_at = sim.clock.now()
    sim.clock.set(ran_at - parse_delta(back))
    runs = sim.simulate(cond, int(parse_delta(back).total_seconds() // 60))
    assert runs == []


def parse_delta(text: str) -> timedelta:
    from redengine_nb.timetext import parse_duration

    return parse_duration(text)
