"""Condition text → condition objects: a tokenizer and a recursive-descent parser over a
:class:`Grammar` table that is passed in.

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

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any as _Any

from ..errors import ConditionParseError
from ..timetext import DurationError
from .base import All, Any, BaseCondition, Not, false, true
from .periods import DAY, HOUR, MINUTE, MONTH, WEEK, YEAR, TimeWindow, Unit
from .scheduler import EnvIs, ParamIs, SchedulerCycles, SchedulerStarted
from .status import AFTER_VERBS, VERBS, After, HasAction, Retry, Running
from .time import (
    UNIT_NAMES,
    WINDOW_UNIT,
    Cron,
    Every,
    PeriodCondition,
    TimeCondition,
    parse_point,
    window_after,
    window_before,
    window_between,
    window_on,
)

__all__ = ["DEFAULT_GRAMMAR", "CustomCondition", "Grammar", "Token", "parse", "tokenize"]

_OPS = "&|~()"
#: How deep '(' and '~' may nest: far beyond any real condition, well inside Python's stack.
MAX_NESTING = 100
_CLOCK_WORD = re.compile(
    r"^\d{1,2}[:.]\d{2}(?::\d{2})?(?:[ap]\.?m\.?)?$|^\d{1,2}[ap]\.?m\.?$", re.I
)
_QUOTES = "'\""
_DAY_WORD = re.compile(r"^\d{1,2}(?:st|nd|rd|th|\.)?$", re.I)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # 'word', 'str', 'op' or 'end'
    value: str
    pos: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Split condition text into words, quoted strings and the operators ``& | ~ ( )``."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in _OPS:
            tokens.append(Token("op", c, i, i + 1))
            i += 1
        elif c in _QUOTES:
            j = i + 1
            chars: list[str] = []
            while True:
                if j >= n:
                    raise ConditionParseError(
                        f"unterminated quote: the name starting here has no closing {c}",
                        text=text,
                        position=i,
                    )
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        chars.append(c)
                        j += 2
                        continue
                    break
                chars.append(text[j])
                j += 1
            tokens.append(Token("str", "".join(chars), i, j + 1))
            i = j + 1
        else:
            j = i
            while (
                j < n and not text[j].isspace() and text[j] not in _OPS and text[j] not in _QUOTES
            ):
                j += 1
            tokens.append(Token("word", text[i:j], i, j))
            i = j
    tokens.append(Token("end", "", n, n))
    return tokens


class CustomCondition(BaseCondition):
    """A phrase added with :meth:`Grammar.add_custom`: met when ``func(**groups)`` is truthy.

    Its function may read anything (a file, a service): the scheduler looks at it again
    every ``OUTSIDE_RECHECK`` seconds as well as after events."""

    __slots__ = ("func", "kwargs", "pattern", "text")

    def __init__(
        self,
        pattern: str | re.Pattern[str],
        func: Callable[..., bool],
        text: str,
        kwargs: dict[str, str] | None = None,
    ) -> None:
        self.pattern = pattern
        self.func = func
        self.text = text
        self.kwargs = dict(kwargs or {})

    def is_met(self, ctx: _Any) -> bool:
        return bool(self.func(**self.kwargs))

    def reads_outside(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.text

    def _key(self) -> tuple[object, ...]:
        return (self.pattern, self.func, self.text)


PhraseReader = Callable[["Cursor", Token], BaseCondition]


class Grammar:
    """The phrase table the parser reads from: built-in phrases by first word, and custom
    phrases. Copy it per app (:meth:`copy`) before adding custom phrases."""

    def __init__(
        self, phrases: dict[str, PhraseReader] | None = None, examples: list[str] | None = None
    ) -> None:
        self.phrases: dict[str, PhraseReader] = dict(phrases or {})
        self.examples: list[str] = list(examples or [])
        self.customs: list[tuple[str | re.Pattern[str], Callable[..., bool]]] = []

    def copy(self) -> Grammar:
        new = Grammar(self.phrases, self.examples)
        new.customs = list(self.customs)
        return new

    def add_phrase(self, keyword: str, reader: PhraseReader, *examples: str) -> None:
        """Add a phrase that starts with ``keyword``; ``reader(cursor, first_token)``."""
        self.phrases[keyword.lower()] = reader
        self.examples.extend(examples or (keyword,))

    def add_custom(self, pattern: str | re.Pattern[str], func: Callable[..., bool]) -> None:
        """A custom phrase: plain text (matched case-insensitively as a whole phrase) or a
        compiled regex whose named groups become keyword arguments of ``func``."""
        if isinstance(pattern, str):
            text = " ".join(pattern.split())
            if not text:
                raise ValueError("a custom condition needs some text")
            pattern = text
        elif not isinstance(pattern, re.Pattern):
            raise TypeError(f"a custom condition is text or a compiled regex, not {pattern!r}")
        self.customs = [(p, f) for p, f in self.customs if p != pattern]
        self.customs.append((pattern, func))

    def suggestions(self) -> list[str]:
        plain = [p for p, _ in self.customs if isinstance(p, str)]
        return [*self.phrases, *self.examples, *plain]

    def parse(self, text: str) -> BaseCondition:
        return parse(text, self)


def _closest(word: str, options: list[str]) -> str | None:
    found = difflib.get_close_matches(word.lower(), options, n=1, cutoff=0.6)
    return found[0] if found else None


class Cursor:
    """The parser's position in the token list, with helpers for phrase readers."""

    def __init__(self, text: str, grammar: Grammar) -> None:
        self.text = text
        self.grammar = grammar
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    # -- moving ----------------------------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def fail(
        self, reason: str, tok: Token | int, suggestion: str | None = None
    ) -> ConditionParseError:
        pos = tok if isinstance(tok, int) else tok.pos
        return ConditionParseError(reason, text=self.text, position=pos, suggestion=suggestion)

    def describe(self, tok: Token) -> str:
        if tok.kind == "end":
            return "the end of the text"
        return repr(self.text[tok.pos : tok.end])

    def peek_word(self, *options: str) -> str | None:
        tok = self.peek()
        if tok.kind == "word" and tok.value.lower() in options:
            return tok.value.lower()
        return None

    def expect_word(self, options: tuple[str, ...], what: str) -> str:
        tok = self.next()
        if tok.kind == "word" and tok.value.lower() in options:
            return tok.value.lower()
        hint = _closest(tok.value, list(options)) if tok.kind == "word" else None
        raise self.fail(f"expected {what}, found {self.describe(tok)}", tok, hint)

    def expect_name(self, what: str = "a task name in quotes") -> str:
        tok = self.next()
        if tok.kind != "str":
            raise self.fail(f"expected {what}, found {self.describe(tok)}", tok)
        if not tok.value:
            raise self.fail("a task name cannot be empty", tok)
        return tok.value

    def words_until_operator(self, what: str, stop: tuple[str, ...] = ()) -> tuple[str, int]:
        """The text of the words up to the next operator, the end or a word in ``stop``
        (as written, so that an error can point into it); and where it starts."""
        start = self.peek()
        end = start.pos
        while self.peek().kind == "word" and self.peek().value.lower() not in stop:
            end = self.next().end
        if end == start.pos:
            raise self.fail(f"expected {what}, found {self.describe(start)}", start)
        return self.text[start.pos : end], start.pos

    def duration(
        self, what: str, make: Callable[[str], BaseCondition], stop: tuple[str, ...] = ()
    ) -> BaseCondition:
        """``make(text)`` of the duration words here; a bad duration is reported at the
        faulty part (the unit of ``5 secnds``)."""
        text, pos = self.words_until_operator(what, stop)
        try:
            return make(text)
        except DurationError as exc:
            raise self.fail(str(exc), pos + exc.offset) from None
        except ValueError as exc:
            raise self.fail(str(exc), pos) from None

    def point(self, unit: Unit, role: str) -> int:
        """A point in ``unit`` (see :func:`~.time.parse_point`); it may span words:
        ``10 am``, ``1 quarter``, ``Tue 10:00``, ``10th 12:30:00``."""
        tok = self.next()
        if tok.kind != "word":
            raise self.fail(f"expected a time, found {self.describe(tok)}", tok)
        end = tok.end
        if (unit is DAY and self.peek_word("am", "pm", "a.m.", "p.m.")) or (
            unit is HOUR and self.peek_word("quarter", "quarters", "q")
        ):
            end = self.next().end
        elif unit is YEAR and self._day_follows():
            end = self.next().end
            if self._clock_follows():
                end = self.next().end
                if self.peek_word("am", "pm", "a.m.", "p.m."):
                    end = self.next().end
        elif unit in (WEEK, MONTH) and self._clock_follows():
            end = self.next().end
            if self.peek_word("am", "pm", "a.m.", "p.m."):
                end = self.next().end
        try:
            return parse_point(unit, self.text[tok.pos : end], role)
        except ValueError as exc:
            raise self.fail(str(exc), tok) from None

    def _day_follows(self) -> bool:
        tok = self.peek()
        return tok.kind == "word" and _DAY_WORD.match(tok.value) is not None

    def _clock_follows(self) -> bool:
        tok = self.peek()
        return tok.kind == "word" and _CLOCK_WORD.match(tok.value) is not None

    # -- expressions -----------------------------------------------------------------
    def expression(self) -> BaseCondition:
        parts = [self.conjunction()]
        while self.peek().kind == "op" and self.peek().value == "|":
            self.next()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Any.of(*parts)

    def conjunction(self) -> BaseCondition:
        parts = [self.unary()]
        while self.peek().kind == "op" and self.peek().value == "&":
            self.next()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else All.of(*parts)

    def unary(self) -> BaseCondition:
        tok = self.peek()
        if tok.kind == "op" and tok.value in "~(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise self.fail(
                    f"the condition nests deeper than {MAX_NESTING} levels of '(' and '~'; "
                    "write it flatter (a & b & c needs no parentheses)",
                    tok,
                )
            try:
                return self._nested(tok)
            finally:
                self.depth -= 1
        return self.phrase()

    def _nested(self, tok: Token) -> BaseCondition:
        self.next()
        if tok.value == "~":
            return Not(self.unary())
        inner = self.expression()
        close = self.next()
        if close.kind != "op" or close.value != ")":
            raise self.fail(
                f"missing ')' to close the '(' at column {tok.pos + 1}; "
                f"found {self.describe(close)}",
                close,
            )
        return inner

    def phrase(self) -> BaseCondition:
        tok = self.peek()
        if tok.kind == "end":
            prev = self.tokens[self.i - 1] if self.i else None
            if prev is None:
                raise self.fail(
                    "empty condition; expected a phrase such as 'daily', "
                    "'every 10 minutes' or \"after task 'x'\"",
                    tok,
                )
            raise self.fail(f"expected a condition after {self.describe(prev)}", tok)
        custom = self._custom(tok)
        if custom is not None:
            return custom
        if tok.kind == "op":
            raise self.fail(f"expected a condition, found {self.describe(tok)}", tok)
        if tok.kind == "str":
            raise self.fail("a quoted name must follow 'task' or 'after task'", tok)
        reader = self.grammar.phrases.get(tok.value.lower())
        if reader is None:
            hint = _closest(tok.value, self.grammar.suggestions())
            raise self.fail(f"unknown phrase {tok.value!r}", tok, hint)
        self.next()
        try:
            return reader(self, tok)
        except ConditionParseError as exc:
            hint = exc.suggestion or self._closest_custom(tok)
            if hint is None or hint == exc.suggestion:
                raise
            raise self.fail(exc.reason, exc.position or 0, hint) from None

    def _closest_custom(self, tok: Token) -> str | None:
        """The custom phrase most like the text here, for a hint when a built-in fails."""
        best: tuple[float, str] | None = None
        for pattern, _ in self.grammar.customs:
            if isinstance(pattern, str):
                here = " ".join(self.text[tok.pos :].split())[: len(pattern) + 2].lower()
                score = difflib.SequenceMatcher(None, here, pattern.lower()).ratio()
                if score >= 0.75 and (best is None or score > best[0]):
                    best = (score, pattern)
        return best[1] if best else None

    def _custom(self, tok: Token) -> BaseCondition | None:
        best: tuple[int, CustomCondition] | None = None
        text, pos = self.text, tok.pos
        for pattern, func in self.grammar.customs:
            if isinstance(pattern, str):
                words = r"\s+".join(re.escape(w) for w in pattern.split())
                found = re.compile(words, re.IGNORECASE).match(text, pos)
                if found is None:
                    continue
                end = found.end()
                cond = CustomCondition(pattern, func, pattern)
            else:
                m = pattern.match(text, pos)
                if m is None or m.end() == pos:
                    continue
                end = m.end()
                cond = CustomCondition(
                    pattern,
                    func,
                    m.group(0),
                    {k: v for k, v in m.groupdict().items() if v is not None},
                )
            if end < len(text) and not (text[end].isspace() or text[end] in _OPS):
                continue
            if best is None or end > best[0]:
                best = (end, cond)
        if best is None:
            return None
        end, cond = best
        while self.peek().kind != "end" and self.peek().pos < end:
            if self.peek().end > end:
                return None
            self.next()
        return cond


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
