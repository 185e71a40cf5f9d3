"""The notebook layer in a real kernel (jupyter_client ``KernelManager``, as users run it).

One kernel for the module (starting one takes a second or two); the tests run in order
and each leaves the kernel in a known state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from kernel_harness import KernelHarness, message_text

pytestmark = pytest.mark.slow

TASK_MARK = "TASK-MARK"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelHarness]:
    tmp: Path = tmp_path_factory.mktemp("kernel")
    harness = KernelHarness(tmp, env={"REDENGINE_NB_LOGS": ":memory:"})
    try:
        reply = harness.run("%load_ext redengine_nb\nfrom redengine_nb.notebook import get_app")
        assert reply.status == "ok", reply.texts()
        yield harness
    finally:
        harness.shutdown()


def runs(kernel: KernelHarness, task: str) -> int:
    return int(kernel.value(f"get_app().session.get_task_log(task={task!r}).shape[0]"))


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
        "from IPython.display import display, HTML\n"
        f"display(HTML('<b>{TASK_MARK}-display</b>'))\n"
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
    assert f"{TASK_MARK}-display" in log.stdout or "text/html" in log.stdout
    assert f"{TASK_MARK}-plain" in log.stdout
    failed = kernel.run("%task log boom --verbose")
    assert "fail" in failed.stdout
    assert f"ValueError: {TASK_MARK}-boom" in failed.stdout
    # Logs are the one place task output may appear: only in the cell that asked.
    assert kernel.run("%task disable chatty\n%task disable boom").status == "ok"


def test_interrupt_stops_the_user_cell_not_the_scheduler(kernel: KernelHarness) -> None:
    assert kernel.run("%%task every 1 second --name heartbeat\nbeat = 1").status == "ok"
    before = kernel.value("get_app().session.get_task_log(task='heartbeat').shape[0]")
    msg_id = kernel.send("import time\ntime.sleep(60)")
    # Let the long cell start, and the scheduler run the task a few times meanwhile.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kernel.drain(timeout=0.2)
        if any(
            m["msg_type"] == "execute_input" and m["parent_header"].get("msg_id") == msg_id
            for m in kernel.iopub
        ):
            break
    time.sleep(3.5)  # real time must pass for a real kernel's real scheduler
    kernel.km.interrupt_kernel()
    reply = kernel.wait(msg_id, timeout=20)
    assert reply.status == "error"
    assert "KeyboardInterrupt" in reply.error

    during = kernel.value("get_app().session.get_task_log(task='heartbeat').shape[0]")
    assert during >= before + 2, "the scheduler did not run tasks during the long cell"
    assert kernel.value("get_app().is_running")
    # And it keeps going after the interrupt.
    assert kernel.wait_until(
        f"get_app().session.get_task_log(task='heartbeat').shape[0] > {during}",
        timeout=15,
    )
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
