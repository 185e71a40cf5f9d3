"""Per-family tables: is_met at given instants with given histories, and exact next_due."""

from __future__ import annotations

from datetime import datetime

import pytest

from redengine_nb.conditions import Context, parse
from redengine_nb.records import Action
from redengine_nb.runlog.memory import MemoryRunLog
from redengine_nb.testing import FakeClock

TZ = "Europe/Helsinki"


def history(*runs: tuple[str, str, Action]) -> MemoryRunLog:
    """Runs given as (task, wall time, action), each starting and ending at that time."""
    log = MemoryRunLog()
    for task, when, action in runs:
        ts = FakeClock(when, tz=TZ).time()
        rec = log.start_run(task, created=ts, start=ts, owner="x")
        if action is not Action.RUN:
            log.finish_run(rec.run_id, action, end=ts)
    return log


def ctx(when: str, log: MemoryRunLog, running: frozenset[str] = frozenset()) -> Context:
    return Context(FakeClock(when, tz=TZ).now(), log, "t", running.__contains__)


def wall(d: datetime | None) -> str | None:
    """Minutes, and seconds when there are any."""
    if d is None:
        return None
    return d.strftime("%Y-%m-%d %H:%M") + (f":{d.second:02d}" if d.second else "")


S = Action.SUCCESS
# (condition, now, history, met, next_due)
TABLE = [
    ("daily", "2024-03-10 09:00", [], True, "2024-03-10 09:00"),
    ("daily", "2024-03-10 09:00", [("t", "2024-03-10 08:00", S)], False, "2024-03-11 00:00"),
    ("daily", "2024-03-10 09:00", [("t", "2024-03-09 23:00", S)], True, "2024-03-10 09:00"),
    (
        "daily",
        "2024-03-10 09:00",
        [("t", "2024-03-10 08:00", Action.FAIL)],
        False,
        "2024-03-11 00:00",
    ),
    (
        "daily",
        "2024-03-10 09:00",
        [("t", "2024-03-10 08:00", Action.RUN)],
        True,
        "2024-03-10 09:00",
    ),
    ("daily", "2024-03-10 09:00", [("t", "2024-03-11 03:00", S)], False, "2024-03-12 00:00"),
    ("daily between 10:00 and 12:00", "2024-03-10 09:00", [], False, "2024-03-10 10:00"),
    ("daily between 10:00 and 12:00", "2024-03-10 11:00", [], True, "2024-03-10 11:00"),
    ("daily between 10:00 and 12:00", "2024-03-10 12:00", [], False, "2024-03-11 10:00"),
    (
        "daily between 22:00 and 02:00",
        "2024-03-10 01:00",
        [("t", "2024-03-09 22:30", S)],
        False,
        "2024-03-10 22:00",
    ),
    ("daily after 23:00", "2024-03-10 23:30", [], True, "2024-03-10 23:30"),
    ("daily before 06:00", "2024-03-10 07:00", [], False, "2024-03-11 00:00"),
    (
        "daily starting 10:00",
        "2024-03-10 09:00",
        [("t", "2024-03-09 10:30", S)],
        False,
        "2024-03-10 10:00",
    ),
    ("hourly", "2024-03-10 09:30", [("t", "2024-03-10 09:10", S)], False, "2024-03-10 10:00"),
    (
        "hourly & time of day between 09:00 and 17:00",
        "2024-03-10 16:30",
        [("t", "2024-03-10 16:00", S)],
        False,
        "2024-03-11 09:00",
    ),
    # Red Engine's reading: times of 'hourly' are minutes of the hour (minutes 9 to 17).
    (
        "hourly between 09:00 and 17:00",
        "2024-03-10 16:30",
        [("t", "2024-03-10 16:12", S)],
        False,
        "2024-03-10 17:09",
    ),
    ("hourly between 45:00 and 50:00", "2024-03-10 16:47", [], True, "2024-03-10 16:47"),
    ("hourly between 45:00 and 50:00", "2024-03-10 16:50", [], False, "2024-03-10 17:45"),
    ("time of minute between 15 and 45", "2024-03-10 16:50:44", [], True, "2024-03-10 16:50:44"),
    ("time of minute between 15 and 45", "2024-03-10 16:50:45", [], False, "2024-03-10 16:51:15"),
    ("minutely", "2024-03-10 09:30", [("t", "2024-03-10 09:30", S)], False, "2024-03-10 09:31"),
    ("weekly on Monday", "2024-03-10 09:00", [], False, "2024-03-11 00:00"),
    ("weekly", "2024-03-10 09:00", [("t", "2024-03-04 00:00", S)], False, "2024-03-11 00:00"),
    ("monthly on 15th", "2024-03-15 09:00", [], True, "2024-03-15 09:00"),
    ("monthly", "2024-03-15 09:00", [("t", "2024-03-01 00:00", S)], False, "2024-04-01 00:00"),
    ("every 10 minutes", "2024-03-10 09:00", [], True, "2024-03-10 09:00"),
    (
        "every 10 minutes",
        "2024-03-10 09:05",
        [("t", "2024-03-10 09:00", S)],
        False,
        "2024-03-10 09:10",
    ),
    (
        "every 10 minutes",
        "2024-03-10 09:10",
        [("t", "2024-03-10 09:00", Action.RUN)],
        True,
        "2024-03-10 09:10",
    ),
    ("cron */15 * * * *", "2024-03-10 09:15", [], True, "2024-03-10 09:15"),
    ("cron */15 * * * *", "2024-03-10 09:16", [], False, "2024-03-10 09:30"),
    (
        "cron */15 * * * *",
        "2024-03-10 09:15",
        [("t", "2024-03-10 09:15", S)],
        False,
        "2024-03-10 09:30",
    ),
    ("time of day between 10:00 and 12:00", "2024-03-10 09:00", [], False, "2024-03-10 10:00"),
    ("time of day between 10:00 and 12:00", "2024-03-10 10:00", [], True, "2024-03-10 10:00"),
    ("time of week on Monday", "2024-03-10 09:00", [], False, "2024-03-11 00:00"),
    ("time of month after 15th", "2024-03-10 09:00", [], False, "2024-03-15 00:00"),
    ("time of hour before :15", "2024-03-10 09:20", [], False, "2024-03-10 10:00"),
    ("~time of day between 10:00 and 12:00", "2024-03-10 10:30", [], False, "2024-03-10 12:00"),
    ("has succeeded", "2024-03-10 09:00", [("t", "2020-01-01 00:00", S)], True, "2024-03-10 09:00"),
    ("has succeeded today", "2024-03-10 09:00", [("t", "2024-03-09 23:00", S)], False, None),
    (
        "has succeeded today",
        "2024-03-10 09:00",
        [("t", "2024-03-10 01:00", S)],
        True,
        "2024-03-10 09:00",
    ),
    (
        "~has succeeded today",
        "2024-03-10 09:00",
        [("t", "2024-03-10 01:00", S)],
        False,
        "2024-03-11 00:00",
    ),
    (
        "~has succeeded in past 1 hour",
        "2024-03-10 09:00",
        [("t", "2024-03-10 08:30", S)],
        False,
        "2024-03-10 09:30",
    ),
    (
        "has failed this hour",
        "2024-03-10 09:00",
        [("t", "2024-03-10 09:00", Action.FAIL)],
        True,
        "2024-03-10 09:00",
    ),
    (
        "has finished",
        "2024-03-10 09:00",
        [("t", "2024-03-10 09:00", Action.TERMINATE)],
        True,
        "2024-03-10 09:00",
    ),
    (
        "has started this minute",
        "2024-03-10 09:00",
        [("t", "2024-03-10 09:00", Action.RUN)],
        True,
        "2024-03-10 09:00",
    ),
    ("has crashed", "2024-03-10 09:00", [("t", "2024-03-10 08:00", S)], False, None),
    (
        "has succeeded today between 08:00 and 10:00",
        "2024-03-10 11:00",
        [("t", "2024-03-10 09:00", S)],
        True,
        "2024-03-10 11:00",
    ),
    (
        "has succeeded today between 08:00 and 10:00",
        "2024-03-10 11:00",
        [("t", "2024-03-10 10:30", S)],
        False,
        None,
    ),
    (
        "task 'a' has succeeded today",
        "2024-03-10 09:00",
        [("a", "2024-03-10 01:00", S)],
        True,
        "2024-03-10 09:00",
    ),
    ("after task 'a'", "2024-03-10 09:00", [], False, None),
    (
        "after task 'a'",
        "2024-03-10 09:00",
        [("a", "2024-03-10 08:00", S)],
        True,
        "2024-03-10 09:00",
    ),
    (
        "after task 'a'",
        "2024-03-10 09:00",
        [("a", "2024-03-10 08:00", S), ("t", "2024-03-10 08:01", S)],
        False,
        None,
    ),
    ("after task 'a' failed", "2024-03-10 09:00", [("a", "2024-03-10 08:00", S)], False, None),
    (
        "after task 'a' finished",
        "2024-03-10 09:00",
        [("a", "2024-03-10 08:00", Action.FAIL)],
        True,
        "2024-03-10 09:00",
    ),
    ("after tasks 'a', 'b'", "2024-03-10 09:00", [("a", "2024-03-10 08:00", S)], False, None),
    (
        "after any tasks 'a', 'b'",
        "2024-03-10 09:00",
        [("a", "2024-03-10 08:00", S)],
        True,
        "2024-03-10 09:00",
    ),
    (
        "daily & after task 'a'",
        "2024-03-10 09:00",
        [("t", "2024-03-10 08:00", S)],
        False,
        None,
    ),
    (
        "daily | every 10 minutes",
        "2024-03-10 09:05",
        [("t", "2024-03-10 09:00", S)],
        False,
        "2024-03-10 09:10",
    ),
    ("time of day after 10:00 & daily", "2024-03-10 09:00", [], False, "2024-03-10 10:00"),
    # time of minute
    ("time of minute before :30", "2024-03-10 09:30:10", [], True, "2024-03-10 09:30:10"),
    ("time of minute before :30", "2024-03-10 09:30:30", [], False, "2024-03-10 09:31"),
    ("time of minute after :45", "2024-03-10 09:30:10", [], False, "2024-03-10 09:30:45"),
    ("time of minute between :40 and :10", "2024-03-10 09:31:05", [], True, "2024-03-10 09:31:05"),
    ("time of minute between :40 and :10", "2024-03-10 09:31:10", [], False, "2024-03-10 09:31:40"),
    ("time of minute on :15", "2024-03-10 09:31:16", [], False, "2024-03-10 09:32:15"),
    ("~time of minute before :30", "2024-03-10 09:31:05", [], False, "2024-03-10 09:31:30"),
    # has terminated / has inacted
    (
        "has terminated",
        "2024-03-10 09:00",
        [("t", "2024-03-10 08:00", Action.TERMINATE)],
        True,
        "2024-03-10 09:00",
    ),
    ("has terminated", "2024-03-10 09:00", [("t", "2024-03-10 08:00", Action.FAIL)], False, None),
    (
        "has inacted today",
        "2024-03-10 09:00",
        [("t", "2024-03-10 08:00", Action.INACTION)],
        True,
        "2024-03-10 09:00",
    ),
    ("has inacted", "2024-03-10 09:00", [("t", "2024-03-10 08:00", S)], False, None),
    (
        "~task 'a' has inacted today",
        "2024-03-10 09:00",
        [("a", "2024-03-10 08:00", Action.INACTION)],
        False,
        "2024-03-11 00:00",
    ),
    # this week (Monday to Monday) / this month
    (
        "has succeeded this week",
        "2024-03-10 09:00",
        [("t", "2024-03-04 00:00", S)],
        True,
        "2024-03-10 09:00",
    ),
    ("has succeeded this week", "2024-03-10 09:00", [("t", "2024-03-03 23:59", S)], False, None),
    (
        "~has succeeded this week",
        "2024-03-10 09:00",
        [("t", "2024-03-05 12:00", S)],
        False,
        "2024-03-11 00:00",
    ),
    (
        "has failed this month",
        "2024-03-10 09:00",
        [("t", "2024-03-01 00:00", Action.FAIL)],
        True,
        "2024-03-10 09:00",
    ),
    (
        "has failed this month",
        "2024-03-10 09:00",
        [("t", "2024-02-29 23:59", Action.FAIL)],
        False,
        None,
    ),
    (
        "~has failed this month",
        "2024-03-10 09:00",
        [("t", "2024-03-02 00:00", Action.FAIL)],
        False,
        "2024-04-01 00:00",
    ),
    # daily on HH:MM: the hour from HH:MM
    ("daily on 14:30", "2024-03-10 14:00", [], False, "2024-03-10 14:30"),
    ("daily on 14:30", "2024-03-10 15:29", [], True, "2024-03-10 15:29"),
    ("daily on 14:30", "2024-03-10 15:30", [], False, "2024-03-11 14:30"),
    (
        "daily on 14:30",
        "2024-03-10 14:45",
        [("t", "2024-03-10 14:31", S)],
        False,
        "2024-03-11 14:30",
    ),
    (
        "daily on 14:30",
        "2024-03-10 14:45",
        [("t", "2024-03-10 14:29", S)],
        True,
        "2024-03-10 14:45",
    ),
    ("true", "2024-03-10 09:00", [], True, "2024-03-10 09:00"),
    ("false", "2024-03-10 09:00", [], False, None),
]


@pytest.mark.parametrize(("text", "now", "runs", "met", "due"), TABLE)
def test_phrase_table(
    text: str, now: str, runs: list[tuple[str, str, Action]], met: bool, due: str | None
) -> None:
    cond = parse(text)
    c = ctx(now, history(*runs))
    assert cond.is_met(c) is met
    assert wall(cond.next_due(c)) == due
    # Asking twice (with a warm cache) gives the same answers.
    assert cond.is_met(c) is met


def test_is_running() -> None:
    log = MemoryRunLog()
    c = ctx("2024-03-10 09:00", log, frozenset({"a"}))
    assert parse("task 'a' is running").is_met(c)
    assert not parse("is running").is_met(c)
    assert parse("~task 'a' is running").next_due(c) is None


def test_status_needs_a_task_when_none_is_attached() -> None:
    c = Context(FakeClock("2024-03-10 09:00", tz=TZ).now(), MemoryRunLog(), None)
    with pytest.raises(ValueError, match="needs a task"):
        parse("has succeeded").is_met(c)
    assert parse("task 'a' has succeeded").is_met(c) is False


def test_conditions_have_no_truth_value() -> None:
    with pytest.raises(TypeError, match="is_met"):
        bool(parse("daily"))
