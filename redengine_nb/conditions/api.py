"""The Python spelling of the condition language: ready-made objects and small factories.

``daily.between('08:00', '10:00')``, ``daily.at('14:30')``, ``weekly.on('Monday')``,
``every('10 minutes')``, ``cron('*/15 * * * *')``, ``after_success('fetch')``,
``succeeded(task='x').today``, ``running('x')``. Each returns the same object the parser
builds from the equivalent text, so ``str()`` of it parses back to an equal condition.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from .base import BaseCondition
from .periods import DAY, HOUR, MINUTE, MONTH, SECOND, WEEK, YEAR, TimeWindow, Unit
from .status import After, HasAction, Retry, Running
from .time import Cron, Every, PeriodCondition, TimeCondition

__all__ = [
    "after_all_success",
    "after_any_success",
    "after_fail",
    "after_finish",
    "after_success",
    "cron",
    "daily",
    "every",
    "failed",
    "finished",
    "hourly",
    "minutely",
    "monthly",
    "retry",
    "running",
    "secondly",
    "started",
    "succeeded",
    "time_of_day",
    "time_of_hour",
    "time_of_minute",
    "time_of_month",
    "time_of_week",
    "time_of_year",
    "weekly",
    "yearly",
]

secondly = PeriodCondition(SECOND)
minutely = PeriodCondition(MINUTE)
hourly = PeriodCondition(HOUR)
daily = PeriodCondition(DAY)
weekly = PeriodCondition(WEEK)
monthly = PeriodCondition(MONTH)
yearly = PeriodCondition(YEAR)

time_of_minute = TimeCondition(TimeWindow(MINUTE))
time_of_hour = TimeCondition(TimeWindow(HOUR))
time_of_day = TimeCondition(TimeWindow(DAY))
time_of_week = TimeCondition(TimeWindow(WEEK))
time_of_month = TimeCondition(TimeWindow(MONTH))
time_of_year = TimeCondition(TimeWindow(YEAR))

#: ``retry`` (forever) and ``retry(3)`` (``retry 3 times``), as in Rocketry.
retry = Retry()


def every(period: str | float | timedelta) -> Every:
    """``every 10 minutes``: elapsed time since the task last started."""
    return Every(period)


def cron(expression: str) -> Cron:
    """``cron */15 * * * *`` (five fields, evaluated with croniter)."""
    return Cron(expression)


def after_success(task: str) -> After:
    return After(task, "succeeded")


def after_fail(task: str) -> After:
    return After(task, "failed")


def after_finish(task: str) -> After:
    return After(task, "finished")


def _names(tasks: tuple[str | Iterable[str], ...]) -> list[str]:
    out: list[str] = []
    for item in tasks:
        out.extend([item] if isinstance(item, str) else item)
    return out


def after_all_success(*tasks: str | Iterable[str]) -> After:
    return After(_names(tasks), "succeeded")


def after_any_success(*tasks: str | Iterable[str]) -> After:
    return After(_names(tasks), "succeeded", any=True)


class StatusPhrase(HasAction):
    """``has <verb>`` with the span properties ``.today``, ``.this_hour`` ... ``.in_past()``."""

    __slots__ = ()

    def _span(self, unit: Unit) -> HasAction:
        return HasAction(self.verb, self.task, TimeWindow(unit))

    @property
    def this_minute(self) -> HasAction:
        return self._span(MINUTE)

    @property
    def this_hour(self) -> HasAction:
        return self._span(HOUR)

    @property
    def today(self) -> HasAction:
        return self._span(DAY)

    @property
    def this_week(self) -> HasAction:
        return self._span(WEEK)

    @property
    def this_month(self) -> HasAction:
        return self._span(MONTH)


def succeeded(task: str | None = None) -> StatusPhrase:
    return StatusPhrase("succeeded", task)


def failed(task: str | None = None) -> StatusPhrase:
    return StatusPhrase("failed", task)


def finished(task: str | None = None) -> StatusPhrase:
    return StatusPhrase("finished", task)


def started(task: str | None = None) -> StatusPhrase:
    return StatusPhrase("started", task)


def running(task: str | None = None) -> BaseCondition:
    return Running(task)
