"""Time text: durations, clock times, weekdays and month days."""

from __future__ import annotations

from datetime import timedelta

import pytest

from redengine_nb.timetext import (
    format_duration,
    parse_clock_time,
    parse_duration,
    parse_monthday,
    parse_weekday,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10 minutes", 600),
        ("1 hour 30 minutes", 5400),
        ("1h30m", 5400),
        ("90s", 90),
        ("2 days", 172800),
        ("1 week", 604800),
        ("1.5 hours", 5400),
        ("01:30:00", 5400),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10 lightyears", "01:99"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10:00", 36000), ("10:00:30", 36030), ("10am", 36000), ("7:30pm", 70200), ("12am", 0)],
)
def test_clock_times(text: str, seconds: int) -> None:
    assert parse_clock_time(text) == seconds


@pytest.mark.parametrize("text", ["25:00", "10:60", "13pm", "noon", "10"])
def test_bad_clock_times(text: str) -> None:
    with pytest.raises(ValueError, match="time"):
        parse_clock_time(text)


def test_weekdays_and_month_days() -> None:
    assert parse_weekday("mon") == parse_weekday("Monday") == 0
    assert parse_monthday("1st") == 1 and parse_monthday("15") == 15
    with pytest.raises(ValueError):
        parse_weekday("Funday")
    with pytest.raises(ValueError):
        parse_monthday("32nd")
