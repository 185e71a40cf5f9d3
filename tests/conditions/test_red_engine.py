"""Red Engine 2.0 compatibility (issue 13): every example of Red Engine's condition-syntax
pages and tests parses, and the meanings Red Engine and Rocketry agree on hold here.

The truth tables below are the reference libraries' answers (checked against the real
Red Engine 2.0.1 and Rocketry 2.5.1 by tests/conditions/test_reference.py); this file
keeps them runnable without the side environment.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from redengine_nb.conditions import Context, explain, parse
from redengine_nb.errors import ConditionParseError
from redengine_nb.records import Action
from redengine_nb.runlog.memory import MemoryRunLog
from redengine_nb.testing import FakeClock

TZ = "UTC"

# Every example of Red Engine's docs/condition_syntax pages and tutorial.
RED_ENGINE_EXAMPLES = [
    "hourly",
    "daily between 22:00 and 23:00",
    "weekly before Friday",
    "monthly starting 3rd",
    "time of hour before 45:00",
    "time of day between 10:00 and 16:00",
    "time of week after Monday",
    "time of month after 5th",
    "every 1 hour",
    "every 30 sec",
    "every 2 hours, 30 minutes",
    "every 1 day, 12 hour, 30 min, 20 sec",
    "has succeeded this hour",
    "has failed today between 08:00 and 16:00",
    "has started this week before Friday",
    "has terminated this month after 6th",
    "has succeeded past 2 hours, 30 minutes",
    "after task 'a_task'",
    "after task 'a_task' succeeded",
    "after task 'a_task' failed",
    "after task 'a_task' finished",
    "after tasks 'a_task', 'another_task' finished",
    "(daily | after task 'mytask') & ~time of day after 10:00",
    # and from its tests and docstrings
    "always true",
    "always false",
    "true",
    "false",
    "hourly between 45:00 and 50:00",
    "hourly starting 45:00",
    "time of minute between 15 and 45",
    "time of hour between 1 quarter and 3 quarter",
    "time of week between Tue 10:00 and Sat 12:00",
    "time of month between 1. and 22.",
    "monthly on 10th 12:30:00",
    "time of week on Monday",
    "run daily",
    "run every 10 minutes",
    "task 'mytask' has started today",
    "task 'mytask' has failed today between 10:00 and 14:00",
    "task 'mytask' has inacted",
    "task 'mytask' is running",
    "while task 'mytask' is running",
    "after any tasks 'a', 'b' failed",
    "has succeeded in past 1 hour",
    "env 'prod'",
    "param 'x' exists",
    "param 'x' is 'v'",
    "scheduler has more than 3 cycles",
    "scheduler has less than 3 cycles",
    "scheduler has 3 cycles",
    "scheduler started 10 minutes ago",
    "scheduler has run over 10 minutes",
]


@pytest.mark.parametrize("text", RED_ENGINE_EXAMPLES)
def test_every_red_engine_example_parses_and_round_trips(text: str) -> None:
    cond = parse(text)
    assert parse(str(cond)) == cond


def _log(*runs: tuple[str, str, Action]) -> MemoryRunLog:
    log = MemoryRunLog()
    for task, when, action in runs:
        ts = FakeClock(when, tz=TZ).time()
        rec = log.start_run(task, created=ts, start=ts, owner="x")
        if action is not Action.RUN:
            log.finish_run(rec.run_id, action, end=ts)
    return log


def _ctx(when: str, log: MemoryRunLog | None = None, **facts: object) -> Context:
    return Context(FakeClock(when, tz=TZ).now(), log or MemoryRunLog(), "t", **facts)  # type: ignore[arg-type]


S, F, T, INACT = Action.SUCCESS, Action.FAIL, Action.TERMINATE, Action.INACTION

# (text, now, runs, met): answers of Red Engine 2.0.1 and Rocketry 2.5.1 (they agree).
AGREED = [
    # 1. times in the unit of the period
    ("hourly between 45:00 and 50:00", "2024-01-02 10:47", [], True),
    ("hourly between 45:00 and 50:00", "2024-01-02 10:30", [], False),
    ("hourly between 45:00 and 50:00", "2024-01-02 10:47", [("t", "2024-01-02 10:46", S)], False),
    ("hourly between 45:00 and 50:00", "2024-01-02 10:47", [("t", "2024-01-02 09:46", S)], True),
    ("hourly between 09:00 and 17:00", "2024-01-02 03:10", [], True),
    ("hourly between 09:00 and 17:00", "2024-01-02 10:00", [], False),
    ("time of hour before 45:00", "2024-01-02 10:44", [], True),
    ("time of hour before 45:00", "2024-01-02 10:46", [], False),
    ("hourly starting 45:00", "2024-01-02 10:50", [("t", "2024-01-02 10:40", S)], True),
    ("hourly starting 45:00", "2024-01-02 10:40", [("t", "2024-01-02 09:50", S)], False),
    ("time of minute between 15 and 45", "2024-01-02 10:40:20", [], True),
    ("time of minute between 15 and 45", "2024-01-02 10:40:50", [], False),
    ("time of hour between 1 quarter and 3 quarter", "2024-01-02 10:20", [], True),
    ("time of hour between 1 quarter and 3 quarter", "2024-01-02 10:50", [], False),
    # 2. durations as Red Engine writes them
    ("every 2 hours, 30 minutes", "2024-01-02 12:00", [("t", "2024-01-02 10:00", S)], False),
    ("every 2 hours, 30 minutes", "2024-01-02 12:31", [("t", "2024-01-02 10:00", S)], True),
    (
        "has succeeded past 2 hours, 30 minutes",
        "2024-01-02 12:00",
        [("t", "2024-01-02 10:00", S)],
        True,
    ),
    (
        "has succeeded past 2 hours, 30 minutes",
        "2024-01-02 13:00",
        [("t", "2024-01-02 10:00", S)],
        False,
    ),
    # 3. words
    ("always true", "2024-01-02 12:00", [], True),
    ("always false", "2024-01-02 12:00", [], False),
    ("time of month between 1. and 22.", "2024-01-22 23:00", [], True),
    ("time of month between 1. and 22.", "2024-01-23 00:30", [], False),
    ("time of week between Tue 10:00 and Sat 12:00", "2024-01-02 09:00", [], False),  # a Tuesday
    ("time of week between Tue 10:00 and Sat 12:00", "2024-01-02 10:30", [], True),
    ("time of week between Tue 10:00 and Sat 12:00", "2024-01-06 11:59", [], True),
    ("time of week between Tue 10:00 and Sat 12:00", "2024-01-06 12:30", [], False),
    ("monthly on 10th 12:30:00", "2024-01-10 12:40", [], True),
    ("monthly on 10th 12:30:00", "2024-01-10 12:20", [], False),
    # 4. meanings
    ("has finished today", "2024-01-02 12:00", [("t", "2024-01-02 10:00", INACT)], False),
    ("has finished today", "2024-01-02 12:00", [("t", "2024-01-02 10:00", T)], True),
    ("after task 'a' finished", "2024-01-02 12:00", [("a", "2024-01-02 10:00", F)], True),
    ("after task 'a' finished", "2024-01-02 12:00", [("a", "2024-01-02 10:00", INACT)], False),
    ("after task 'a' finished", "2024-01-02 12:00", [("a", "2024-01-02 10:00", T)], False),
    ("weekly before Friday", "2024-01-05 15:00", [], True),  # a Friday
    ("weekly before Friday", "2024-01-06 00:30", [], False),
    ("time of week before Friday", "2024-01-05 23:59", [], True),
    ("daily", "2024-01-02 12:00", [("t", "2024-01-02 10:00", INACT)], False),
]


@pytest.mark.parametrize(("text", "now", "runs", "met"), AGREED)
def test_meaning_agreed_by_red_engine_and_rocketry(
    text: str, now: str, runs: list[tuple[str, str, Action]], met: bool
) -> None:
    assert parse(text).is_met(_ctx(now, _log(*runs))) is met


def test_env_and_params_read_the_session_parameters() -> None:
    params = {"env": "prod", "x": "v", "n": 1}
    assert parse("env 'prod'").is_met(_ctx("2024-01-02 12:00", parameters=params))
    assert not parse("env 'dev'").is_met(_ctx("2024-01-02 12:00", parameters=params))
    assert not parse("env 'prod'").is_met(_ctx("2024-01-02 12:00"))
    assert parse("param 'x' exists").is_met(_ctx("2024-01-02 12:00", parameters=params))
    assert not parse("param 'y' exists").is_met(_ctx("2024-01-02 12:00", parameters=params))
    assert parse("param 'x' is 'v'").is_met(_ctx("2024-01-02 12:00", parameters=params))
    assert not parse("param 'x' is 'w'").is_met(_ctx("2024-01-02 12:00", parameters=params))
    # The text is compared as text, as in Red Engine: 1 is not '1'.
    assert not parse("param 'n' is '1'").is_met(_ctx("2024-01-02 12:00", parameters=params))


def test_scheduler_cycles_and_uptime() -> None:
    started = FakeClock("2024-01-02 12:00", tz=TZ).time()
    early = _ctx("2024-01-02 12:05", cycles=3, started=started)
    late = _ctx("2024-01-02 12:15", cycles=3, started=started)
    assert parse("scheduler has more than 2 cycles").is_met(early)
    assert not parse("scheduler has more than 3 cycles").is_met(early)
    assert parse("scheduler has less than 4 cycles").is_met(early)
    assert parse("scheduler has 3 cycles").is_met(early)
    assert parse("scheduler started 10 minutes ago").is_met(early)
    assert not parse("scheduler started 10 minutes ago").is_met(late)
    assert not parse("scheduler has run over 10 minutes").is_met(early)
    assert parse("scheduler has run over 10 minutes").is_met(late)
    due = parse("scheduler has run over 10 minutes").next_due(early)
    assert due is not None and due.timestamp() >= started + 600
    not_started = _ctx("2024-01-02 12:05")
    assert not parse("scheduler started 10 minutes ago").is_met(not_started)
    assert not parse("scheduler has run over 10 minutes").is_met(not_started)


def test_and_and_or_of_the_same_parts_are_different_conditions() -> None:
    assert parse("daily & hourly") != parse("daily | hourly")
    assert len({parse("daily & hourly"), parse("daily | hourly")}) == 2


def test_deep_nesting_is_a_parse_error_not_a_recursion_error() -> None:
    for text in ("(" * 400 + "daily" + ")" * 400, "~" * 2000 + "daily"):
        with pytest.raises(ConditionParseError, match="nests deeper"):
            parse(text)
    assert parse("(" * 50 + "daily" + ")" * 50) == parse("daily")


def test_a_long_bad_condition_quotes_a_window_around_the_error() -> None:
    text = "daily & " * 12_000 + "dailx" + " & daily" * 500
    with pytest.raises(ConditionParseError) as info:
        parse(text)
    message = str(info.value)
    assert len(message) < 600
    assert "dailx" in message and "..." in message
    lines = message.splitlines()
    quoted = next(line for line in lines if "in condition:" in line)
    caret = next(line for line in lines if line.strip() == "^")
    assert quoted[caret.index("^") : caret.index("^") + 5] == "dailx"


def test_an_unknown_unit_puts_the_caret_under_the_unit() -> None:
    for text in (
        "every 5 secnds",
        "daily & every 2 hours, 5 secnds",
        "has succeeded past 5 secnds",
    ):
        with pytest.raises(ConditionParseError) as info:
            parse(text)
        assert info.value.position == text.index("secnds"), text


def test_new_phrases_are_suggested() -> None:
    for typo, meant in (("schedulr has 3 cycles", "scheduler"), ("allways true", "always")):
        with pytest.raises(ConditionParseError) as info:
            parse(typo)
        assert info.value.suggestion is not None and info.value.suggestion.startswith(meant)
        assert info.value.position == 0


def test_hourly_with_clock_times_gives_the_working_hours_hint() -> None:
    with pytest.raises(ConditionParseError) as info:
        parse("hourly between 9:00 and 17:00")
    assert "hourly & time of day between 09:00 and 17:00" in str(info.value)
    assert info.value.position == len("hourly between ")


def test_running_is_read_from_the_context() -> None:
    running = {"x"}
    ctx = Context(
        datetime.fromisoformat("2024-01-02T12:00+00:00"), MemoryRunLog(), "t", running.__contains__
    )
    assert parse("task 'x' is running").is_met(ctx)
    assert parse("while task 'x' is running").is_met(ctx)
    assert not parse("task 'y' is running").is_met(ctx)


def test_explain_says_how_hour_and_minute_times_are_read() -> None:
    note = explain(parse("hourly between 09:00 and 17:00"))
    assert note is not None
    assert "minutes 09:00 to 17:00 of every hour" in note
    assert "hourly & time of day between 09:00 and 17:00" in note
    minute = explain(parse("daily & time of minute between 15 and 45"))
    assert minute is not None and "seconds 15 to 45 of every minute" in minute
    assert explain(parse("hourly & time of day between 09:00 and 17:00")) is None
    assert explain(parse("daily between 09:00 and 17:00")) is None


def test_fractions_of_a_second_as_red_engine_writes_them() -> None:
    assert parse("time of minute between 15.00 and 45.000") == parse(
        "time of minute between 15 and 45"
    )
    assert parse("time of hour before 45:00.0") == parse("time of hour before 45:00")
    with pytest.raises(ConditionParseError, match="second of the minute"):
        parse("time of minute after 15.5")


def test_secondly_runs_once_a_second_as_in_rocketry() -> None:
    clock = FakeClock("2024-01-02 12:00:00.250", tz=TZ)
    log = MemoryRunLog()
    cond = parse("secondly")
    runs = []
    for _ in range(20):
        ctx = Context(clock.now(), log, "t")
        if cond.is_met(ctx):
            ts = clock.time()
            rec = log.start_run("t", created=ts, start=ts, owner="x")
            log.finish_run(rec.run_id, Action.SUCCESS, end=ts)
            runs.append(ts)
        else:
            due = cond.next_due(ctx)
            assert due is not None and due.timestamp() == int(clock.time()) + 1
        clock.advance(0.5)
    assert len(runs) == 10
    assert [int(t) for t in runs] == [int(runs[0]) + i for i in range(10)]
    assert str(cond) == "secondly"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("secondly between 1 and 2", "whole seconds"), ("time of second after 1", "not supported")],
)
def test_nothing_inside_a_second(text: str, fragment: str) -> None:
    with pytest.raises(ConditionParseError, match=fragment):
        parse(text)
