"""Every error a user of redengine_nb can meet, in one place.

All of them derive from :class:`RedEngineError`; the ones about bad input are also
``ValueError`` so that generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "CommandFailed",
    "ConditionParseError",
    "ConfigError",
    "RedEngineError",
    "RunLogError",
    "SchedulerError",
    "TaskExistsError",
    "TaskInaction",
    "TaskSetupError",
]


class RedEngineError(Exception):
    """Base class of the errors raised by redengine_nb."""


class ConfigError(RedEngineError, ValueError):
    """An unknown configuration key or a value that is not allowed."""


class ConditionParseError(RedEngineError, ValueError):
    """Condition text that does not parse.

    The message quotes the text, marks the column with a caret and, where one is close,
    suggests the phrase that was probably meant.
    """

    def __init__(
        self,
        message: str,
        text: str = "",
        position: int | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.reason = message
        self.text = text
        self.position = position
        self.suggestion = suggestion
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [self.reason]
        if self.text or self.position is not None:
            shown, caret = _window(self.text, self.position)
            lines.append(f"  in condition: {shown!r}")
            if caret is not None:
                # The caret sits under the offending character of the quoted text; the
                # quote adds one column, repr escapes are rare enough to ignore here.
                lines.append("  " + " " * len("in condition: '") + " " * caret + "^")
        if self.suggestion:
            lines.append(f"  did you mean {self.suggestion!r}?")
        return "\n".join(lines)


#: How much of a long condition an error quotes on each side of the error.
_QUOTE_REACH = 60


def _window(text: str, position: int | None) -> tuple[str, int | None]:
    """The part of ``text`` an error quotes (all of it when short; else ``_QUOTE_REACH``
    characters either side of ``position``, cut ends marked ``...``), and the caret's
    column in it."""
    if len(text) <= 2 * _QUOTE_REACH + 20:
        return text, position
    at = 0 if position is None else max(0, min(position, len(text)))
    lo, hi = max(0, at - _QUOTE_REACH), min(len(text), at + _QUOTE_REACH)
    head = "..." if lo > 0 else ""
    tail = "..." if hi < len(text) else ""
    caret = None if position is None else len(head) + at - lo
    return head + text[lo:hi] + tail, caret


class TaskExistsError(RedEngineError, ValueError):
    """A task with that name exists and ``task_pre_exist`` is ``'raise'``."""


class TaskSetupError(RedEngineError):
    """A task could not be started: bad parameters, a missing file, an unpicklable function."""


class RunLogError(RedEngineError):
    """The run log cannot be opened, read or written; the message names the file."""


class SchedulerError(RedEngineError):
    """The scheduler stopped because of an error it was told not to silence."""


class CommandFailed(RedEngineError):
    """A command task's command exited with a non-zero status (the message has the
    stderr tail); its run is logged ``fail``."""


class TaskInaction(Exception):  # the public name comes from Red Engine
    """Raise inside a task to say it had nothing to do; the run is logged ``inaction``."""
