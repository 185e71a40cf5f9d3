"""The condition language: objects, the Python API, and the parser.

``parse("daily between 08:00 and 10:00 & after task 'fetch'")`` or, equivalently,
``daily.between('08:00', '10:00') & after_success('fetch')``.
"""

from __future__ import annotations

from .api import (
    after_all_success,
    after_any_success,
    after_fail,
    after_finish,
    after_success,
    cron,
    daily,
    every,
    failed,
    finished,
    hourly,
    minutely,
    monthly,
    running,
    secondly,
    started,
    succeeded,
    time_of_day,
    time_of_hour,
    time_of_minute,
    time_of_month,
    time_of_week,
    weekly,
)
from .base import All, Any, BaseCondition, Context, Not, false, true
from .parser import DEFAULT_GRAMMAR, CustomCondition, Grammar, parse
from .scheduler import EnvIs, ParamIs, SchedulerCycles, SchedulerStarted
from .time import explain

__all__ = [
    "DEFAULT_GRAMMAR",
    "All",
    "Any",
    "BaseCondition",
    "Context",
    "CustomCondition",
    "EnvIs",
    "Grammar",
    "Not",
    "ParamIs",
    "SchedulerCycles",
    "SchedulerStarted",
    "after_all_success",
    "after_any_success",
    "after_fail",
    "after_finish",
    "after_success",
    "cron",
    "daily",
    "every",
    "explain",
    "failed",
    "false",
    "finished",
    "hourly",
    "minutely",
    "monthly",
    "parse",
    "running",
    "secondly",
    "started",
    "succeeded",
    "time_of_day",
    "time_of_hour",
    "time_of_minute",
    "time_of_month",
    "time_of_week",
    "true",
    "weekly",
]
