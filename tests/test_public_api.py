"""The public names of each public module, pinned: adding or removing one is a decision
(and a changelog line), not an accident of an import. Internals live in ``_engine``,
``executors``, ``runlog`` and the modules not listed here."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "redengine_nb": [
        "CommandFailed",
        "ConditionParseError",
        "ConfigError",
        "RedEngine",
        "RedEngineError",
        "RunLogError",
        "SchedulerError",
        "TaskExistsError",
        "TaskInaction",
        "TaskSetupError",
        "__version__",
        "load_ipython_extension",
        "panel",
        "unload_ipython_extension",
    ],
    "redengine_nb.app": ["RedEngine"],
    "redengine_nb.args": [
        "Arg",
        "Argument",
        "Private",
        "ResolveContext",
        "Return",
        "Session",
        "Task",
        "TerminationFlag",
    ],
    "redengine_nb.config": ["OPTIONS", "Config"],
    "redengine_nb.errors": [
        "CommandFailed",
        "ConditionParseError",
        "ConfigError",
        "RedEngineError",
        "RunLogError",
        "SchedulerError",
        "TaskExistsError",
        "TaskInaction",
        "TaskSetupError",
    ],
    "redengine_nb.testing": ["FakeClock"],
    "redengine_nb.conditions": [
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
        "true",
        "weekly",
        "yearly",
    ],
    "redengine_nb.notebook": [
        "get_app",
        "load_ipython_extension",
        "panel",
        "set_app",
        "unload_ipython_extension",
    ],
    "redengine_nb.cli": [
        "ServeError",
        "format_run_line",
        "log_status_rows",
        "main",
        "parse_config_pairs",
    ],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_public_names_are_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(PUBLIC[module_name])
    assert len(set(module.__all__)) == len(module.__all__)  # none twice


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_every_public_name_resolves(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{module_name}.{name}"


def test_the_errors_are_one_family() -> None:
    errors = importlib.import_module("redengine_nb.errors")
    base = errors.RedEngineError
    for name in errors.__all__:
        if name == "TaskInaction":  # raised by a task to say so, not an error of ours
            continue
        assert issubclass(getattr(errors, name), base), name
