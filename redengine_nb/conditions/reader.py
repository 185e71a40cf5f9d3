"""The reading machinery of the condition language: the tokenizer, the phrase table
(:class:`Grammar`, custom phrases) and the recursive descent over ``&``, ``|``, ``~`` and
parentheses (:class:`Cursor`). The built-in phrases and ``parse`` are in ``parser.py``,
which re-exports the public names of this module."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any as _Any

from ..errors import ConditionParseError
from ..timetext import DurationError
from .base import All, Any, BaseCondition, Not
from .periods import DAY, HOUR, MONTH, WEEK, YEAR, Unit
from .points import parse_point

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
        from .parser import parse  # the built-in phrases, which import this module

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
