"""The notebook layer in a real kernel (jupyter_client ``KernelManager``, as users run it).

One kernel for the module (starting one takes a second or two); the tests run in order
and each leaves the kernel in a known state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from kernel_harness import KernelHarness, message_text

from redengine_nb.records import Action
from redengine_nb.runlog import SQLiteRunLog

pytestmark = pytest.mark.slow

TASK_MARK = "TASK-MARK"


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kernel")


@pytest.fixture(scope="module")
def kernel(kernel_dir: Path) -> Iterator[KernelHarness]:
    # The kernel keeps its runs in a file, so the test process can watch them as they are
    # written, even while the kernel is busy with a cell.
    env = {"REDENGINE_NB_LOGS": str(kernel_dir / "runs.db")}
    harness = KernelHarness(kernel_dir, env=env)
    try:
        reply = harness.run("%load_ext redengine_nb\nfrom redengine_nb.notebook import get_app")
        assert reply.status == "ok", reply.texts()
        yield harness
    finally:
        harness.shutdown()


@pytest.fixture
def kernel_log(kernel: KernelHarness, kernel_dir: Path) -> Iterator[SQLiteRunLog]:
    """The kernel's run log, opened from this process."""
    log = SQLiteRunLog(kernel_dir / "runs.db")
    try:
        yield log
    finally:
        log.close()


def test_cell_registers_a_task_and_prints_one_line(kernel: KernelHarness) -> None:
    reply = kernel.run(
        "%%task every 5 minutes --name quiet --disabled\nprint('never')", cell_id="cell-quiet"
    )
    assert reply.status == "ok", reply.texts()
    lines = reply.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("registered task 'quiet' (every 5 minutes, thread)")


def test_bad_condition_is_an_error_in_that_cell(kernel: KernelHarness) -> None:
    reply = kernel.run("%%task evry 5 minutes --name typo\nprint('x')")
    assert reply.status == "error"
    assert "evry" in reply.texts()
    assert kernel.value("'typo' in get_app().session") is False


def test_rerunning_a_cell_with_its_id_updates_its_task(kernel: KernelHarness) -> None:
    body = "# first name\nprint('a')"
    assert (
        kernel.run(f"%%task every 7 minutes --disabled\n{body}", cell_id="abc12345xyz").status
        == "ok"
    )
    edited = "# second name\nprint('b')"
    reply = kernel.run(f"%%task every 8 minutes --disabled\n{edited}", cell_id="abc12345xyz")
    assert reply.status == "ok", reply.texts()
    names = kernel.value("sorted(t.name for t in get_app().session.tasks)")
    assert "second_name" in names
    assert "first_name" not in names


def test_task_output_never_lands_in_a_cell(kernel: KernelHarness) -> None:
    define = kernel.run(
        "%%task every 1 second --name chatty\n"
        f"print('{TASK_MARK}-stdout')\n"
        "import sys\n"
        f"print('{TASK_MARK}-stderr', file=sys.stderr)\n"
        "from IPython.display import display\n"
        f"display({{'text/html': '<b>{TASK_MARK}-html</b>', 'text/plain': '{TASK_MARK}-display'}},"
        " raw=True)\n"
        f"display('{TASK_MARK}-plain')\n"
    )
    assert define.status == "ok", define.texts()
    boom = kernel.run(f"%%task every 1 second --name boom\nraise ValueError('{TASK_MARK}-boom')")
    assert boom.status == "ok", boom.texts()

    # Keep the notebook busy with cells that print, while the tasks run around them.
    cells = []
    for i in range(6):
        cells.append(
            kernel.run(
                f"import time\nfor j in range(3):\n    print('user {i}', j)\n    time.sleep(0.2)"
            )
        )
    assert kernel.wait_until(
        "get_app().session.get_task_log(task='chatty').shape[0] >= 2",
        timeout=30,
    )
    kernel.drain(timeout=1.0)

    for i, cell in enumerate(cells):
        assert cell.status == "ok"
        assert f"user {i} 2" in cell.stdout
    leaked = [
        (parent, message_text(m))
        for parent, messages in kernel.by_parent().items()
        for m in messages
        if TASK_MARK in message_text(m)
    ]
    assert leaked == []

    log = kernel.run("%task log chatty --verbose")
    assert f"{TASK_MARK}-stdout" in log.stdout
    assert f"{TASK_MARK}-stderr" in log.stdout
    assert f"[display: text/html]\n{TASK_MARK}-display" in log.stdout  # the display's text
    assert f"{TASK_MARK}-plain" in log.stdout
    # The rich form is kept with the run (for the panel), not sent anywhere.
    html_kept = kernel.value(
        f"'<b>{TASK_MARK}-html</b>' in "
        "[d.data.get('text/html') for r in get_app().session.runlog.records(task='chatty')"
        " for d in __import__('redengine_nb.notebook.kernel', fromlist=['_'])"
        ".current().router.displays(r.run_id)]"
    )
    assert html_kept is True
    failed = kernel.run("%task log boom --verbose")
    assert "fail" in failed.stdout
    assert f"ValueError: {TASK_MARK}-boom" in failed.stdout
    # Logs are the one place task output may appear: only in the cells that asked.
    assert kernel.run("%task disable chatty\n%task disable boom").status == "ok"
    # IOPub is one ordered stream: what was sent before that cell's idle is in by now.
    showing = {
        parent
        for parent, messages in kernel.by_parent().items()
        for m in messages
        if TASK_MARK in message_text(m)
    }
    assert showing == {log.msg_id, failed.msg_id}
    # A task's rich display reaches a front end only where the log was asked for, as a
    # display with its MIME bundle.
    rich = {
        parent
        for parent, messages in kernel.by_parent().items()
        for m in messages
        if m["msg_type"] in ("display_data", "execute_result", "update_display_data")
        and f"{TASK_MARK}-html" in json.dumps(m["content"])
    }
    assert rich == {log.msg_id}


def test_interrupt_stops_the_user_cell_not_the_scheduler(
    kernel: KernelHarness, kernel_log: SQLiteRunLog, wait_for: Callable[..., None]
) -> None:
    reply = kernel.run("%%task every 200 milliseconds --name heartbeat\nbeat = 1")
    assert reply.status == "ok", reply.texts()

    def beats() -> int:
        return kernel_log.count("heartbeat", Action.SUCCESS)

    def cell_is_busy(msg_id: str) -> bool:
        kernel.drain(timeout=0.05)
        started = ended = False
        for m in kernel.iopub:
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            started = started or m["msg_type"] == "execute_input"
            ended = ended or (
                m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            )
        return started and not ended

    msg_id = kernel.send("import time\ntime.sleep(60)")
    wait_for(lambda: cell_is_busy(msg_id), "the long cell to start")
    before = beats()
    wait_for(lambda: beats() >= before + 3, "heartbeat runs during the long cell")
    assert cell_is_busy(msg_id), "the long cell ended before it was interrupted"

    kernel.km.interrupt_kernel()
    reply = kernel.wait(msg_id, timeout=20)
    assert reply.status == "error"
    assert "KeyboardInterrupt" in reply.error
    assert kernel.value("get_app().is_running")
    # And it keeps going after the interrupt.
    after = beats()
    wait_for(lambda: beats() >= after + 3, "heartbeat runs after the interrupt")
    assert kernel.run("%task delete heartbeat").status == "ok"


def test_reload_ext_leaves_one_scheduler_thread(kernel: KernelHarness) -> None:
    count = (
        "sum(1 for t in __import__('threading').enumerate() "
        "if 'redengine' in t.name.lower() and 'sched' in t.name.lower())"
    )
    assert kernel.value(count) == 1
    assert kernel.run("%reload_ext redengine_nb").status == "ok"
    assert kernel.run("%reload_ext redengine_nb").status == "ok"
    assert kernel.value(count) == 1
    assert kernel.run("%unload_ext redengine_nb").status == "ok"
    assert kernel.value(count) == 0
    assert kernel.run("%load_ext redengine_nb").status == "ok"
    assert kernel.value(count) == 1


def test_shutdown_leaves_no_process_behind(tmp_path: Path) -> None:
    harness = KernelHarness(tmp_path, env={"REDENGINE_NB_LOGS": ":memory:"})
    try:
        load = harness.run("%load_ext redengine_nb\nfrom redengine_nb.notebook import get_app")
        assert load.status == "ok"
        reply = harness.run(
            "%%task every 1 second --name sleeper --execution process\nimport time\ntime.sleep(120)"
        )
        assert reply.status == "ok", reply.texts()
        assert harness.wait_until(
            "get_app().session['sleeper'].is_running",
            timeout=30,
        )
        kernel_proc = psutil.Process(harness.pid)
        children = kernel_proc.children(recursive=True)
        assert children, "the process task should have a child process"
    finally:
        harness.shutdown()
    _, alive = psutil.wait_procs([kernel_proc, *children], timeout=15)
    assert [p.pid for p in alive] == []


def test_notebook_log_kernel_restart_and_history(tmp_path: Path) -> None:
    """The run log is the notebook's own file; a kernel restart records the live run
    ``terminate`` with its output so far; the next ``%load_ext`` names the tasks that have
    history, and ``%task log`` reads a task that is not registered (yet)."""
    notebook = tmp_path / "analysis.ipynb"
    env = {"JPY_SESSION_NAME": str(notebook), "REDENGINE_NB_LOGS": ""}
    harness = KernelHarness(tmp_path, env=env)
    try:
        load = harness.run("%load_ext redengine_nb\nfrom redengine_nb.notebook import get_app")
        assert load.status == "ok" and "does not know" not in load.texts()
        reply = harness.run(
            "%%task true --name sleeper\nimport time\nprint('halfway')\ntime.sleep(120)"
        )
        assert reply.status == "ok", reply.texts()
        assert harness.wait_until("get_app().session['sleeper'].is_running", timeout=30)
        log_file = tmp_path / "analysis.redengine_nb.db"
        assert harness.value("get_app().runlog.location") == str(log_file)
        started = time.monotonic()
        harness.km.restart_kernel(now=False)
        restart_took = time.monotonic() - started
        harness.kc.wait_for_ready(timeout=60)
        log = SQLiteRunLog(log_file)
        try:
            (run,) = log.records(task="sleeper")
        finally:
            log.close()
        assert run.action is Action.TERMINATE
        # The first line is the reason; a thread still running past its grace adds a line
        # saying so, depending on which of the two ends the run first on a busy machine.
        assert run.exc_text is not None
        assert run.exc_text.splitlines()[0] == "terminated: kernel shutting down"
        assert run.output == "halfway\n"
        assert restart_took < 20  # bounded: not the 120 s the task would sleep
        again = harness.run("%load_ext redengine_nb")
        assert "1 task of this notebook has history (sleeper)" in again.stdout
        shown = harness.run("%task log sleeper --verbose")
        assert shown.status == "ok", shown.texts()
        assert "terminate at" in shown.stdout and "halfway" in shown.stdout
    finally:
        harness.shutdown()


def test_a_kernel_without_its_notebook_path_says_which_log(tmp_path: Path) -> None:
    harness = KernelHarness(tmp_path, env={"JPY_SESSION_NAME": "", "REDENGINE_NB_LOGS": ""})
    try:
        load = harness.run("%load_ext redengine_nb")
        assert load.status == "ok"
        assert "does not know which notebook it runs" in load.stdout
        assert "./redengine_nb.db" in load.stdout
    finally:
        harness.shutdown()
