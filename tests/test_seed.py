"""The seed (``shared/seed-advanced-guide.txt``) runs as written, with imports from
``redengine_nb``; each effect is checked through the run log."""

from __future__ import annotations

import os

import pytest

from redengine_nb import RedEngine, TaskSetupError
from redengine_nb.args import Session
from redengine_nb.testing import FakeClock

SEED_CONFIG = {
    "task_execution": "process",
    "task_pre_exist": "raise",
    "force_status_from_logs": True,
    "silence_task_prerun": False,
    "silence_cond_check": False,
    "max_process_count": 5,
    "restarting": "replace",
}


def actions(app: RedEngine, task: str) -> list[str]:
    return list(app.session.get_task_log(task=task)["action"])


def test_config_as_in_the_seed() -> None:
    app = RedEngine(config=SEED_CONFIG, logs=":memory:")
    for key, value in SEED_CONFIG.items():
        assert app.config[key] == value
    defaults = RedEngine(logs=":memory:").config
    for key, value in SEED_CONFIG.items():
        if key != "max_process_count":
            assert defaults[key] == value  # "These are the default options."
    assert defaults.max_process_count == os.cpu_count()


def test_the_four_ways_to_create_tasks() -> None:
    app = RedEngine(
        logs=":memory:",
        clock=FakeClock("2024-03-11 09:00"),
        task_execution="thread",
        silence_task_prerun=True,
    )

    def do_things() -> None:
        pass

    def run_things() -> None:
        print("running things")

    app.task("daily", func=run_things)
    app.task("daily", func_name="main", path="path/to/")
    app.task("daily", command='echo "Hello world"')
    # SPEC §2: a CodeTask needs a name; without one the error says so.
    with pytest.raises(TaskSetupError, match="needs a name"):
        app.task("daily", code='print("Hello world")')
    app.task("daily", code='print("Hello world")', name="hello")
    app.session.tick()
    assert app.session.wait_idle(10)
    assert actions(app, "run_things") == ["success"]
    assert actions(app, 'echo "Hello world"') == ["success"]
    assert "Hello world" in app.session.get_task_log(task="hello")["output"][0]
    # path/to/ does not exist here: a clear, logged failure (silence_task_prerun=True)
    (exc_text,) = app.session.get_task_log(task="path/to/:main")["exc_text"]
    assert "does not exist" in exc_text


def test_do_shutdown() -> None:
    app = RedEngine(logs=":memory:")

    @app.task("every 20 hours", execution="thread")
    def do_shutdown(session=Session()):
        session.shut_down()

    app.run()  # returns because the task shut it down
    assert actions(app, "do_shutdown") == ["success"]


def test_do_restart_and_do_modify_tasks(wait_for) -> None:
    # restarting='recall' so that the restart stays inside this test process; the other
    # modes are tested with a headless app in a subprocess (tests/engine/test_restart.py).
    app = RedEngine(logs=":memory:", restarting="recall")
    events: list[str] = []
    app.session.subscribe(lambda e, t: events.append(e))

    @app.task("every 20 hours", execution="thread")
    def do_restart(session=Session()):
        session.restart()

    @app.task("every 10 minutes", execution="thread")
    def do_modify_tasks(session=Session()):
        task = session["do_restart"]
        task.force_run = True

        for task in session.tasks:
            task.disable = True

    app.start()
    try:
        wait_for(lambda: len(actions(app, "do_restart")) >= 2)
        wait_for(lambda: events.count("scheduler_started") >= 2)
        assert actions(app, "do_modify_tasks") == ["success"]
        assert all(task.disabled for task in app.session.tasks)
        assert app.is_running  # recall: the scheduler came back in this process
    finally:
        assert app.shut_down(timeout=10)
