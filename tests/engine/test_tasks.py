"""Each task kind × each execution: success, failure, captured output, Return."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path

import pytest
from engine_helpers import log_of, step

from redengine_nb import TaskInaction
from redengine_nb.args import Return

EXECUTIONS = ["main", "thread", pytest.param("process", marks=pytest.mark.slow)]


def greet(name: str = "world") -> str:
    print(f"hello {name}")
    return f"greeted {name}"


def boom() -> None:
    print("about to fail")
    raise RuntimeError("boom happened")


def nothing_to_do() -> None:
    raise TaskInaction


def receive(value=Return("producer")):
    print(f"received {value!r}")
    return value


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    file = tmp_path / "job.py"
    file.write_text(
        textwrap.dedent("""
        def main(who="file"):
            print("from file", who)
            return who.upper()

        def bad():
            raise ValueError("bad file task")
    """)
    )
    return file


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_func_task(make_app, execution: str) -> None:
    app = make_app()
    app.task("true", func=greet, execution=execution, parameters={"name": "you"})
    app.task("true", func=boom, execution=execution)
    app.task("true", func=nothing_to_do, execution=execution)
    assert sorted(step(app)) == ["boom", "greet", "nothing_to_do"]
    (ok,) = log_of(app, "greet")
    assert ok["action"] == "success"
    assert "hello you" in ok["output"]
    assert app.session.returns["greet"] == "greeted you"
    (bad,) = log_of(app, "boom")
    assert bad["action"] == "fail"
    assert "RuntimeError: boom happened" in bad["exc_text"]
    assert "Traceback" in bad["exc_text"]
    assert "about to fail" in bad["output"]
    assert log_of(app, "nothing_to_do")[0]["action"] == "inaction"


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_return_passes_between_tasks(make_app, execution: str) -> None:
    app = make_app()
    app.task("false", name="producer", code="21 * 2", execution=execution)
    app.task("false", func=receive, execution=execution)
    app.session["producer"].run()
    assert step(app) == ["producer"]
    app.session["receive"].run()
    assert step(app) == ["receive"]
    (rec,) = log_of(app, "receive")
    assert rec["action"] == "success", rec["exc_text"]
    assert "received 42" in rec["output"]


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_path_task(make_app, execution: str, job_file: Path) -> None:
    app = make_app()
    app.task(
        "true",
        path=str(job_file),
        func_name="main",
        execution=execution,
        parameters={"who": "param"},
        name="filejob",
    )
    app.task("true", path=str(job_file), func_name="bad", execution=execution, name="badjob")
    step(app)
    (ok,) = log_of(app, "filejob")
    assert ok["action"] == "success", ok["exc_text"]
    assert "from file param" in ok["output"]
    assert app.session.returns["filejob"] == "PARAM"
    (bad,) = log_of(app, "badjob")
    assert bad["action"] == "fail" and "ValueError: bad file task" in bad["exc_text"]


def test_path_task_is_imported_fresh_each_run(make_app, job_file: Path) -> None:
    app = make_app()
    task = app.task("false", path=str(job_file), func_name="main", name="filejob")
    task.run()
    step(app)
    job_file.write_text("def main():\n    return 'changed'\n")
    task.run()
    step(app)
    assert app.session.returns["filejob"] == "changed"


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_command_task(make_app, execution: str) -> None:
    app = make_app()
    app.task("true", command="echo out-text; echo err-text >&2", execution=execution, name="shell")
    app.task(
        "true",
        command=[sys.executable, "-c", "print('listed')"],
        execution=execution,
        name="listed",
    )
    app.task("true", command="echo doomed >&2; exit 3", execution=execution, name="failing")
    step(app)
    (shell,) = log_of(app, "shell")
    assert shell["action"] == "success"
    assert "out-text" in shell["output"] and "err-text" in shell["output"]
    assert "listed" in log_of(app, "listed")[0]["output"]
    (failing,) = log_of(app, "failing")
    assert failing["action"] == "fail"
    assert "status 3" in failing["exc_text"] and "doomed" in failing["exc_text"]


def test_command_list_is_not_run_through_a_shell(make_app) -> None:
    app = make_app()
    app.task("true", command=["echo", "a;", "echo", "$HOME"], name="noshell")
    step(app)
    assert log_of(app, "noshell")[0]["output"].strip() == "a; echo $HOME"


def test_command_parameters_become_options(make_app) -> None:
    app = make_app()
    app.task("true", command="echo", name="opts", parameters={"mode": "fast"})
    step(app)
    assert log_of(app, "opts")[0]["output"].strip() == "--mode fast"


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_code_task(make_app, execution: str) -> None:
    app = make_app()
    app.task(
        "true",
        code="print('code says', n)\nn * 2",
        name="code",
        execution=execution,
        parameters={"n": 21},
    )
    app.task("true", code="raise KeyError('nope')", name="badcode", execution=execution)
    step(app)
    (ok,) = log_of(app, "code")
    assert ok["action"] == "success", ok["exc_text"]
    assert "code says 21" in ok["output"]
    assert app.session.returns["code"] == 42
    (bad,) = log_of(app, "badcode")
    assert bad["action"] == "fail" and "KeyError: 'nope'" in bad["exc_text"]


def test_code_task_namespace_is_fresh_unless_given(make_app) -> None:
    app = make_app()
    app.task("false", code="x = globals().get('x', 0) + 1\nx", name="fresh")
    shared: dict[str, object] = {"x": 10}
    app.task("false", code="x = x + 1", name="cell", namespace=shared)
    for _ in range(2):
        app.session["fresh"].run()
        app.session["cell"].run()
        step(app)
    assert app.session.returns["fresh"] == 1
    assert shared["x"] == 12


def test_code_task_needs_a_name_and_valid_code(app) -> None:
    from redengine_nb import TaskSetupError

    with pytest.raises(TaskSetupError, match="needs a name"):
        app.task("daily", code="print('hi')")
    with pytest.raises(TaskSetupError, match="does not compile"):
        app.task("daily", code="print(", name="broken")


def test_kinds_and_descriptions(app, job_file: Path) -> None:
    assert app.task("daily", func=greet).kind == "func"
    assert app.task("daily", command="echo hi").description == "echo hi"
    code = app.task("daily", code="x = 1\nprint(x)", name="c")
    assert (code.kind, code.description) == ("code", "x = 1")
    path = app.task("daily", path=str(job_file), func_name="main")
    assert path.name == f"{job_file}:main"
    assert path.description.endswith("job.py:main()")


@pytest.mark.slow
def test_max_process_count_makes_due_tasks_wait(make_app) -> None:
    app = make_app(max_process_count=1)
    app.task("false", func=greet, execution="process").run()
    app.task("false", func=boom, execution="process", priority=5).run()
    assert step(app) == ["boom"]  # higher priority first; the other waits for a slot
    assert step(app) == ["greet"]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
@pytest.mark.parametrize("execution", ["thread", pytest.param("process", marks=pytest.mark.slow)])
@pytest.mark.parametrize("form", ["string", "list"])
def test_a_command_past_its_timeout_is_stopped_with_what_it_started(
    make_app, clock, tmp_path: Path, execution: str, form: str
) -> None:
    # The command starts a grandchild (a shell's background job, or a subprocess) and
    # waits for it: stopping the run must stop the grandchild too, and promptly.
    pidfile = tmp_path / "grandchild.pid"
    if form == "string":
        command: str | list[str] = f"sleep 300 & echo $! > {pidfile}; wait"
    else:
        command = [
            sys.executable,
            "-c",
            "import subprocess, sys; p = subprocess.Popen(['sleep', '300']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); p.wait()",
        ]
    app = make_app()
    app.task("false", command=command, execution=execution, timeout="1 minute", name="slow")
    app.session["slow"].run()
    assert app.session.tick() == ["slow"]
    guard = threading.Event()
    for _ in range(300):  # a guard: wait until the grandchild has written its pid
        if pidfile.exists() and pidfile.read_text().strip():
            break
        guard.wait(0.05)
    grandchild = int(pidfile.read_text())
    assert _alive(grandchild)
    clock.advance("2 minutes")
    app.session.tick()  # past the timeout: the session stops the run
    assert app.session.wait_idle(20), "the command was not stopped"
    (run,) = log_of(app, "slow")
    assert run["action"] == "terminate"
    assert "timeout" in (run["exc_text"] or "")
    for _ in range(100):  # the group was signalled; give the kernel a moment to reap
        if not _alive(grandchild):
            break
        guard.wait(0.05)
    assert not _alive(grandchild)
