"""The magics through an in-process IPython shell (no kernel)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from redengine_nb import RedEngine, TaskExistsError
from redengine_nb.args import TerminationFlag
from redengine_nb.notebook import get_app, kernel
from redengine_nb.notebook.magics import (
    TasksTable,
    empty_task_cell,
    register_cell_task,
    tasks_table,
)
from redengine_nb.testing import FakeClock


def scheduler_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "redengine_nb scheduler")


@pytest.fixture
def ip(monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("REDENGINE_NB_LOGS", ":memory:")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "redengine_nb")
    try:
        yield shell
    finally:
        kernel.deactivate(shell, forget=True)
        shell.extension_manager.loaded.discard("redengine_nb")
        shell.parent_header = {}


@pytest.fixture
def stopped(ip: InteractiveShell) -> InteractiveShell:
    """The extension loaded, its scheduler stopped: nothing runs behind the test's back."""
    ip.run_line_magic("scheduler", "stop")
    return ip


def cell(
    ip: InteractiveShell, line: str, body: str = "x = 1\n", cell_id: str | None = None
) -> None:
    ip.parent_header = {"metadata": {"cellId": cell_id}} if cell_id else {}
    ip.run_cell_magic("task", line, body)


def names() -> list[str]:
    return sorted(t.name for t in get_app().session.tasks)


# -- loading ------------------------------------------------------------------------------
def test_load_starts_one_scheduler_with_the_kernel_config(ip: InteractiveShell) -> None:
    app = get_app()
    assert app.is_running
    assert scheduler_threads() == 1
    assert app.config.task_execution == "thread"
    assert app.config.task_pre_exist == "replace"
    assert app.config.restarting == "recall"


def test_reload_and_unload_never_leave_two_threads(ip: InteractiveShell) -> None:
    cell(ip, "every 5 minutes --name keep --disabled")
    app = get_app()
    ip.run_line_magic("reload_ext", "redengine_nb")
    ip.run_line_magic("reload_ext", "redengine_nb")
    assert scheduler_threads() == 1
    assert get_app() is app and "keep" in app.session  # tasks survive a reload
    assert ip.input_transformers_cleanup.count(empty_task_cell) == 1
    ip.run_line_magic("unload_ext", "redengine_nb")
    assert scheduler_threads() == 0
    assert empty_task_cell not in ip.input_transformers_cleanup
    with pytest.raises(RuntimeError, match="load_ext redengine_nb"):
        get_app()
    ip.run_line_magic("load_ext", "redengine_nb")
    assert scheduler_threads() == 1


def test_magics_are_listed_by_lsmagic(ip: InteractiveShell) -> None:
    magics = ip.magics_manager.lsmagic()
    assert {"task", "tasks", "scheduler"} <= set(magics["line"])
    assert "task" in magics["cell"]


# -- %%task -------------------------------------------------------------------------------
def test_cell_prints_what_was_registered_and_when_due(
    stopped: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(stopped, "every 5 minutes --name fetch")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("registered task 'fetch' (every 5 minutes, thread); ")
    assert "due" in out[0]
    task = get_app().session["fetch"]
    assert task.kind == "code"


def test_registration_says_how_hourly_times_are_read(
    stopped: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    # Red Engine reads the times of an hourly window as minutes of the hour: the line that
    # confirms the registration says so, with the phrase for hours of the day.
    cell(stopped, "hourly between 09:00 and 17:00 --name sync")
    line = capsys.readouterr().out.strip()
    assert "minute" in line
    assert "hourly & time of day between 09:00 and 17:00" in line
    cell(stopped, "daily --name plain")
    assert "[" not in capsys.readouterr().out  # nothing to explain for a daily task


def test_options_reach_the_task(stopped: InteractiveShell) -> None:
    cell(
        stopped,
        "daily between 08:00 and 10:00 --name opts --execution process "
        "--timeout '30 seconds' --priority 3 --disabled",
    )
    task = get_app().session["opts"]
    assert task.execution == "process"
    assert task.timeout == 30
    assert task.priority == 3
    assert task.disabled
    assert str(task.start_cond) == "daily between 08:00 and 10:00"


def test_the_line_is_not_variable_expanded(stopped: InteractiveShell) -> None:
    stopped.user_ns["x"] = "EXPANDED"
    cell(stopped, "after task 'a{x}$x' --name 'b{x}$x' --disabled")
    assert "b{x}$x" in get_app().session
    assert "a{x}$x" in str(get_app().session["b{x}$x"].start_cond)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("evry 5 minutes --name bad", "evry"),
        ("every 5 minutes --name bad --priority high", "--priority"),
        ("every 5 minutes --name bad --execution cloud", "--execution"),
        ("every 5 minutes --name bad --frobnicate", "frobnicate"),
        ("--name bad", "needs a condition"),
    ],
)
def test_a_bad_line_is_a_usage_error_and_registers_nothing(
    stopped: InteractiveShell, line: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        cell(stopped, line)
    assert "bad" not in get_app().session


def test_an_empty_cell_is_an_error(stopped: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="no code"):
        cell(stopped, "daily --name empty", body="\n  \n")


def test_help_prints_usage_and_registers_nothing(
    stopped: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(stopped, "--help")
    assert "usage: %%task CONDITION" in capsys.readouterr().out
    assert names() == []


@pytest.mark.parametrize("source", ["%%task --help", "%%task -h\n", "%%task daily --help"])
def test_help_alone_in_a_cell_prints_usage(
    stopped: InteractiveShell, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    """A cell that is only ``%%task --help`` (IPython refuses an empty cell body itself)."""
    result = stopped.run_cell(source)
    assert result.success, result.error_before_exec or result.error_in_exec
    assert "usage: %%task CONDITION" in capsys.readouterr().out
    assert names() == []


def test_a_task_cell_with_no_body_says_so(
    stopped: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = stopped.run_cell("%%task daily --name nothing")
    assert not result.success
    assert "%%task: the cell has no code to run" in str(result.error_in_exec)
    assert names() == []


def test_rerunning_a_named_cell_updates_its_task(stopped: InteractiveShell) -> None:
    cell(stopped, "every 5 minutes --name same", body="a = 1\n")
    cell(stopped, "every 10 minutes --name same", body="a = 2\n")
    assert names() == ["same"]
    assert str(get_app().session["same"].start_cond) == "every 10 minutes"


def test_rerunning_a_cell_without_name_updates_its_task(stopped: InteractiveShell) -> None:
    cell(stopped, "every 5 minutes", body="y = 1\n")
    cell(stopped, "every 6 minutes", body="y = 1\n")
    assert len(names()) == 1
    (task,) = get_app().session.tasks
    assert str(task.start_cond) == "every 6 minutes"


def test_the_cell_id_follows_an_edited_cell(stopped: InteractiveShell) -> None:
    cell(stopped, "every 5 minutes", body="# old name\nz = 1\n", cell_id="c0ffee-1")
    assert names() == ["old_name"]
    cell(stopped, "every 5 minutes", body="# new name\nz = 2\n", cell_id="c0ffee-1")
    assert names() == ["new_name"]
    cell(stopped, "every 5 minutes", body="z = 3\n", cell_id="c0ffee-1")
    assert names() == ["cell-c0ffee-1"]


def test_a_bad_rerun_keeps_the_old_task(stopped: InteractiveShell) -> None:
    cell(stopped, "every 5 minutes --name keep")
    with pytest.raises(UsageError):
        cell(stopped, "every five minutes --name keep")
    assert str(get_app().session["keep"].start_cond) == "every 5 minutes"


def test_thread_runs_share_the_notebook_namespace(ip: InteractiveShell) -> None:
    done = threading.Event()
    get_app().session.subscribe(
        lambda event, task: done.set() if (event, task) == ("run_ended", "setter") else None
    )
    ip.user_ns["seed"] = 20
    cell(ip, "every 1 hour --name setter", body="from_task = seed + 1\nprint('hi')\n")
    assert done.wait(30), "the task did not run"
    assert ip.user_ns["from_task"] == 21


@pytest.mark.slow  # starts an interpreter
def test_process_execution_runs_the_cell_in_a_fresh_process(
    stopped: InteractiveShell, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    cell(
        stopped,
        "false --name elsewhere --execution process",
        body=f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n",
    )
    session = get_app().session
    stopped.run_line_magic("task", "run elsewhere")
    assert session.tick() == ["elsewhere"]
    assert session.wait_idle(60), "the process run did not end"
    session.tick()
    log = stopped.run_line_magic("task", "log elsewhere")
    assert list(log["action"]) == ["success"], log.to_dict("records")
    assert int(pid_file.read_text()) != os.getpid()


# -- register_cell_task without IPython --------------------------------------------------
def test_register_cell_task_is_usable_headless() -> None:
    app = RedEngine(logs=":memory:", task_pre_exist="raise")
    ns: dict[str, Any] = {}
    first = register_cell_task(app, "daily --name job", "a = 1", cell_id="id1", namespace=ns)
    again = register_cell_task(app, "hourly --name job", "a = 2", cell_id="id1", namespace=ns)
    assert first.name == again.name == "job"
    assert str(app.session["job"].start_cond) == "hourly"
    with pytest.raises(TaskExistsError):
        register_cell_task(app, "daily --name job", "b = 1", cell_id="other", namespace=ns)


# -- line magics -------------------------------------------------------------------------
def run_and_wait(ip: InteractiveShell, name: str) -> None:
    """``%task run NAME`` on the running scheduler, waiting (guarded) for the run to end."""
    done = threading.Event()
    unsubscribe = get_app().session.subscribe(
        lambda event, task: done.set() if (event, task) == ("run_ended", name) else None
    )
    try:
        ip.run_line_magic("task", f"run {name}")
        assert done.wait(30), f"{name} did not run"
    finally:
        unsubscribe()


def test_task_actions(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    stopped = ip
    cell(ip, "false --name t1")  # never due by itself
    task = get_app().session["t1"]
    stopped.run_line_magic("task", "disable t1")
    assert task.disabled
    stopped.run_line_magic("task", "enable t1")
    assert not task.disabled
    run_and_wait(ip, "t1")
    log = stopped.run_line_magic("task", "log t1")
    assert list(log["action"]) == ["success"]
    assert {"action", "runtime", "output", "traceback"} <= set(log.columns)
    # One word for a run's outcome: `action`, as in get_task_log() (issue 18.2).
    full = get_app().session.get_task_log(task="t1")
    assert set(log.columns) - {"traceback", "scheduler"} <= set(full.columns)
    # Which scheduler ran it: this kernel's, as host:pid (issue 16).
    assert list(log["scheduler"]) == [f"{socket.gethostname()}:{os.getpid()}"]
    assert "status" not in log.columns
    stopped.run_line_magic("task", "delete t1")
    assert "t1" not in get_app().session
    out = capsys.readouterr().out
    assert "disabled 't1'" in out and "deleted 't1'" in out


def test_task_log_shows_output_and_traceback(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(ip, "false --name loud", body="print('LOUD')\nraise KeyError('oops')\n")
    run_and_wait(ip, "loud")
    capsys.readouterr()
    ip.run_line_magic("task", "log loud --verbose")
    out = capsys.readouterr().out
    assert "fail" in out and "LOUD" in out and "KeyError: 'oops'" in out


def test_task_terminate_stops_a_running_thread_run(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    app = get_app()
    started = threading.Event()
    ended = threading.Event()
    app.session.subscribe(
        lambda event, task: ended.set() if (event, task) == ("run_ended", "waiter") else None
    )

    @app.task("false", name="waiter", execution="thread")
    def waiter(flag: threading.Event = TerminationFlag()) -> None:
        started.set()
        flag.wait(60)  # returns early only when terminated

    ip.run_line_magic("task", "run waiter")
    assert started.wait(30), "waiter did not start"
    capsys.readouterr()
    ip.run_line_magic("task", "terminate waiter")
    assert "asked 'waiter' to terminate" in capsys.readouterr().out
    assert ended.wait(30), "waiter did not stop when terminated"
    log = ip.run_line_magic("task", "log waiter")
    assert list(log["action"]) == ["terminate"]


def test_unknown_task_names_close_matches(stopped: InteractiveShell) -> None:
    cell(stopped, "every 5 minutes --name fetch_prices")
    with pytest.raises(UsageError, match="fetch_prices"):
        stopped.run_line_magic("task", "disable fetch_price")
    with pytest.raises(UsageError, match="unknown action"):
        stopped.run_line_magic("task", "explode fetch_prices")
    with pytest.raises(UsageError, match="which task"):
        stopped.run_line_magic("task", "run")


def test_tasks_is_a_table_for_people(stopped: InteractiveShell) -> None:
    cell(stopped, "every 5 minutes --name a1")
    table = stopped.run_line_magic("tasks", "")
    assert isinstance(table, TasksTable)
    assert list(table.frame["task"]) == ["a1"]
    assert "background-color: #8c959f" in table._repr_html_()  # the "new" badge colour
    with pytest.raises(UsageError):
        stopped.run_line_magic("tasks", "extra")


def test_tasks_table_texts() -> None:
    clock = FakeClock("2024-03-10 09:00", tz="Europe/Helsinki")
    app = RedEngine(config={"task_execution": "main"}, logs=":memory:", clock=clock)
    app.task("every 10 minutes", name="fetch", code="print('hi')")
    app.task("true", name="boom", code="1/0")
    app.task("after task 'fetch'", name="after", code="pass", disabled=True)
    app.session.tick()
    app.session.wait_idle(10)
    clock.advance("6 minutes 30 seconds")
    frame = tasks_table(app).frame
    rows = {r["task"]: r for r in frame.to_dict("records")}
    assert rows["fetch"]["status"] == "success"
    assert rows["fetch"]["last run"] == "09:00:00 (6 min ago)"
    assert rows["fetch"]["next due"] == "09:10:00 (in 3 min)"
    assert rows["boom"]["status"] == "fail" and rows["boom"]["fails"] == "1"
    assert rows["after"]["status"] == "disabled"
    # Empty cells are blank: no None, NaT or NaN anywhere.
    assert rows["after"]["last run"] == "" and rows["after"]["next due"] == ""
    assert rows["fetch"]["fails"] == ""
    text = repr(tasks_table(app))
    assert "None" not in text and "NaT" not in text and "nan" not in text
    styled = tasks_table(app)._repr_html_()
    assert "#cf222e" in styled and "#1a7f37" in styled  # fail and success colours
    app.runlog.close()


def test_a_condition_on_a_missing_task_warns(
    stopped: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(stopped, "after task 'nope' --name waiter")
    captured = capsys.readouterr()
    assert "registered task 'waiter'" in captured.out
    assert "waits for 'nope', which no task of this session is called" in captured.err
    stopped.run_line_magic("scheduler", "start")
    assert "waits for 'nope'" in capsys.readouterr().err  # again when the scheduler starts
    stopped.run_line_magic("scheduler", "stop")
    cell(stopped, "every 1 hour --name nope")
    cell(stopped, "after task 'nope' --name waiter")
    assert capsys.readouterr().err == ""


def test_task_log_of_a_task_only_in_the_log(
    stopped: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    app = get_app()
    app.task("true", name="old", code="print('from before the restart')")
    app.session.tick()
    app.session.wait_idle(10)
    app.session.delete_task("old")  # as after a kernel restart: history, no task
    frame = stopped.run_line_magic("task", "log old")
    assert list(frame["action"]) == ["success"]
    assert frame["output"][0] == "from before the restart\n"
    with pytest.raises(UsageError, match="nope"):
        stopped.run_line_magic("task", "log nope")


@pytest.mark.parametrize(
    ("magic", "text"),
    [
        ("task", "usage: %task ACTION NAME"),
        ("tasks", "usage: %tasks"),
        ("scheduler", "usage: %scheduler"),
    ],
)
def test_every_line_magic_has_help(
    stopped: InteractiveShell, capsys: pytest.CaptureFixture[str], magic: str, text: str
) -> None:
    stopped.run_line_magic(magic, "--help")
    assert text in capsys.readouterr().out


def test_scheduler_start_stop_status(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic("scheduler", "stop")
    assert not get_app().is_running
    ip.run_line_magic("scheduler", "status")
    assert "scheduler stopped" in capsys.readouterr().out
    ip.run_line_magic("scheduler", "start")
    assert get_app().is_running and scheduler_threads() == 1
    ip.run_line_magic("scheduler", "restart")
    assert get_app().is_running and scheduler_threads() == 1
    with pytest.raises(UsageError, match="unknown action"):
        ip.run_line_magic("scheduler", "explode")


def test_a_cell_tasks_traceback_shows_its_lines_not_the_packages(
    stopped: InteractiveShell,
) -> None:
    cell(stopped, "true --name boom", "x = 1\ndef f():\n    raise ValueError('boom')\nf()\n")
    app = get_app()
    app.session.tick()
    app.session.wait_idle(10)
    (run,) = app.runlog.records(task="boom")
    assert run.exc_text is not None
    assert 'File "<task boom>", line 3, in f' in run.exc_text
    assert "raise ValueError('boom')" in run.exc_text  # the source line of the cell
    assert "redengine_nb" not in run.exc_text


def test_display_text_names_rich_kinds_without_a_useless_repr() -> None:
    from redengine_nb.notebook.display import CapturedDisplay

    html = CapturedDisplay(
        {"text/html": "<b>x</b>", "text/plain": "<IPython.core.display.HTML object>"}
    )
    assert html.text == "[display: text/html]"
    table = CapturedDisplay({"text/html": "<table/>", "text/plain": "   a\n0  1"})
    assert table.text == "[display: text/html]\n   a\n0  1"
    assert CapturedDisplay({"text/plain": "42"}).text == "42"


def test_the_kernel_finds_its_notebooks_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDENGINE_NB_LOGS", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "sales.ipynb"))
    assert kernel.choose_log() == (str(tmp_path / "sales.redengine_nb.db"), "", "")
    monkeypatch.setenv("JPY_SESSION_NAME", "reports/sales.ipynb")  # from the server's root
    monkeypatch.chdir(tmp_path)
    assert kernel.notebook_path() == tmp_path / "sales.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", "")
    logs, note, printed = kernel.choose_log()
    assert logs is None and "./redengine_nb.db" in printed and "this session's tasks" in note
