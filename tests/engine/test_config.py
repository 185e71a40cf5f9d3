from __future__ import annotations

import os

import pytest

from redengine_nb import ConfigError, RedEngine
from redengine_nb.config import Config


def test_defaults_are_red_engines() -> None:
    config = Config()
    assert config.task_execution == "process"
    assert config.task_pre_exist == "raise"
    assert config.force_status_from_logs is True
    assert config.silence_task_prerun is False
    assert config.silence_cond_check is False
    assert config.max_process_count == os.cpu_count()
    assert config.restarting == "replace"
    assert config.timeout is None
    assert config.instant_shutdown is False


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError, match=r"task_exection.*did you mean 'task_execution'"):
        Config({"task_exection": "thread"})


def test_bad_value_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="'process', 'thread', 'main'"):
        Config(task_execution="fiber")
    with pytest.raises(ConfigError, match="integer"):
        Config(max_process_count=0)
    with pytest.raises(ConfigError, match="True, False"):
        Config(silence_cond_check="yes")


def test_assignment_is_validated(clock) -> None:
    app = RedEngine(logs=":memory:", clock=clock, task_execution="thread")
    app.config.restarting = "recall"
    assert app.config.restarting == "recall"
    with pytest.raises(ConfigError, match="restarting"):
        app.config.restarting = "reboot"
    with pytest.raises(ConfigError, match="did you mean 'timeout'"):
        app.config.timout = 5
    app.config.timeout = "1 minute 30 seconds"
    assert app.config.timeout == 90.0


def test_kernel_session_refuses_process_ending_restarts() -> None:
    config = Config(in_kernel=True)
    assert config.restarting == "recall"
    with pytest.raises(ConfigError, match="kernel"):
        config.restarting = "replace"
    with pytest.raises(ConfigError, match="kernel"):
        Config(in_kernel=True, restarting="fresh")


def test_shut_cond_text_is_parsed_and_checked(clock) -> None:
    app = RedEngine(logs=":memory:", clock=clock, shut_cond="daily")
    assert str(app.config.shut_cond) == "daily"
    with pytest.raises(ConfigError, match="shut_cond"):
        app.config.shut_cond = "dayly"


def test_bad_shut_cond_in_the_constructor_names_the_key(clock) -> None:
    with pytest.raises(ConfigError, match="shut_cond") as info:
        RedEngine(logs=":memory:", clock=clock, shut_cond="dialy")
    assert "did you mean 'daily'" in str(info.value)


def test_config_as_keywords_and_dict(clock) -> None:
    app = RedEngine(
        {"task_execution": "main"}, logs=":memory:", clock=clock, silence_task_prerun=True
    )
    assert app.config.task_execution == "main"
    assert app.config.silence_task_prerun is True
    assert dict(app.config)["task_execution"] == "main"
