"""Window arithmetic: contains, rollback, rollforward, wraps, months, DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redengine_nb.conditions.periods import (
    DAY,
    HOUR,
    MINUTE,
    MONTH,
    WEEK,
    TimeWindow,
    Unit,
    localize,
)

HEL = ZoneInfo("Europe/Helsinki")


def at(text: str, tz: ZoneInfo = HEL) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


H = 3600
D = 86400


@pytest.mark.parametrize(
    ("window", "when", "inside", "back_start", "forward"),
    [
        (
            TimeWindow(DAY, 10 * H, 12 * H),
            "2024-03-10 11:00",
            True,
            "2024-03-10 10:00",
            "2024-03-10 11:00",
        ),
        (
            TimeWindow(DAY, 10 * H, 12 * H),
            "2024-03-10 12:00",
            False,
            "2024-03-10 10:00",
            "2024-03-11 10:00",
        ),
        (
            TimeWindow(DAY, 10 * H, 12 * H),
            "2024-03-10 09:59",
            False,
            "2024-03-09 10:00",
            "2024-03-10 10:00",
        ),
        (
            TimeWindow(DAY, 22 * H, 6 * H),
            "2024-03-10 01:00",
            True,
            "2024-03-09 22:00",
            "2024-03-10 01:00",
        ),
        (
            TimeWindow(DAY, 22 * H, 6 * H),
            "2024-03-10 07:00",
            False,
            "2024-03-09 22:00",
            "2024-03-10 22:00",
        ),
        (
            TimeWindow(DAY, 10 * H, 10 * H),
            "2024-03-10 09:00",
            True,
            "2024-03-09 10:00",
            "2024-03-10 09:00",
        ),
        (TimeWindow(WEEK, 0, D), "2024-03-10 09:00", False, "2024-03-04 00:00", "2024-03-11 00:00"),
        (
            TimeWindow(WEEK, 4 * D, 1 * D),
            "2024-03-11 09:00",
            True,
            "2024-03-08 00:00",
            "2024-03-11 09:00",
        ),
        (
            TimeWindow(MONTH, 30 * D, 31 * D),
            "2024-03-10 09:00",
            False,
            "2024-01-31 00:00",
            "2024-03-31 00:00",
        ),
        (
            TimeWindow(MONTH, 14 * D, 31 * D),
            "2024-02-20 09:00",
            True,
            "2024-02-15 00:00",
            "2024-02-20 09:00",
        ),
        (
            TimeWindow(HOUR, 15 * 60, 45 * 60),
            "2024-03-10 09:50",
            False,
            "2024-03-10 09:15",
            "2024-03-10 10:15",
        ),
        (
            TimeWindow(MINUTE, 0, 30),
            "2024-03-10 09:50:31",
            False,
            "2024-03-10 09:50",
            "2024-03-10 09:51",
        ),
    ],
)
def test_window_table(
    window: TimeWindow, when: str, inside: bool, back_start: str, forward: str
) -> None:
    now = at(when)
    assert window.contains(now) is inside
    assert window.rollback(now).start == at(back_start)
    assert window.rollforward(now) == at(forward)


def test_localize_gap_gives_the_first_instant_after_it() -> None:
    assert localize(datetime(2024, 3, 31, 3, 30), HEL) == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert (
        localize(datetime(2024, 10, 6, 2, 10), lord_howe).isoformat() == "2024-10-06T02:30:00+11:00"
    )


def test_localize_repeated_time_gives_the_first() -> None:
    first = localize(datetime(2024, 10, 27, 3, 30), HEL)
    assert first.utcoffset() == timedelta(hours=3)


def test_a_window_inside_the_gap_still_opens() -> None:
    window = TimeWindow(DAY, 3 * H + 600, 3 * H + 3000)
    occ = window.next_after(at("2024-03-31 01:00"))
    assert occ.start.isoformat() == "2024-03-31T04:00:00+03:00"
    assert occ.end_ts - occ.start_ts == 2400


ZONES = ["UTC", "Europe/Helsinki", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


def _window(unit: Unit, a: int, b: int) -> TimeWindow:
    if unit in (WEEK, MONTH):
        return TimeWindow(unit, a % (unit.length // D) * D, b % (unit.length // D + 1) * D)
    return TimeWindow(unit, a % unit.length, b % (unit.length + 1))


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(list(Unit)),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.sampled_from(ZONES),
    st.integers(1_600_000_000, 1_800_000_000),
)
def test_rollforward_laws(unit: Unit, a: int, b: int, zone: str, ts: int) -> None:
    window = _window(unit, a, b)
    now = datetime.fromtimestamp(ts, ZoneInfo(zone))
    forward = window.rollforward(now)
    assert forward.timestamp() >= now.timestamp()
    assert window.contains(forward)
    back = window.rollback(now)
    assert back.start_ts <= now.timestamp()
    assert back.start_ts < back.end_ts
    assert window.next_after(now).start_ts > now.timestamp()
