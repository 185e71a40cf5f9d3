"""The clock seam: FakeClock moves only when told, in elapsed time, and is zone-aware."""

from __future__ import annotations

from datetime import timedelta

import pytest

from redengine_nb.clock import SystemClock, get_zone
from redengine_nb.testing import FakeClock


def test_fake_clock_reads_wall_time_in_its_zone() -> None:
    clock = FakeClock("2024-03-10 09:00", tz="Europe/Helsinki")
    assert clock.now().isoformat() == "2024-03-10T09:00:00+02:00"
    assert clock.time() == clock.now().timestamp()


def test_advance_by_text_seconds_and_timedelta() -> None:
    clock = FakeClock("2024-03-10 09:00", tz="UTC")
    clock.advance("10 minutes")
    clock.advance(30)
    clock.advance(timedelta(seconds=30))
    assert clock.now().strftime("%H:%M") == "09:11"
    with pytest.raises(ValueError, match="forward only"):
        clock.advance(-1)


def test_advance_is_elapsed_time_across_dst() -> None:
    clock = FakeClock("2024-03-31 02:30", tz="Europe/Helsinki")
    clock.advance("1 hour")
    assert clock.now().strftime("%H:%M") == "04:30"


def test_set_jumps_both_ways_and_notifies() -> None:
    clock = FakeClock("2024-03-10 09:00", tz="UTC")
    moves: list[str] = []
    clock.subscribe(lambda: moves.append(clock.now().strftime("%d %H:%M")))
    clock.set("2024-03-09 08:00")
    clock.advance("1 minute")
    assert moves == ["09 08:00", "09 08:01"]


def test_system_clock_and_zone_errors() -> None:
    clock = SystemClock("UTC")
    assert clock.now().tzinfo is not None
    with pytest.raises(ValueError, match="IANA"):
        get_zone("Mars/Olympus")
