"""Condition text → condition objects: :func:`parse` and the built-in phrases
(``DEFAULT_GRAMMAR``); the tokenizer, the :class:`Grammar` table and the recursive descent
are in ``reader.py`` (re-exported here).

Expressions::

    expr   := and ('|' and)*
    and    := unary ('&' unary)*
    unary  := '~' unary | '(' expr ')' | phrase

A *phrase* is looked up by its first word in the grammar's table (``daily`` → the period
reader, ``after`` → the dependency reader, ...); custom phrases (plain text or a regex with
named groups) are tried first, longest match wins. Keywords are case-insensitive; task
names are quoted with ``'`` or ``"`` (a quote of the same kind inside is doubled: ``'it''s'``).
"""

from __future__ import annotations

from ..errors import ConditionParseError
from .base import BaseCondition, false, true
from .periods import DAY, HOUR, MINUTE, MONTH, WEEK, TimeWindow, Unit
from .reader import MAX_NESTING as MAX_NESTING  # named in docs/conditions.md
from .reader import (
    Cursor,
    CustomCondition,
    Grammar,
    PhraseReader,
    Token,
    _closest,
    tokenize,
)
from .scheduler import EnvIs, ParamIs, SchedulerCycles, SchedulerStarted
from .status import AFTER_VERBS, VERBS, After, HasAction, Retry, Running
from .time import (
    UNIT_NAMES,
    WINDOW_UNIT,
    Cron,
    Every,
    PeriodCondition,
    TimeCondition,
    window_after,
    window_before,
    window_between,
    window_on,
)

__all__ = ["DEFAULT_GRAMMAR", "CustomCondition", "Grammar", "Token", "parse", "tokenize"]


def parse(text: str | BaseCondition, grammar: Grammar | None = None) -> BaseCondition:
    """A condition from its text (a condition object is returned as it is).

    Raises :class:`~redengine_nb.errors.ConditionParseError` (a ``ValueError``) that quotes
    the text, marks the column and suggests the nearest phrase.
    """
    if isinstance(text, BaseCondition):
        return text
    if not isinstance(text, str):
        raise TypeError(f"a condition is text or a condition object, not {type(text).__name__}")
    cursor = Cursor(text, grammar if grammar is not None else DEFAULT_GRAMMAR)
    cond = cursor.expression()
    tok = cursor.peek()
    if tok.kind != "end":
        if tok.kind == "op" and tok.value == ")":
            raise cursor.fail("unbalanced ')': there is no '(' to close", tok)
        hint = (
            _closest(tok.value, [*cursor.grammar.suggestions(), "between", "after", "before"])
            if tok.kind == "word"
            else None
        )
        raise cursor.fail(
            f"unexpected {cursor.describe(tok)}; expected '&', '|', ')' "
            "or the end of the condition",
            tok,
            hint,
        )
    return cond


# -- the built-in phrases ------------------------------------------------------------------
_UNIT_BY_ADVERB = {adverb: unit for unit, (adverb, _) in UNIT_NAMES.items()}
_UNIT_BY_NOUN = {noun: unit for unit, (_, noun) in UNIT_NAMES.items()}
_WINDOW_WORDS = ("between", "after", "before", "on", "at")


def _window(cur: Cursor, unit: Unit, word: str, at: Token) -> TimeWindow:
    start_tok = cur.peek()
    try:
        if word == "between":
            a = cur.point(unit, "start")
            cur.expect_word(("and",), "'and'")
            b = cur.point(unit, "end")
            return TimeWindow(unit, a, b)
        if word == "after":
            return TimeWindow(unit, cur.point(unit, "start"), unit.length)
        if word == "before":
            return TimeWindow(unit, 0, cur.point(unit, "before"))
        point = cur.tokens[cur.i]
        cur.point(unit, "start")
        return window_on(unit, cur.text[point.pos : cur.tokens[cur.i - 1].end])
    except ValueError as exc:
        if isinstance(exc, ConditionParseError):
            raise
        raise cur.fail(str(exc), start_tok) from None


def _read_period(cur: Cursor, first: Token) -> BaseCondition:
    unit = _UNIT_BY_ADVERB[first.value.lower()]
    word = cur.peek_word(*_WINDOW_WORDS, "starting")
    if word is None:
        _reject_stray_word(cur, (*_WINDOW_WORDS, "starting"))
        return PeriodCondition(unit)
    at = cur.next()
    if word == "starting":
        return PeriodCondition(unit, None, cur.point(unit, "start"))
    return PeriodCondition(unit, _window(cur, WINDOW_UNIT[unit], word, at))


def _reject_stray_word(cur: Cursor, options: tuple[str, ...]) -> None:
    tok = cur.peek()
    if tok.kind in ("word", "str"):
        hint = _closest(tok.value, list(options)) if tok.kind == "word" else None
        raise cur.fail(
            f"unexpected {cur.describe(tok)}; expected "
            + ", ".join(repr(o) for o in options)
            + ", an operator or the end",
            tok,
            hint,
        )


def _read_time_of(cur: Cursor, first: Token) -> BaseCondition:
    cur.expect_word(("of",), "'of' (as in 'time of day')")
    noun = cur.expect_word(tuple(_UNIT_BY_NOUN), "minute, hour, day, week, month or year")
    if noun == "second":
        raise cur.fail(
            "'time of second' is not supported: windows are whole seconds here "
            "('secondly' runs once a second)",
            cur.tokens[cur.i - 1],
        )
    unit = _UNIT_BY_NOUN[noun]
    word = cur.peek_word(*_WINDOW_WORDS)
    if word is None:
        _reject_stray_word(cur, _WINDOW_WORDS)
        return TimeCondition(TimeWindow(unit))
    at = cur.next()
    return TimeCondition(_window(cur, unit, word, at))


def _read_every(cur: Cursor, first: Token) -> BaseCondition:
    return cur.duration("a duration such as '10 minutes'", Every)


def _read_cron(cur: Cursor, first: Token) -> BaseCondition:
    text, pos = cur.words_until_operator("five cron fields such as '*/15 * * * *'")
    try:
        return Cron(text)
    except ValueError as exc:
        raise cur.fail(str(exc), pos) from None


_THIS = {"minute": MINUTE, "hour": HOUR, "day": DAY, "week": WEEK, "month": MONTH}
_SPAN_START = ("today", "this", "in", "past")


def _read_has(cur: Cursor, first: Token, task: str | None = None) -> BaseCondition:
    verb = cur.expect_word(tuple(VERBS), "a verb (" + ", ".join(VERBS) + ")")
    word = cur.peek_word(*_SPAN_START)
    if word is None:
        _reject_stray_word(cur, ("today", "this", "in past", "past"))
        return HasAction(verb, task)
    cur.next()
    if word in ("in", "past"):
        if word == "in":
            cur.expect_word(("past",), "'past' (as in 'in past 1 hour')")
        return cur.duration("a duration such as '1 hour'", lambda text: HasAction(verb, task, text))
    unit = (
        DAY
        if word == "today"
        else _THIS[cur.expect_word(tuple(_THIS), "minute, hour, day, week or month after 'this'")]
    )
    wword = cur.peek_word(*_WINDOW_WORDS, "starting")
    if wword is None:
        _reject_stray_word(cur, (*_WINDOW_WORDS, "starting"))
        return HasAction(verb, task, TimeWindow(unit))
    at = cur.next()
    if wword == "starting":
        anchor = cur.point(unit, "start")
        return HasAction(verb, task, TimeWindow(unit, anchor, anchor))
    return HasAction(verb, task, _window(cur, unit, wword, at))


def _read_is(cur: Cursor, first: Token, task: str | None = None) -> BaseCondition:
    cur.expect_word(("running",), "'running'")
    return Running(task)


def _read_task(cur: Cursor, first: Token) -> BaseCondition:
    name = cur.expect_name()
    word = cur.expect_word(("has", "is"), "'has' or 'is' after the task name")
    head = cur.tokens[cur.i - 1]
    return _read_has(cur, head, name) if word == "has" else _read_is(cur, head, name)


def _read_while(cur: Cursor, first: Token) -> BaseCondition:
    """``while task 'x' is running`` (Red Engine's other spelling of ``task 'x' is running``)."""
    cur.expect_word(("task",), "'task' (as in \"while task 'x' is running\")")
    name = cur.expect_name()
    cur.expect_word(("is",), "'is running'")
    return _read_is(cur, first, name)


def _read_after(cur: Cursor, first: Token) -> BaseCondition:
    any_ = cur.peek_word("any", "all") == "any"
    if cur.peek_word("any", "all"):
        cur.next()
    cur.expect_word(("task", "tasks"), "'task' or 'tasks' (as in \"after task 'x'\")")
    names = [cur.expect_name()]
    while cur.peek_word(","):
        cur.next()
        names.append(cur.expect_name())
    verb = cur.peek_word(*AFTER_VERBS) or "succeeded"
    if cur.peek_word(*AFTER_VERBS):
        cur.next()
    else:
        _reject_stray_word(cur, (*AFTER_VERBS, ","))
    return After(names, verb, any=any_)


def _read_always(cur: Cursor, first: Token) -> BaseCondition:
    """``always true`` / ``always false`` (Red Engine), and ``always`` alone."""
    word = cur.peek_word("true", "false")
    if word is None:
        _reject_stray_word(cur, ("true", "false"))
        return true
    cur.next()
    return true if word == "true" else false


def _read_run(cur: Cursor, first: Token) -> BaseCondition:
    """Red Engine's ``run daily``, ``run every 10 minutes``: the same as without ``run``."""
    tok = cur.peek()
    options = (*_UNIT_BY_ADVERB, "every")
    word = cur.expect_word(options, "a period ('daily', 'every 10 minutes', ...) after 'run'")
    reader = _read_every if word == "every" else _read_period
    return reader(cur, tok)


def _read_env(cur: Cursor, first: Token) -> BaseCondition:
    return EnvIs(cur.expect_name("an environment name in quotes (as in \"env 'prod'\")"))


def _read_param(cur: Cursor, first: Token) -> BaseCondition:
    key = cur.expect_name("a parameter name in quotes (as in \"param 'x' exists\")")
    word = cur.expect_word(("exists", "is"), "'exists' or 'is' after the parameter name")
    if word == "exists":
        return ParamIs(key)
    return ParamIs(key, cur.expect_name("a value in quotes (as in \"param 'x' is 'v'\")"))


def _read_scheduler(cur: Cursor, first: Token) -> BaseCondition:
    word = cur.expect_word(
        ("has", "started"), "'has' or 'started' (as in 'scheduler has more than 3 cycles')"
    )
    if word == "started":
        cond = cur.duration(
            "a duration such as '10 minutes' (as in 'scheduler started 10 minutes ago')",
            SchedulerStarted,
            ("ago",),
        )
        cur.expect_word(("ago",), "'ago' (as in 'scheduler started 10 minutes ago')")
        return cond
    how = cur.peek_word("more", "less", "run")
    if how == "run":
        cur.next()
        cur.expect_word(("over",), "'over' (as in 'scheduler has run over 10 minutes')")
        return cur.duration(
            "a duration such as '10 minutes'", lambda text: SchedulerStarted(text, over=True)
        )
    relation = ""
    if how is not None:
        cur.next()
        cur.expect_word(("than",), f"'than' (as in 'scheduler has {how} than 3 cycles')")
        relation = f"{how} than"
    tok = cur.next()
    if tok.kind != "word" or not tok.value.isdigit():
        raise cur.fail(
            f"expected a number of cycles, found {cur.describe(tok)}",
            tok,
            None if how else "scheduler has run over",
        )
    cur.expect_word(("cycles", "cycle"), "'cycles'")
    return SchedulerCycles(relation, int(tok.value))


def _read_retry(cur: Cursor, first: Token) -> BaseCondition:
    """``retry`` (forever) or ``retry 3 times`` (Rocketry's ``retry(3)``)."""
    tok = cur.peek()
    if tok.kind != "word" or not tok.value.isdigit():
        if tok.kind in ("word", "str"):
            raise cur.fail(
                f"unexpected {cur.describe(tok)}; expected a number of times "
                "(as in 'retry 3 times'), an operator or the end",
                tok,
            )
        return Retry()
    cur.next()
    cur.expect_word(("times", "time"), "'times' (as in 'retry 3 times')")
    return Retry(int(tok.value))


def _constant(value: BaseCondition) -> PhraseReader:
    return lambda cur, first: value


DEFAULT_GRAMMAR = Grammar(
    {
        "true": _constant(true),
        "false": _constant(false),
        "always": _read_always,
        "never": _constant(false),
        **{adverb: _read_period for adverb in _UNIT_BY_ADVERB},
        "every": _read_every,
        "run": _read_run,
        "cron": _read_cron,
        "time": _read_time_of,
        "has": _read_has,
        "is": _read_is,
        "task": _read_task,
        "while": _read_while,
        "after": _read_after,
        "env": _read_env,
        "param": _read_param,
        "scheduler": _read_scheduler,
        "retry": _read_retry,
    },
    [
        "always true",
        "time of day",
        "time of week",
        "time of month",
        "time of hour",
        "time of minute",
        "time of year",
        "has succeeded",
        "has failed",
        "has finished",
        "has succeeded past",
        "is running",
        "after task",
        "env 'prod'",
        "param 'x' exists",
        "scheduler has more than",
        "scheduler started",
        "scheduler has run over",
        "retry 3 times",
    ],
)

# window_between/after/before are part of this module's vocabulary for the fluent API.
_ = (window_between, window_after, window_before)
