"""cron's next matching minute is found by arithmetic on the wall time (croniter only
near DST changes): it must be croniter's answer everywhere, DST changes included."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from redengine_nb.conditions.cron import _cron_fields, _cron_next

EXPRESSIONS = [
    "*/15 * * * *",
    "0 9 * * 1-5",
    "5 4 * * sun",
    "0 12 1,15 * 5",  # both day fields: either matches
    "0 0 29 2 *",
    "30 2 * * *",  # inside the spring-forward gap in Europe
    "30 3 * * *",  # inside the autumn fold in Europe
    "0 */2 * * *",
    "59 23 31 12 *",
    "*/7 1-3 * 3,10 0",
    "0 0 L * *",  # croniter's extension: croniter answers
]
ZONES = ["UTC", "Europe/Helsinki", "America/New_York", "Australia/Lord_Howe"]


def _croniter_next(expression: str, base: float, tz: ZoneInfo) -> float:
    return float(
        croniter(expression, datetime.fromtimestamp(base, tz)).get_next(datetime).timestamp()
    )


@pytest.mark.parametrize("zone", ZONES)
def test_next_match_is_croniters_at_random_instants(zone: str) -> None:
    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    for _ in range(300):
        expression = rng.choice(EXPRESSIONS)
        base = rng.uniform(1.70e9, 1.80e9)
        if rng.random() < 0.3:
            base = base // 60 * 60  # on a minute
        assert _cron_next(expression, base, tz) == _croniter_next(expression, base, tz), (
            expression,
            datetime.fromtimestamp(base, tz),
        )


@pytest.mark.parametrize("zone", ["Europe/Helsinki", "America/New_York", "Australia/Lord_Howe"])
def test_next_match_is_croniters_around_dst_changes(zone: str) -> None:
    tz = ZoneInfo(zone)
    # Every change in 2024, found by walking the year an hour at a time.
    changes = []
    t = datetime(2024, 1, 1, tzinfo=tz).timestamp()
    while t < datetime(2025, 1, 1, tzinfo=tz).timestamp():
        if (
            datetime.fromtimestamp(t, tz).utcoffset()
            != datetime.fromtimestamp(t + 3600, tz).utcoffset()
        ):
            changes.append(t)
        t += 3600
    assert len(changes) == 2
    for change in changes:
        for minutes in range(-300, 300, 23):
            base = change + minutes * 60 + 13
            for expression in EXPRESSIONS:
                assert _cron_next(expression, base, tz) == _croniter_next(expression, base, tz), (
                    expression,
                    datetime.fromtimestamp(base, tz),
                )


def test_a_minute_matches_as_croniter_says() -> None:
    tz = ZoneInfo("Europe/Helsinki")
    start = datetime(2024, 2, 26, tzinfo=tz)
    for expression in EXPRESSIONS[:-1]:
        fields = _cron_fields(expression)
        assert fields is not None
        for step in range(0, 60 * 24 * 9, 13):  # nine days, every 13 minutes
            minute = start + timedelta(minutes=step)
            assert fields.matches(minute) == croniter.match(expression, minute), (
                expression,
                minute,
            )
    assert _cron_fields("0 0 L * *") is None  # an extension: croniter's
