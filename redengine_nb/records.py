"""Value types shared by the run log, the conditions and the session."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["FINISHED", "Action", "RunRecord"]


class Action(enum.StrEnum):
    """What a run record says happened. ``RUN`` is a run that has started and not ended."""

    RUN = "run"
    SUCCESS = "success"
    FAIL = "fail"
    TERMINATE = "terminate"
    INACTION = "inaction"
    CRASH = "crash"

    @classmethod
    def parse(cls, value: str | Action) -> Action:
        if value.__class__ is cls:  # the common case, on every run-log lookup: no Enum call
            return value
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(a.value for a in cls)
            raise ValueError(f"unknown action {value!r}; expected one of {allowed}") from None

    @classmethod
    def final(cls, value: str | Action) -> Action:
        """The action a run ends with: any action but ``RUN``."""
        action = cls.parse(value)
        if action is cls.RUN:
            raise ValueError("a run ends with a final action, not 'run'")
        return action


#: The actions that end a run normally (period conditions such as "daily" count these; "has
#: finished" counts all but an inaction, as Red Engine does).
FINISHED: frozenset[Action] = frozenset(
    {Action.SUCCESS, Action.FAIL, Action.TERMINATE, Action.INACTION}
)


@dataclass(slots=True)
class RunRecord:
    """One run of one task. Times are epoch seconds; ``action`` is ``RUN`` while it lives."""

    run_id: str
    task_name: str
    action: Action
    created: float
    start: float | None = None
    end: float | None = None
    exc_text: str | None = None
    output: str | None = None
    owner: str | None = None

    @property
    def runtime(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    @property
    def time(self) -> float:
        """The instant the record's action refers to: the end of a finished run, else its start."""
        if self.action is not Action.RUN and self.end is not None:
            return self.end
        return self.start if self.start is not None else self.created

    def as_dict(self, tz: ZoneInfo | None = None) -> dict[str, object]:
        def conv(ts: float | None) -> datetime | None:
            return None if ts is None else datetime.fromtimestamp(ts, tz)

        return {
            "task_name": self.task_name,
            "run_id": self.run_id,
            "action": self.action.value,
            "created": conv(self.created),
            "start": conv(self.start),
            "end": conv(self.end),
            "runtime": self.runtime,
            "exc_text": self.exc_text,
            "output": self.output,
        }
