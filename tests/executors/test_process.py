"""The process executor on its own, without a session: real child processes."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redengine_nb.errors import TaskInaction, TaskSetupError
from redengine_nb.executors.base import RunFlag, RunOutcome, RunSpec
from redengine_nb.executors.process import ProcessExecutor
from redengine_nb.records import Action
from redengine_nb.runlog.owner import start_token
from redengine_nb.testing import FakeClock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals and FIFOs")

GUARD = 30.0  # seconds: a guard against hangs, never the mechanism


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock("2024-03-10 09:00", tz="UTC")


#: The start methods tested here: our template process (the default on Linux) and
#: multiprocessing's forkserver (the default elsewhere on POSIX).
METHODS = ["template", "forkserver"] if sys.platform.startswith("linux") else ["forkserver"]


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def executor(clock: FakeClock, method: str) -> Iterator[ProcessExecutor]:
    ex = ProcessExecutor(2, clock, grace=1.0, start_method=method)
    yield ex
    ex.shutdown(terminate=True)
    assert ex.join(GUARD)


class Waiter:
    """``on_done`` that records the outcome and lets the test wait for it."""

    def __init__(self) -> None:
        self.outcomes: list[RunOutcome] = []
        self.event = threading.Event()

    def __call__(self, outcome: RunOutcome) -> None:
        self.outcomes.append(outcome)
        self.event.set()

    def wait(self) -> RunOutcome:
        assert self.event.wait(GUARD), "the run never reported an outcome"
        assert len(self.outcomes) == 1
        return self.outcomes[0]


def run(executor: ProcessExecutor, target: Callable[[], Any], **kw: Any) -> RunOutcome:
    waiter = Waiter()
    executor.start(RunSpec("job", "r1", target, **kw), waiter)
    return waiter.wait()


def signal_fifo(path: str) -> None:
    """In the child: say 'I am running' through a FIFO the test is reading."""
    with open(path, "w") as fifo:
        fifo.write("running")


def wait_fifo(path: Path) -> None:
    """In the test: block until the child opened and wrote the FIFO (no polling)."""
    done = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        with open(path) as fifo:
            seen.append(fifo.read())
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    assert done.wait(GUARD), "the child never started the task"
    assert seen == ["running"]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "started.fifo"
    os.mkfifo(path)
    return path


# -- module-level targets (importable by reference) -----------------------------------------


def add(a: int, b: int) -> int:
    print(f"adding {a} and {b}")
    return a + b


def boom() -> None:
    raise ValueError("boom from the child")


def nothing_to_do() -> None:
    raise TaskInaction()


def chatty() -> str:
    print("to stdout")
    print("to stderr", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "print('from a grandchild')"], check=True)
    os.write(1, b"raw fd write\n")
    return "ok"


def sleep_after_signal(fifo: str) -> None:
    signal_fifo(fifo)
    threading.Event().wait(60)


def wait_long() -> None:
    threading.Event().wait(60)


def exit_hard() -> None:
    print("about to exit")
    sys.stdout.flush()
    os._exit(3)


def give_lock() -> Any:
    return threading.Lock()


def graceful(flag: threading.Event, fifo: str) -> str:
    signal_fifo(fifo)
    assert flag.wait(60), "SIGTERM never set the flag"
    print("cleaned up after the flag was set")
    return "stopped cleanly"


# -- outcomes -----------------------------------------------------------------------------------


def test_success_returns_value_output_and_end_from_clock(
    executor: ProcessExecutor, clock: FakeClock
) -> None:
    outcome = run(executor, functools.partial(add, 2, b=3))
    assert outcome.action is Action.SUCCESS
    assert outcome.return_value == 5
    assert outcome.output == "adding 2 and 3\n"
    assert outcome.exc_text is None
    assert outcome.end == clock.time()


def test_failure_keeps_the_traceback(executor: ProcessExecutor) -> None:
    outcome = run(executor, boom)
    assert outcome.action is Action.FAIL
    assert outcome.exc_text is not None
    assert outcome.exc_text.startswith("Traceback (most recent call last):")
    assert "ValueError: boom from the child" in outcome.exc_text
    assert "in boom" in outcome.exc_text


def test_task_inaction(executor: ProcessExecutor) -> None:
    outcome = run(executor, nothing_to_do)
    assert outcome.action is Action.INACTION
    assert outcome.exc_text is None


def test_output_of_print_stderr_raw_fd_and_subprocess_is_captured(
    executor: ProcessExecutor,
) -> None:
    outcome = run(executor, chatty)
    assert outcome.action is Action.SUCCESS
    assert outcome.output is not None
    lines = outcome.output.splitlines()
    assert lines == ["to stdout", "to stderr", "from a grandchild", "raw fd write"]


def test_output_is_bounded_to_its_tail(executor: ProcessExecutor) -> None:
    def loud() -> None:
        for i in range(2000):
            print(f"line {i:04d}")

    outcome = run(executor, loud, output_limit=100)
    assert outcome.output is not None
    assert outcome.output.startswith("[... earlier output truncated ...]\n")
    tail = outcome.output.split("\n", 1)[1]
    assert len(tail) == 100
    assert tail.endswith("line 1999\n")


def test_closure_and_lambda_defined_here_work_through_cloudpickle(
    executor: ProcessExecutor,
) -> None:
    secret = {"n": 41}

    def closure() -> int:
        return secret["n"] + 1

    assert run(executor, closure).return_value == 42
    assert run(executor, lambda: [x * 2 for x in range(3)]).return_value == [0, 2, 4]


def test_child_does_not_share_the_parents_memory(executor: ProcessExecutor) -> None:
    assert run(executor, os.getpid).return_value != os.getpid()


# -- errors before start --------------------------------------------------------------------


def test_unpicklable_target_is_a_setup_error_before_anything_starts(
    executor: ProcessExecutor,
) -> None:
    lock = threading.Lock()

    def uses_lock() -> None:
        with lock:
            pass

    waiter = Waiter()
    with pytest.raises(TaskSetupError) as info:
        executor.start(RunSpec("locky", "r1", uses_lock), waiter)
    message = str(info.value)
    assert "'locky'" in message
    assert "closure variable 'lock'" in message
    assert "_thread.lock" in message
    assert executor.running == []
    assert executor.capacity() == 2
    assert not waiter.event.is_set()


def test_unpicklable_argument_of_a_partial_is_named(executor: ProcessExecutor) -> None:
    target = functools.partial(add, 1, b=threading.Lock())  # type: ignore[arg-type]
    with pytest.raises(TaskSetupError, match=r"argument 'b' \(_thread.lock\)"):
        executor.start(RunSpec("adder", "r1", target), Waiter())


def test_unpicklable_return_value_is_a_failure_that_says_so(executor: ProcessExecutor) -> None:
    outcome = run(executor, give_lock)
    assert outcome.action is Action.FAIL
    assert outcome.exc_text is not None
    assert "return value" in outcome.exc_text
    assert "cannot be pickled" in outcome.exc_text


def test_fork_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="'forkserver'"):
        ProcessExecutor(1, clock, start_method="fork")


def test_the_template_is_the_default_on_linux(clock: FakeClock) -> None:
    expected = "template" if sys.platform.startswith("linux") else "forkserver"
    assert ProcessExecutor(1, clock).start_method == expected


# -- stopping -------------------------------------------------------------------------------


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_timeout_terminates_and_the_child_is_gone(executor: ProcessExecutor) -> None:
    # The timeout may fall before the child reaches the task on a loaded machine: the
    # target only waits, so the outcome is the same whenever the kill lands.
    waiter = Waiter()
    handle = executor.start(RunSpec("slow", "r1", wait_long, timeout=0.3), waiter)
    pid = handle.pid  # type: ignore[attr-defined]
    outcome = waiter.wait()
    assert outcome.action is Action.TERMINATE
    assert outcome.exc_text == "terminated: timeout of 0.3 s exceeded"
    assert not handle.is_alive()
    assert pid_gone(pid)


def test_terminate_on_request(executor: ProcessExecutor, fifo: Path) -> None:
    waiter = Waiter()
    handle = executor.start(
        RunSpec("slow", "r1", functools.partial(sleep_after_signal, str(fifo))), waiter
    )
    wait_fifo(fifo)
    assert handle.is_alive()
    handle.terminate()
    outcome = waiter.wait()
    assert outcome.action is Action.TERMINATE
    assert outcome.exc_text == "terminated on request"


def test_setting_the_flag_terminates(executor: ProcessExecutor, fifo: Path) -> None:
    waiter = Waiter()
    spec = RunSpec("slow", "r1", functools.partial(sleep_after_signal, str(fifo)))
    executor.start(spec, waiter)
    wait_fifo(fifo)
    spec.flag.set()  # what the session does when end_cond becomes true
    outcome = waiter.wait()
    assert outcome.action is Action.TERMINATE
    assert spec.flag.is_set()


def test_termination_flag_in_the_child_is_set_by_sigterm(
    executor: ProcessExecutor, fifo: Path
) -> None:
    flag = RunFlag()
    target = functools.partial(graceful, flag.event(), str(fifo))  # as TerminationFlag() binds
    waiter = Waiter()
    handle = executor.start(RunSpec("polite", "r1", target, flag=flag), waiter)
    wait_fifo(fifo)
    handle.terminate()
    outcome = waiter.wait()
    assert outcome.action is Action.TERMINATE
    # The task saw its flag, cleaned up and returned within the grace period: no SIGKILL.
    assert outcome.output == "cleaned up after the flag was set\n"


def test_child_killed_from_outside_is_a_failure_not_a_hang(
    executor: ProcessExecutor, fifo: Path
) -> None:
    waiter = Waiter()
    handle = executor.start(
        RunSpec("victim", "r1", functools.partial(sleep_after_signal, str(fifo))), waiter
    )
    wait_fifo(fifo)
    os.kill(handle.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    outcome = waiter.wait()
    assert outcome.action is Action.FAIL
    assert outcome.exc_text == "process killed by signal 9 (SIGKILL)"


def test_child_exiting_on_its_own_is_a_failure(executor: ProcessExecutor) -> None:
    outcome = run(executor, exit_hard)
    assert outcome.action is Action.FAIL
    assert outcome.exc_text == "process exited with status 3 before reporting a result"
    assert outcome.output == "about to exit\n"


def test_capacity_counts_live_children(clock: FakeClock, fifo: Path, method: str) -> None:
    executor = ProcessExecutor(1, clock, grace=1.0, start_method=method)
    try:
        assert executor.capacity() == 1
        waiter = Waiter()
        handle = executor.start(
            RunSpec("one", "r1", functools.partial(sleep_after_signal, str(fifo))), waiter
        )
        assert executor.capacity() == 0
        wait_fifo(fifo)
        assert executor.capacity() == 0
        handle.terminate()
        waiter.wait()
        assert executor.capacity() == 1
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


def test_shutdown_terminates_running_children_and_refuses_new_runs(
    executor: ProcessExecutor, fifo: Path
) -> None:
    waiter = Waiter()
    executor.start(RunSpec("slow", "r1", functools.partial(sleep_after_signal, str(fifo))), waiter)
    wait_fifo(fifo)
    executor.shutdown(terminate=True)
    assert executor.join(GUARD)
    assert waiter.wait().action is Action.TERMINATE
    with pytest.raises(RuntimeError, match="shut down"):
        executor.start(RunSpec("late", "r2", lambda: None), Waiter())


def test_many_runs_share_one_watcher_and_each_reports_once(clock: FakeClock, method: str) -> None:
    executor = ProcessExecutor(4, clock, start_method=method)
    try:
        waiters = [Waiter() for _ in range(8)]
        for i, waiter in enumerate(waiters):
            executor.start(RunSpec(f"t{i}", str(i), functools.partial(add, i, b=i)), waiter)
        assert [w.wait().return_value for w in waiters] == [2 * i for i in range(8)]
        assert executor.join(GUARD)
        assert executor.capacity() == 4
    finally:
        executor.shutdown(terminate=True)


@pytest.mark.slow
def test_an_unguarded_script_is_not_re_run_in_the_child(tmp_path: Path) -> None:
    """A script without ``if __name__ == '__main__'`` starts no second copy of itself."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading
            from redengine_nb.executors.base import RunSpec
            from redengine_nb.executors.process import ProcessExecutor
            from redengine_nb.clock import SystemClock

            print("main module body ran", flush=True)
            done = threading.Event()
            outcomes = []
            executor = ProcessExecutor(1, SystemClock("UTC"))

            def task():
                return "child ok"

            executor.start(RunSpec("t", "r", task), lambda o: (outcomes.append(o), done.set()))
            assert done.wait(30)
            print("outcome", outcomes[0].action.value, outcomes[0].return_value, flush=True)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["main module body ran", "outcome success child ok"]


# -- through the session ----------------------------------------------------------------------


def test_session_process_run_past_its_timeout_sees_its_termination_flag(
    clock: FakeClock,
) -> None:
    """``TerminationFlag()`` in a process task: SIGTERM sets it, the task cleans up."""
    from redengine_nb import RedEngine
    from redengine_nb.args import TerminationFlag

    app = RedEngine({"task_execution": "process"}, logs=":memory:", clock=clock)

    def polite(flag: threading.Event = TerminationFlag()) -> None:  # type: ignore[assignment]
        print("waiting")
        flag.wait(60)
        print("flag seen, cleaning up")

    app.task("true", func=polite, name="polite", timeout=0.3)
    try:
        assert app.session.tick() == ["polite"]
        assert app.session.wait_idle(GUARD)
        log = app.session.get_task_log(task="polite")
        assert list(log["action"]) == ["terminate"]
        assert "timeout" in log["exc_text"].iloc[0]
        assert log["output"].iloc[0] == "waiting\nflag seen, cleaning up\n"
    finally:
        app.session.close_executors(terminate=True)


# -- the template process (Linux) ---------------------------------------------------------

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the template process is Linux's"
)


def big_value() -> bytes:
    return bytes(range(256)) * 4096  # 1 MiB: far more than a pipe's buffer


def import_count_of(module: str, marks: str) -> int:
    __import__(module)
    with open(marks) as fh:
        return len(fh.read().splitlines())


@linux_only
def test_a_return_value_larger_than_a_pipe_comes_back_whole(clock: FakeClock) -> None:
    executor = ProcessExecutor(1, clock, start_method="template")
    try:
        assert run(executor, big_value).return_value == big_value()
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


@linux_only
def test_runs_see_the_schedulers_sys_path_and_working_folder_at_their_start(
    clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = ProcessExecutor(1, clock, start_method="template")
    try:
        assert run(executor, os.getpid).action is Action.SUCCESS  # the template is up
        (tmp_path / "late_module_zyg.py").write_text("def answer():\n    return 42\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.chdir(tmp_path)
        import late_module_zyg  # type: ignore[import-not-found]

        # pickled by reference: the child imports it from the path added after the start
        assert run(executor, late_module_zyg.answer).return_value == 42
        assert run(executor, os.getcwd).return_value == str(tmp_path)
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)
        sys.modules.pop("late_module_zyg", None)


@linux_only
def test_the_module_of_a_target_is_imported_once_in_the_template_not_per_run(
    clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "imports.txt"
    marks.write_text("")
    (tmp_path / "counted_module_zyg.py").write_text(
        f"with open({str(marks)!r}, 'a') as fh:\n"
        "    fh.write('imported\\n')\n\n"
        "def imports_so_far(path):\n"
        "    with open(path) as fh:\n"
        "        return len(fh.read().splitlines())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import counted_module_zyg  # type: ignore[import-not-found]

    marks.write_text("")  # not counting this process's import
    target = functools.partial(counted_module_zyg.imports_so_far, str(marks))
    executor = ProcessExecutor(1, clock, start_method="template")
    try:
        # The first child imports it; after that run the template does, once: later
        # children are forked with it loaded.
        assert [run(executor, target).return_value for _ in range(4)] == [1, 2, 2, 2]
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)
        sys.modules.pop("counted_module_zyg", None)


@linux_only
def test_the_template_outlives_the_thread_that_started_the_first_run(
    clock: FakeClock, fifo: Path
) -> None:
    """The template asks for SIGKILL when the *thread* that started it ends: that must
    be the executor's own watcher, not whichever thread made the first run (a notebook's
    scheduler thread comes and goes)."""
    executor = ProcessExecutor(2, clock, grace=1.0, start_method="template")
    waiter = Waiter()
    try:

        def first_run() -> None:
            executor.start(
                RunSpec("long", "r1", functools.partial(sleep_after_signal, str(fifo))), waiter
            )
            wait_fifo(fifo)  # the run works (so its template is set up) while we live

        starter = threading.Thread(target=first_run)
        starter.start()
        starter.join(GUARD)
        assert not starter.is_alive()
        # The run lives on after its starter thread ended, and the executor still works.
        assert run(executor, os.getpid).action is Action.SUCCESS
        handle = executor.running[0]
        handle.terminate()
        outcome = waiter.wait()
        assert outcome.action is Action.TERMINATE
        assert outcome.exc_text == "terminated on request"
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


@linux_only
def test_a_killed_template_fails_its_runs_and_takes_their_children_with_it(
    clock: FakeClock, fifo: Path, wait_for: Any
) -> None:
    executor = ProcessExecutor(2, clock, grace=1.0, start_method="template")
    try:
        waiter = Waiter()
        handle = executor.start(
            RunSpec("victim", "r1", functools.partial(sleep_after_signal, str(fifo))), waiter
        )
        wait_fifo(fifo)
        child = handle.pid  # type: ignore[attr-defined]
        link = executor._link
        assert link is not None
        os.kill(link.proc.pid, signal.SIGKILL)
        outcome = waiter.wait()
        assert outcome.action is Action.FAIL
        assert outcome.exc_text is not None
        assert "the template process it was forked from ended" in outcome.exc_text
        assert link.proc.wait(GUARD) == -signal.SIGKILL
        # PR_SET_PDEATHSIG: its child died with it (no child of ours: /proc is read)
        wait_for(lambda: start_token(child) is None, "the run's child died", GUARD)
        # the next run starts a new template
        assert run(executor, os.getpid).action is Action.SUCCESS
        assert executor._link is not None and executor._link is not link
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


@linux_only
def test_an_executor_dropped_without_a_shutdown_ends_its_template(clock: FakeClock) -> None:
    """A notebook re-running the cell that makes an app drops the old one: its template
    process must not live on for as long as the kernel."""
    import gc

    executor = ProcessExecutor(1, clock, start_method="template")
    assert run(executor, os.getpid).action is Action.SUCCESS
    assert executor._link is not None
    template = executor._link.proc
    del executor
    gc.collect()
    assert template.wait(GUARD) == 0  # it read the end of its control pipe and exited


# -- adversarial review of the template path ---------------------------------------------


def fork_and_return_in_both() -> str:
    """A target that forks and whose copy returns too (a library forking without exec)."""
    pid = os.fork()
    if pid == 0:
        return "the forked copy"
    os.waitpid(pid, 0)  # the copy has returned and ended before this one returns
    return "the run itself"


@linux_only
def test_a_forked_copy_of_the_target_does_not_report_the_runs_outcome(
    clock: FakeClock,
) -> None:
    executor = ProcessExecutor(1, clock, start_method="template")
    try:
        outcome = run(executor, fork_and_return_in_both)
        assert outcome.action is Action.SUCCESS
        assert outcome.return_value == "the run itself"
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read()
    return raw[raw.rfind(b")") + 2 :].split()[0].decode()


@linux_only
def test_a_run_started_after_its_template_died_unnoticed_starts_on_a_fresh_one(
    clock: FakeClock, wait_for: Any
) -> None:
    """The template is killed and its watcher has not seen it yet (here: held off by
    keeping the report pipe open, as the moment before the watcher wakes does): a run
    started then finds the control pipe broken -- its message certainly never read -- and
    must start on a fresh template instead of failing to start."""
    executor = ProcessExecutor(2, clock, start_method="template")
    held = -1
    try:
        assert run(executor, os.getpid).action is Action.SUCCESS
        link = executor._link
        assert link is not None
        template = link.proc.pid
        pipe = os.readlink(f"/proc/self/fd/{link.report}")
        [fd] = [
            n
            for n in os.listdir(f"/proc/{template}/fd")
            if os.readlink(f"/proc/{template}/fd/{n}") == pipe
        ]
        held = os.open(f"/proc/{template}/fd/{fd}", os.O_WRONLY)  # its report pipe
        os.kill(template, signal.SIGKILL)
        wait_for(lambda: _state(template) == "Z", "the template died", GUARD)
        outcome = run(executor, os.getppid)
        assert outcome.action is Action.SUCCESS, outcome.exc_text
        assert outcome.return_value not in (template, os.getpid())  # a fresh template's
        assert executor._link is not None and executor._link is not link
    finally:
        if held >= 0:
            os.close(held)  # the old watcher sees the end now, and tidies up
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


def exit_3() -> None:
    sys.exit(3)


def interrupted() -> None:
    raise KeyboardInterrupt


def exit_0_at_once() -> None:
    os._exit(0)


class _FailsToLoad:
    """Pickles fine here; loading it in the child raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (int, ("not a number",))


def _takes(value: object) -> None:
    return None


@linux_only
@pytest.mark.parametrize(
    ("target", "says"),
    [
        (exit_3, "SystemExit: 3"),
        (interrupted, "KeyboardInterrupt"),
        (exit_0_at_once, "process exited with status 0 before reporting a result"),
        (
            functools.partial(_takes, _FailsToLoad()),
            "could not load the task in the child process",
        ),
    ],
    ids=["sys.exit(3)", "KeyboardInterrupt", "os._exit(0)", "unpickling fails"],
)
def test_a_target_that_exits_or_cannot_load_is_one_failure_and_the_template_lives_on(
    clock: FakeClock, target: Callable[[], Any], says: str
) -> None:
    executor = ProcessExecutor(1, clock, start_method="template")
    try:
        outcome = run(executor, target)
        assert outcome.action is Action.FAIL
        assert says in (outcome.exc_text or "")
        link = executor._link
        assert run(executor, os.getpid).action is Action.SUCCESS
        assert executor._link is link  # the same template: none of this reached it
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


def fork_a_copy_that_lingers(pidfile: str) -> str:
    """Forks a copy (no exec) that keeps the run's result pipe and output file open."""
    pid = os.fork()
    if pid == 0:
        threading.Event().wait(60)
        os._exit(0)
    with open(pidfile, "w") as fh:
        fh.write(str(pid))
    return "returned"


def flood(lines: int) -> str:
    line = "x" * 999 + "\n"
    for _ in range(lines):
        sys.stdout.write(line)
    return "flooded"


@linux_only
def test_a_copy_holding_the_result_pipe_or_a_flood_of_output_blocks_nothing(
    clock: FakeClock, tmp_path: Path
) -> None:
    executor = ProcessExecutor(2, clock, start_method="template")
    pidfile = tmp_path / "copy.pid"
    try:
        outcome = run(executor, functools.partial(fork_a_copy_that_lingers, str(pidfile)))
        assert outcome.action is Action.SUCCESS and outcome.return_value == "returned"
        # 50 MB of output: the outcome carries its tail only
        outcome = run(executor, functools.partial(flood, 50_000), output_limit=1000)
        assert outcome.return_value == "flooded"
        assert outcome.output is not None and len(outcome.output) < 1100
        assert outcome.output.endswith("x" * 999 + "\n")
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


@linux_only
def test_two_executors_keep_their_own_template_and_runs(clock: FakeClock, fifo: Path) -> None:
    one = ProcessExecutor(2, clock, start_method="template")
    two = ProcessExecutor(2, clock, start_method="template")
    try:
        waiter = Waiter()
        one.start(RunSpec("long", "r1", functools.partial(sleep_after_signal, str(fifo))), waiter)
        wait_fifo(fifo)
        parents = [run(ex, os.getppid).return_value for ex in (one, two)]
        assert one._link is not None and two._link is not None
        assert parents == [one._link.proc.pid, two._link.proc.pid]
        assert parents[0] != parents[1]
        assert len(one.running) == 1 and two.running == []
        two.shutdown(terminate=True)  # ends two's template, not one's run
        assert two.join(GUARD)
        assert one.running[0].is_alive()
        one.running[0].terminate()
        assert waiter.wait().action is Action.TERMINATE
    finally:
        for ex in (one, two):
            ex.shutdown(terminate=True)
            assert ex.join(GUARD)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _children_of(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found += [int(p) for p in fh.read().split()]
    return found


@linux_only
@pytest.mark.slow
def test_500_runs_leak_no_fd_no_zombie_and_shutdown_leaves_no_file(clock: FakeClock) -> None:
    executor = ProcessExecutor(8, clock, start_method="template")
    done = threading.Semaphore(0)
    outcomes: list[RunOutcome] = []

    def on_done(outcome: RunOutcome) -> None:
        outcomes.append(outcome)
        done.release()

    def burst(runs: int) -> None:
        for n in range(runs):
            if not executor.capacity():
                assert done.acquire(timeout=GUARD)  # one ended: room for one more
                done.release()
            while not executor.capacity():  # its on_done runs before it leaves the list
                threading.Event().wait(0.001)
            executor.start(RunSpec("job", str(n), os.getpid), on_done)
        for _ in range(runs):
            assert done.acquire(timeout=GUARD)

    try:
        burst(20)  # the template is up, its first reports read
        link = executor._link
        assert link is not None
        folder = executor._folder
        assert folder is not None
        before = (_fds(os.getpid()), _fds(link.proc.pid))
        burst(500)
        assert executor._link is link  # one template all along
        assert (_fds(os.getpid()), _fds(link.proc.pid)) == before
        assert _children_of(link.proc.pid) == []  # every child reaped
        assert os.listdir(folder) == ["children"]  # the outputs were unnamed files
        assert {o.action for o in outcomes} == {Action.SUCCESS} and len(outcomes) == 520
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)
    assert link.proc.wait(GUARD) == 0  # it read the end of its control pipe
    assert not os.path.exists(folder)


def kill_my_process_group() -> None:
    """What ``trap 'kill 0' EXIT`` in a shell script a task runs does."""
    os.kill(0, signal.SIGTERM)


@linux_only
def test_a_run_that_signals_its_process_group_hits_neither_the_template_nor_other_runs(
    clock: FakeClock, fifo: Path
) -> None:
    executor = ProcessExecutor(2, clock, grace=1.0, start_method="template")
    try:
        waiter = Waiter()
        other = executor.start(
            RunSpec("other", "r1", functools.partial(sleep_after_signal, str(fifo))), waiter
        )
        wait_fifo(fifo)
        link = executor._link
        outcome = run(executor, kill_my_process_group)
        assert outcome.action is Action.FAIL
        assert outcome.exc_text == "process killed by signal 15 (SIGTERM)"
        assert other.is_alive() and executor._link is link  # the others live on
        assert run(executor, os.getpid).action is Action.SUCCESS
        assert executor._link is link
        other.terminate()
        assert waiter.wait().action is Action.TERMINATE
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


@linux_only
def test_a_module_that_starts_a_thread_at_import_is_not_imported_in_the_template(
    clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing it in the template would make every later child a fork of a threaded
    process: one forked while that thread held its lock finds the lock held for ever."""
    (tmp_path / "busy_module_zyg.py").write_text(
        "import threading, time\n"
        "lock = threading.Lock()\n\n"
        "def _busy():\n"
        "    while True:\n"
        "        with lock:\n"
        "            time.sleep(0.01)\n\n"
        "threading.Thread(target=_busy, daemon=True).start()\n\n"
        "def use_the_lock():\n"
        "    if not lock.acquire(timeout=2):\n"
        "        return 'its lock was held by a thread this process does not have'\n"
        "    lock.release()\n"
        "    return 'ok'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import busy_module_zyg  # type: ignore[import-not-found]

    executor = ProcessExecutor(1, clock, start_method="template")
    try:
        assert [run(executor, busy_module_zyg.use_the_lock).return_value for _ in range(3)] == [
            "ok"
        ] * 3
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)
        sys.modules.pop("busy_module_zyg", None)


@linux_only
def test_terminate_or_a_timeout_racing_the_end_of_the_run_gives_one_outcome(
    clock: FakeClock,
) -> None:
    executor = ProcessExecutor(4, clock, grace=1.0, start_method="template")
    outcomes: dict[int, list[RunOutcome]] = {}
    all_done = threading.Event()
    runs = 60

    def on_done_of(n: int) -> Callable[[RunOutcome], None]:
        def on_done(outcome: RunOutcome) -> None:
            outcomes.setdefault(n, []).append(outcome)
            if len(outcomes) == runs:
                all_done.set()

        return on_done

    try:
        link = None
        for n in range(runs):
            while not executor.capacity():
                threading.Event().wait(0.001)
            # a run that ends at once, with a timeout that is due at once, or terminated
            # as it ends
            kw = {"timeout": 0.0} if n % 2 else {}
            handle = executor.start(RunSpec("job", str(n), os.getpid, **kw), on_done_of(n))
            if not n % 2:
                handle.terminate()
            link = link or executor._link
        assert all_done.wait(GUARD)
        assert executor.join(GUARD)
        # Reports come in order on one pipe: a second report for any of them would have
        # been read before the end of this later run.
        assert run(executor, os.getpid).action is Action.SUCCESS
        assert sorted(outcomes) == list(range(runs))
        assert all(len(o) == 1 for o in outcomes.values())
        assert {o[0].action for o in outcomes.values()} <= {Action.SUCCESS, Action.TERMINATE}
        assert executor._link is link  # the template saw no harm
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


@linux_only
def test_a_template_out_of_file_descriptors_fails_that_run_and_keeps_the_others(
    clock: FakeClock, fifo: Path
) -> None:
    import resource

    executor = ProcessExecutor(3, clock, grace=1.0, start_method="template")
    template = 0
    limits = (0, 0)
    try:
        waiter = Waiter()
        other = executor.start(
            RunSpec("other", "r1", functools.partial(sleep_after_signal, str(fifo))), waiter
        )
        wait_fifo(fifo)
        link = executor._link
        assert link is not None
        template = link.proc.pid
        limits = resource.prlimit(template, resource.RLIMIT_NOFILE)
        used = {int(n) for n in os.listdir(f"/proc/{template}/fd")}
        # the lowest limit that leaves the template one free descriptor: a run needs more
        limit = next(n for n in range(len(used), 4096) if n - len({u for u in used if u < n}) == 1)
        resource.prlimit(template, resource.RLIMIT_NOFILE, (limit, limits[1]))
        outcome = run(executor, os.getpid)
        assert outcome.action is Action.FAIL
        assert "could not start the process" in (outcome.exc_text or "")
        assert "Too many open files" in (outcome.exc_text or "")
        resource.prlimit(template, resource.RLIMIT_NOFILE, limits)
        assert other.is_alive() and executor._link is link  # the template lives on
        assert run(executor, os.getpid).action is Action.SUCCESS
        other.terminate()
        assert waiter.wait().action is Action.TERMINATE
    finally:
        if template and limits[0]:
            with contextlib.suppress(OSError):
                resource.prlimit(template, resource.RLIMIT_NOFILE, limits)
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


@linux_only
def test_runs_still_start_after_a_temp_cleaner_removed_the_executors_folder(
    clock: FakeClock,
) -> None:
    """systemd-tmpfiles and tmpreaper remove what /tmp has not touched for days: a
    monthly task must not fail every run after that."""
    import shutil

    executor = ProcessExecutor(1, clock, start_method="template")
    try:
        assert run(executor, os.getpid).action is Action.SUCCESS
        link = executor._link
        folder = executor._folder
        assert link is not None and folder is not None
        shutil.rmtree(folder)
        outcome = run(executor, functools.partial(print, "after the clean-up"))
        assert outcome.action is Action.SUCCESS, outcome.exc_text
        assert outcome.output == "after the clean-up\n"
        assert executor._link is link
        # its children are listed again, for the orphan sweep of a next start
        with open(os.path.join(folder, "children")) as fh:
            assert len(fh.read().splitlines()) == 2  # the template, the new child
    finally:
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)


@linux_only
def test_a_template_that_stops_answering_does_not_hang_a_run_past_its_timeout(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timeouts are carried out by the template (it signals its child): a template that
    does not answer (stopped, stuck) is killed once a run it holds is past its KILL by
    ``_TEMPLATE_ANSWER`` seconds, so that its runs end rather than hang."""
    from redengine_nb.executors import process as process_module

    monkeypatch.setattr(process_module, "_TEMPLATE_ANSWER", 0.5)
    executor = ProcessExecutor(1, clock, grace=0.5, start_method="template")
    template = 0
    try:
        assert run(executor, os.getpid).action is Action.SUCCESS
        link = executor._link
        assert link is not None
        template = link.proc.pid
        os.kill(template, signal.SIGSTOP)
        outcome = run(executor, wait_long, timeout=0.5)
        assert outcome.action is Action.FAIL
        assert "process lost" in (outcome.exc_text or "")
        assert link.proc.wait(GUARD) == -signal.SIGKILL
        assert run(executor, os.getpid).action is Action.SUCCESS  # on a new template
    finally:
        if template and start_token(template) is not None:
            os.kill(template, signal.SIGKILL)
        executor.shutdown(terminate=True)
        assert executor.join(GUARD)
