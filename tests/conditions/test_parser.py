"""The parser: phrases, precedence, quoting, custom phrases, errors, and round trips."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redengine_nb.conditions import (
    DEFAULT_GRAMMAR,
    All,
    Any,
    BaseCondition,
    Context,
    Grammar,
    Not,
    after_all_success,
    after_any_success,
    after_fail,
    after_finish,
    after_success,
    cron,
    daily,
    every,
    failed,
    false,
    finished,
    hourly,
    minutely,
    monthly,
    parse,
    running,
    started,
    succeeded,
    time_of_day,
    time_of_hour,
    time_of_minute,
    time_of_month,
    time_of_week,
    true,
    weekly,
)
from redengine_nb.errors import ConditionParseError
from redengine_nb.runlog.memory import MemoryRunLog
from redengine_nb.testing import FakeClock

EQUIVALENT = [
    ("daily", daily),
    ("DAILY", daily),
    ("daily between 08:00 and 10:00", daily.between("08:00", "10:00")),
    ("daily on 14:30", daily.at("14:30")),
    ("daily between 14:30 and 15:30", daily.at("14:30")),
    ("daily between 10am and 7:30 pm", daily.between("10:00", "19:30")),
    ("weekly on Monday", weekly.on("Mon")),
    ("monthly on 15th", monthly.on("15")),
    ("hourly between 09:00 and 17:00", hourly.between("09:00", "17:00")),
    ("minutely after 10", minutely.after("10")),
    ("daily starting 10:00", daily.starting("10:00")),
    ("every 10 minutes", every("10 minutes")),
    ("every 600s", every(600)),
    ("every 1h30m", every("1 hour 30 minutes")),
    ("cron */15 * * * *", cron("*/15  * * * *")),
    ("time of day between 08:00 and 10:00", time_of_day.between("08:00", "10:00")),
    ("time of week on Monday", time_of_week.on("Monday")),
    ("time of month after 15th", time_of_month.after("15th")),
    ("time of hour before :30", time_of_hour.before(":30")),
    ("time of minute between :00 and :30", time_of_minute.between(":00", ":30")),
    ("after task 'x'", after_success("x")),
    ('after task "x" succeeded', after_success("x")),
    ("after task 'x' failed", after_fail("x")),
    ("after task 'x' finished", after_finish("x")),
    ("after tasks 'a', 'b'", after_all_success("a", "b")),
    ("after any tasks 'a','b'", after_any_success("a", "b")),
    ("task 'x' has succeeded today", succeeded(task="x").today),
    ("has failed this hour", failed().this_hour),
    ("has finished in past 2 hours", finished().in_past("2 hours")),
    ("has started", started()),
    ("task 'x' is running", running("x")),
    ("is running", running()),
    ("true", true),
    ("false", false),
    ("daily & ~is running", daily & ~running()),
    ("daily | hourly & true", daily | (hourly & true)),
    ("(daily | hourly) & true", (daily | hourly) & true),
    ("~~daily", Not(Not(daily))),
]


@pytest.mark.parametrize(("text", "expected"), EQUIVALENT)
def test_text_and_python_api_agree(text: str, expected: BaseCondition) -> None:
    cond = parse(text)
    assert cond == expected
    assert parse(str(cond)) == cond


def test_precedence_not_binds_tightest_then_and_then_or() -> None:
    cond = parse("~daily & hourly | weekly")
    assert isinstance(cond, Any)
    first = cond.parts[0]
    assert isinstance(first, All)
    assert first.parts == (Not(daily), hourly)


@pytest.mark.parametrize(
    "name", ["a&b", "x|y", "~z", "(p)", "it's", 'say "hi"', "both ' and \"", "  spaced  "]
)
def test_names_with_operators_and_quotes_round_trip(name: str) -> None:
    cond = after_success(name) & succeeded(task=name).today
    assert parse(str(cond)) == cond
    parsed = parse(str(cond))
    assert isinstance(parsed, All)
    assert parsed.parts[0] == after_success(name)


def test_doubled_quote_escapes_a_quote() -> None:
    assert parse("after task 'it''s'") == after_success("it's")
    assert str(after_success("both ' and \"")) == "after task 'both '' and \"'"


def test_parse_passes_condition_objects_through() -> None:
    assert parse(daily) is daily


# -- custom phrases ------------------------------------------------------------------------
def test_custom_phrases_extend_a_copy_only() -> None:
    grammar = DEFAULT_GRAMMAR.copy()
    flags = {"foo": True}
    grammar.add_custom("is foo", lambda: flags["foo"])
    seen: dict[str, str] = {}

    def exists(path: str) -> bool:
        seen["path"] = path
        return path == "/tmp/x"

    grammar.add_custom(re.compile(r"file (?P<path>\S+) exists"), exists)
    cond = parse("IS  FOO & file /tmp/x exists & daily", grammar)
    assert str(cond) == "is foo & file /tmp/x exists & daily"
    assert parse(str(cond), grammar) == cond
    ctx = Context(FakeClock("2024-03-10 09:00").now(), MemoryRunLog(), "t")
    assert cond.is_met(ctx)
    assert seen == {"path": "/tmp/x"}
    flags["foo"] = False
    assert not cond.is_met(ctx)
    assert cond.next_due(ctx) is None  # only an event can make a custom phrase true
    with pytest.raises(ConditionParseError):
        parse("is foo")  # the default grammar is untouched
    assert isinstance(grammar, Grammar)


def test_custom_phrase_is_suggested() -> None:
    grammar = DEFAULT_GRAMMAR.copy()
    grammar.add_custom("is foo ready", lambda: True)
    with pytest.raises(ConditionParseError) as info:
        parse("is fooo ready", grammar)
    assert info.value.suggestion == "is foo ready"


# -- errors --------------------------------------------------------------------------------
MALFORMED = [
    ("", "empty"),
    ("   ", "empty"),
    ("dialy", "daily"),
    ("hourli", "hourly"),
    ("evry 10 minutes", "every"),
    ("(daily", "missing ')'"),
    ("daily)", "')'"),
    ("((daily | hourly)", "missing ')'"),
    ("()", "expected a condition"),
    ("daily &", "after '&'"),
    ("daily |", "after '|'"),
    ("~", "after '~'"),
    ("& daily", "expected a condition"),
    ("daily & | hourly", "expected a condition"),
    ("daily between 25:00 and 10:00", "25:00"),
    ("daily between 10:00 and 10:61", "10:61"),
    ("daily between 10:00", "'and'"),
    ("daily between 10:00 or 11:00", "'and'"),
    ("daily betwen 10:00 and 11:00", "between"),
    ("daily at noon", "bad time"),
    ("every 0 minutes", "positive"),
    ("every", "duration"),
    ("every 10 lightyears", "unit"),
    ("every ten minutes", "duration"),
    ("cron * * *", "5 fields"),
    ("cron 61 * * * *", "cron"),
    ("after task 'x", "unterminated"),
    ('after task "x', "unterminated"),
    ("after task x", "task name in quotes"),
    ("after task ''", "empty"),
    ("after task 'x' exploded", "unexpected"),
    ("after 'x'", "'task'"),
    ("task 'x' has exploded", "verb"),
    ("task 'x'", "'has' or 'is'"),
    ("has succeeded yesterday", "unexpected"),
    ("has succeeded in past", "duration"),
    ("time of dya", "day"),
    ("time of day between 10:00 and", "time"),
    ("weekly on Funday", "weekday"),
    ("monthly on 32nd", "day of month"),
    ("time of hour between 10 and 20", "minutes:seconds of the hour"),
    ("hourly between 9:00 and 17:00", "hourly & time of day between 09:00 and 17:00"),
    ("hourly after 10am", "for hours of the day"),
    ("daily daily", "unexpected"),
    ("'x' has succeeded", "quoted name"),
    ("is runing", "running"),
    ("daily starting", "time"),
]


@pytest.mark.parametrize(("text", "fragment"), MALFORMED)
def test_malformed_text_gives_a_useful_error(text: str, fragment: str) -> None:
    with pytest.raises(ConditionParseError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    message = str(err)
    assert fragment.lower() in message.lower()
    assert repr(text) in message  # the text is quoted
    assert err.position is not None and 0 <= err.position <= len(text)
    assert "^" in message  # and the column marked


def test_error_points_at_the_bad_token_and_suggests() -> None:
    with pytest.raises(ConditionParseError) as info:
        parse("every 10 minutes & dialy")
    assert info.value.position == len("every 10 minutes & ")
    assert info.value.suggestion == "daily"
    assert "did you mean 'daily'?" in str(info.value)


def test_at_least_thirty_malformed_cases() -> None:
    assert len(MALFORMED) >= 30


# -- round trips over generated trees --------------------------------------------------------
_names = st.text(alphabet="ab'\"&|~() x", min_size=1, max_size=6).filter(lambda s: s.strip())
_clock = st.integers(0, 23 * 60 + 59).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")
_day_names = st.sampled_from(["Mon", "Tuesday", "wed", "Thu", "Fri", "Sat", "Sunday"])
_month_days = st.integers(1, 31).map(str)

_periods = st.one_of(
    st.sampled_from([minutely, hourly, daily, weekly, monthly]),
    st.builds(lambda a, b: daily.between(a, b), _clock, _clock),
    st.builds(lambda a, b: hourly.between(a, b), _clock, _clock),
    st.builds(lambda a: daily.after(a), _clock),
    st.builds(lambda a: daily.at(a), _clock),
    st.builds(lambda a: daily.starting(a), _clock),
    st.builds(lambda d: weekly.on(d), _day_names),
    st.builds(lambda a, b: weekly.between(a, b), _day_names, _day_names),
    st.builds(lambda d: monthly.on(d), _month_days),
    st.builds(lambda a, b: time_of_day.between(a, b), _clock, _clock),
    st.builds(lambda a, b: time_of_month.between(a, b), _month_days, _month_days),
    st.builds(lambda d: time_of_week.on(d), _day_names),
    st.builds(lambda s: every(s), st.integers(1, 10**6)),
    st.sampled_from([cron("*/15 * * * *"), cron("0 9 * * 1-5")]),
)
_status = st.one_of(
    st.builds(after_success, _names),
    st.builds(after_fail, _names),
    st.builds(lambda a, b: after_any_success(a, b), _names, _names),
    st.builds(lambda a, b: after_all_success(a, b), _names, _names),
    st.builds(lambda n: succeeded(task=n).today, _names),
    st.builds(lambda n: failed(task=n).this_week, _names),
    st.builds(lambda n, s: finished(task=n).in_past(s), _names, st.integers(1, 10**5)),
    st.builds(running, st.one_of(st.none(), _names)),
    st.sampled_from([true, false, started()]),
)
_trees = st.recursive(
    st.one_of(_periods, _status),
    lambda kids: st.one_of(
        st.builds(lambda a, b: a & b, kids, kids),
        st.builds(lambda a, b: a | b, kids, kids),
        st.builds(lambda a: Not(a), kids),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_trees)
def test_print_then_parse_round_trips(cond: BaseCondition) -> None:
    text = str(cond)
    assert parse(text) == cond
    assert str(parse(text)) == text


def test_custom_phrases_say_they_read_the_outside_world() -> None:
    # The scheduler re-checks such conditions on its own: nothing else announces a change.
    grammar = DEFAULT_GRAMMAR.copy()
    grammar.add_custom("is foo", lambda: False)
    assert parse("is foo", grammar).reads_outside()
    assert parse("daily & (every 5 minutes | ~is foo)", grammar).reads_outside()
    assert not parse("daily & (every 5 minutes | ~after task 'x')", grammar).reads_outside()
