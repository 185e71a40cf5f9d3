"""execution='dask': runs on a real Dask cluster.

One ``LocalCluster`` (worker processes) serves most tests of the module; the tests of a
lost worker and a lost scheduler start their own ``dask scheduler`` and ``dask worker``
processes on 127.0.0.1 and stop them. Runs that must be caught mid-way tell the test they
have begun through a FIFO and wait on another one for their release: nothing sleeps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redengine_nb import RedEngine
from redengine_nb.args import Return, Session, TerminationFlag
from redengine_nb.errors import TaskInaction
from redengine_nb.executors.dask import DaskExecutor
from redengine_nb.testing import FakeClock

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses FIFOs and POSIX signals")


GUARD = float(
    os.environ.get("DASK_TEST_GUARD", "60")
)  # seconds: a guard against hangs, never the mechanism
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """One LocalCluster for the module: 2 worker processes x 2 threads."""
    local = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        dashboard_address=":0",
        scheduler_kwargs={"allowed_failures": 0},
    )
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock("2024-03-11 09:00", tz="UTC")


@pytest.fixture
def make_app(clock: FakeClock) -> Iterator[Callable[..., RedEngine]]:
    apps: list[RedEngine] = []

    def make(**config: Any) -> RedEngine:
        config.setdefault("task_execution", "dask")
        app = RedEngine(config, logs=":memory:", clock=clock)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.session.terminate_all()
        app.session.wait_idle(GUARD)
        executors = [
            e for e in app.session.launcher._executors.values() if isinstance(e, DaskExecutor)
        ]
        app.session.close_executors(terminate=True)
        for executor in executors:  # nothing of a test's client lingers into the next test
            assert executor.join(GUARD)


@pytest.fixture
def app(make_app: Callable[..., RedEngine], cluster: Any) -> RedEngine:
    return make_app(dask_address=cluster.scheduler_address)


def run_now(app: RedEngine, *names: str) -> None:
    """Force ``names`` and take one step; wait until every run has ended."""
    for name in names:
        app.session[name].run()
    app.session.tick()
    assert app.session.wait_idle(GUARD), "a run never ended"


def last(app: RedEngine, name: str) -> Any:
    log = app.session.get_task_log(task=name)
    return log.iloc[-1]


def fifo(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    os.mkfifo(path)
    return str(path)


def wait_started(path: str) -> None:
    """Block until a run opened and wrote the FIFO at ``path`` (no polling)."""
    done = threading.Event()

    def reader() -> None:
        with open(path) as f:
            f.read()
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    assert done.wait(GUARD), "the run never began on its worker"


def release(path: str) -> None:
    with open(path, "w") as f:
        f.write("go")


# -- targets (module level; sent by value) -------------------------------------------------


def signal_and_wait(started: str, go: str, mark: str | None = None) -> str:
    with open(started, "w") as f:
        f.write("started")
    with open(go) as f:
        f.read()
    if mark is not None:
        Path(mark).write_text("finished")
    return "late"


# -- outcomes --------------------------------------------------------------------------------


def test_success_output_and_return_value_come_back(app: RedEngine) -> None:
    @app.task()
    def hello() -> int:
        print("hello from a worker")
        print("and its stderr", file=sys.stderr)
        return os.getpid()

    run_now(app, "hello")
    record = last(app, "hello")
    assert record.action == "success"
    assert "hello from a worker" in record.output
    assert "and its stderr" in record.output
    pid = app.session.returns["hello"]
    assert isinstance(pid, int) and pid != os.getpid()  # it ran in a worker process
    assert pid in {w.pid for w in app_workers_processes()}


def app_workers_processes() -> list[Any]:
    import psutil

    return psutil.Process().children(recursive=True)


def test_failure_keeps_the_workers_traceback(app: RedEngine) -> None:
    @app.task()
    def broken() -> None:
        print("before the error")
        raise ValueError("bad value on the worker")

    run_now(app, "broken")
    record = last(app, "broken")
    assert record.action == "fail"
    assert record.exc_text.startswith("Traceback (most recent call last):")
    assert "in broken" in record.exc_text
    assert record.exc_text.rstrip().endswith("ValueError: bad value on the worker")
    assert "before the error" in record.output


def test_inaction(app: RedEngine) -> None:
    @app.task()
    def idle() -> None:
        raise TaskInaction()

    run_now(app, "idle")
    assert last(app, "idle").action == "inaction"


def test_arguments_and_return_markers_travel_as_for_process_runs(app: RedEngine) -> None:
    @app.task()
    def produce() -> dict[str, int]:
        return {"rows": 3}

    @app.task(parameters={"factor": 10})
    def consume(data: Any = Return("produce"), factor: int = 1) -> int:
        print("got", data)
        return int(data["rows"] * factor)

    run_now(app, "produce")
    run_now(app, "consume")
    assert last(app, "consume").action == "success"
    assert app.session.returns["consume"] == 30
    assert "got {'rows': 3}" in last(app, "consume").output


def test_cell_code_runs_in_a_fresh_namespace_on_the_worker(app: RedEngine) -> None:
    notebook_ns: dict[str, Any] = {"seen": "notebook"}
    app.task(code="x = 6 * 7\nprint('x is', x)\nx", name="cell", namespace=notebook_ns)
    run_now(app, "cell")
    record = last(app, "cell")
    assert record.action == "success", record.exc_text
    assert app.session.returns["cell"] == 42
    assert "x is 42" in record.output
    assert "x" not in notebook_ns  # as for a process run: the worker has its own memory


def test_session_and_termination_flag_are_refused_with_the_reason(app: RedEngine) -> None:
    @app.task()
    def wants_session(s: Any = Session()) -> None: ...

    @app.task()
    def wants_flag(flag: Any = TerminationFlag()) -> None: ...

    app.config.silence_task_prerun = True
    run_now(app, "wants_session", "wants_flag")
    session_fail = last(app, "wants_session")
    assert session_fail.action == "fail"
    assert "separate process" in session_fail.exc_text
    flag_fail = last(app, "wants_flag")
    assert flag_fail.action == "fail"
    assert "TerminationFlag() cannot be given" in flag_fail.exc_text


def test_an_unpicklable_argument_is_named(app: RedEngine) -> None:
    lock = threading.Lock()

    @app.task()
    def holds_lock(guard: Any = lock) -> None: ...

    app.config.silence_task_prerun = True
    run_now(app, "holds_lock")
    record = last(app, "holds_lock")
    assert record.action == "fail"
    assert "cannot run on Dask" in record.exc_text
    assert "default argument 0" in record.exc_text
    assert "lock" in record.exc_text


def test_two_schedulers_on_one_cluster_never_share_a_result(
    make_app: Callable[..., RedEngine], cluster: Any, tmp_path: Path
) -> None:
    # Both logs number their runs alike; each run must still be its own Dask task.
    first, second = (make_app(dask_address=cluster.scheduler_address) for _ in range(2))
    started, go = fifo(tmp_path, "started"), fifo(tmp_path, "go")
    first.task(func=signal_and_wait, name="same", parameters={"started": started, "go": go})

    @second.task(name="same")
    def other() -> str:
        return "second's own"

    first.session["same"].run()
    first.session.tick()
    wait_started(started)
    run_now(second, "same")
    release(go)
    assert first.session.wait_idle(GUARD)
    assert first.session.returns["same"] == "late"
    assert second.session.returns["same"] == "second's own"


# -- stopping runs ------------------------------------------------------------------------------


def test_terminate_is_logged_at_once_and_the_late_result_is_dropped(
    app: RedEngine, tmp_path: Path
) -> None:
    started, go = fifo(tmp_path, "started"), fifo(tmp_path, "go")
    mark = tmp_path / "finished"
    app.task(
        func=signal_and_wait,
        name="long",
        parameters={"started": started, "go": go, "mark": str(mark)},
    )
    app.session["long"].run()
    app.session.tick()
    wait_started(started)
    app.session["long"].terminate()
    assert app.session.wait_idle(GUARD)
    record = last(app, "long")
    assert record.action == "terminate"
    assert record.exc_text == "terminated on request"
    # The worker could not be interrupted: the function goes on until it returns...
    assert not mark.exists()
    release(go)
    deadline = time.monotonic() + GUARD
    while not mark.exists():  # a guard: the worker writes it as it returns
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # ...and its result changes nothing.
    app.session.tick()
    assert app.session.wait_idle(GUARD)
    assert list(app.session.get_task_log(task="long").action) == ["terminate"]
    assert "long" not in app.session.returns


def test_timeout_follows_the_apps_clock(app: RedEngine, clock: FakeClock, tmp_path: Path) -> None:
    started, go = fifo(tmp_path, "started"), fifo(tmp_path, "go")
    app.task(
        func=signal_and_wait,
        name="slow",
        timeout="10 seconds",
        parameters={"started": started, "go": go},
    )
    app.session["slow"].run()
    app.session.tick()
    wait_started(started)
    clock.advance("5 seconds")
    app.session.tick()
    assert app.session["slow"].is_running
    clock.advance("6 seconds")
    app.session.tick()
    assert app.session.wait_idle(GUARD)
    record = last(app, "slow")
    assert record.action == "terminate"
    assert record.exc_text == "terminated: timeout of 10 s"
    release(go)


def test_dask_max_runs_makes_due_runs_wait_for_a_slot(
    make_app: Callable[..., RedEngine], cluster: Any, tmp_path: Path
) -> None:
    app = make_app(dask_address=cluster.scheduler_address, dask_max_runs=1)
    started, go = fifo(tmp_path, "started"), fifo(tmp_path, "go")
    app.task(func=signal_and_wait, name="first", parameters={"started": started, "go": go})

    @app.task()
    def second() -> str:
        return "second ran"

    app.session["first"].run()
    app.session["second"].run()
    assert app.session.tick() == ["first"]
    wait_started(started)
    assert app.session.tick() == []  # no slot: it waits
    release(go)
    deadline = time.monotonic() + GUARD
    while app.session["first"].is_running:  # a guard; the run's end wakes the scheduler
        assert time.monotonic() < deadline
        app.session.wake.wait(1.0)
    assert app.session.tick() == ["second"]
    assert app.session.wait_idle(GUARD)
    assert app.session.returns["second"] == "second ran"
    app.config.dask_max_runs = None
    assert app.session.launcher.executor("dask").capacity() is None


# -- the cluster ---------------------------------------------------------------------------


def test_cluster_info_for_the_panel(app: RedEngine, cluster: Any) -> None:
    @app.task()
    def noop() -> None: ...

    assert app.session.dask_cluster() is None  # nothing connected yet
    run_now(app, "noop")
    info = app.session.dask_cluster()
    assert info is not None
    assert info["address"] == cluster.scheduler_address
    assert info["workers"] == 2
    # The cluster runs a dashboard (dashboard_address=":0", bokeh installed): linked.
    assert info["dashboard"] is not None and info["dashboard"].startswith("http://")
    with urllib.request.urlopen(info["dashboard"], timeout=GUARD) as page:
        assert b"Dask needs bokeh" not in page.read()  # the dashboard, not Dask's note


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_cluster_fails_the_run_and_the_scheduler_goes_on(
    make_app: Callable[..., RedEngine],
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    app = make_app(dask_address=address)

    @app.task()
    def remote() -> None: ...

    @app.task(execution="thread")
    def local() -> str:
        return "local ran"

    with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
        app.session["remote"].run()
        app.session["local"].run()
        assert sorted(app.session.tick()) == ["local", "remote"]
        # The step did not wait for the connection: it is still being tried...
        connector = app.session.launcher.executor("dask")._connector
        assert connector is not None and connector.is_alive()
        assert app.session["remote"].is_running
        assert app.session.wait_idle(GUARD)  # ...and fails on its own thread
    assert app.session.returns["local"] == "local ran"
    record = last(app, "remote")
    assert record.action == "fail"
    assert address in record.exc_text
    assert "could not be reached" in record.exc_text
    assert "dask_address" in record.exc_text


def test_without_an_address_a_local_cluster_starts_on_first_use_and_closes_at_shutdown(
    make_app: Callable[..., RedEngine],
) -> None:
    app = make_app()
    executor = app.session.launcher.executor("dask")
    assert isinstance(executor, DaskExecutor)
    assert executor.cluster_info() is None  # nothing started before a run asks

    @app.task()
    def where() -> int:
        return os.getpid()

    run_now(app, "where")
    assert last(app, "where").action == "success"
    cluster = executor._cluster
    assert cluster is not None
    assert cluster.scheduler.allowed_failures == 0  # a dead worker's run is not re-run
    pid = app.session.returns["where"]
    assert pid != os.getpid()
    app.session.close_executors(terminate=False)
    assert executor.join(GUARD)
    assert cluster.status.name == "closed"
    import psutil

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# -- a command-line cluster: lost worker, lost scheduler --------------------------------------


class CommandLineCluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, started and stopped
    here. ``allowed-failures`` is 0, as docs/scale-out.md tells a deployment to set."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        bindir = Path(sys.executable).parent
        self.env = {
            **os.environ,
            # The code of the tasks must be importable there, as on any Dask cluster.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO), str(HERE), os.environ.get("PYTHONPATH")])
            ),
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
        }
        self.log = open(tmp / "cluster.log", "w")  # noqa: SIM115 - closed in stop()
        self.scheduler = subprocess.Popen(
            [
                str(bindir / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-dashboard",
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.workers = [
            subprocess.Popen(
                [
                    str(bindir / "dask"),
                    "worker",
                    self.address,
                    "--no-nanny",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ],
                env=self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        with distributed.Client(self.address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=GUARD)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(3)  # a worker waits for its running task; the test's never returns
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


@pytest.fixture
def cli_cluster(tmp_path: Path) -> Iterator[CommandLineCluster]:
    started = CommandLineCluster(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def report_pid_and_wait(started: str, go: str) -> None:
    with open(started, "w") as f:
        f.write(str(os.getpid()))
    with open(go) as f:
        f.read()


def test_no_dashboard_link_when_the_scheduler_runs_no_dashboard(
    make_app: Callable[..., RedEngine], cli_cluster: CommandLineCluster
) -> None:
    # `dask scheduler --no-dashboard` still serves HTTP (health, metrics) and names it its
    # 'dashboard' service; a link there would open a page that is not found.
    app = make_app(dask_address=cli_cluster.address)
    app.task(func=noop, name="noop")
    run_now(app, "noop")
    info = app.session.dask_cluster()
    assert info is not None and info["workers"] == 2
    executor: Any = app.session.launcher.executor("dask")
    assert "dashboard" in executor._client.scheduler_info()["services"]
    assert info["dashboard"] is None


def noop() -> None:
    return None


def test_lost_worker_and_lost_scheduler(
    make_app: Callable[..., RedEngine], cli_cluster: CommandLineCluster, tmp_path: Path
) -> None:
    app = make_app(dask_address=cli_cluster.address)
    started, go = fifo(tmp_path, "started"), fifo(tmp_path, "go")
    app.task(func=report_pid_and_wait, name="victim", parameters={"started": started, "go": go})

    # A worker dies under a run: fail, with Dask's reason; not re-run on the other worker.
    app.session["victim"].run()
    app.session.tick()
    pids: list[str] = []
    reader = threading.Thread(target=lambda: pids.append(Path(started).read_text()))
    reader.start()
    reader.join(GUARD)
    worker_pid = int(pids[0])
    assert worker_pid in {w.pid for w in cli_cluster.workers}
    os.kill(worker_pid, signal.SIGKILL)
    assert app.session.wait_idle(GUARD)
    record = last(app, "victim")
    assert record.action == "fail"
    assert "worker running it died" in record.exc_text
    assert "KilledWorker" in record.exc_text

    # The scheduler goes away mid-run: the run fails; later runs fail to connect; other
    # executions go on.
    app.task(func=report_pid_and_wait, name="orphan", parameters={"started": started, "go": go})
    app.session["orphan"].run()
    app.session.tick()
    pids.clear()
    reader = threading.Thread(target=lambda: pids.append(Path(started).read_text()))
    reader.start()
    reader.join(GUARD)
    assert pids
    cli_cluster.scheduler.send_signal(signal.SIGKILL)
    cli_cluster.scheduler.wait(GUARD)
    assert app.session.wait_idle(GUARD)
    record = last(app, "orphan")
    assert record.action == "fail"
    assert "lost the connection to the scheduler" in record.exc_text

    @app.task(execution="thread")
    def still_here() -> str:
        return "yes"

    @app.task()
    def after() -> None: ...

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        run_now(app, "after", "still_here")
    assert app.session.returns["still_here"] == "yes"
    record = last(app, "after")
    assert record.action == "fail"
    assert "could not be reached" in record.exc_text


def test_a_script_without_a_main_guard_is_not_rerun_by_the_local_cluster_workers(
    tmp_path: Path,
) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "from redengine_nb import RedEngine\n"
        "print('MAIN RAN', flush=True)\n"
        "app = RedEngine(config={'task_execution': 'dask',\n"
        "    'shut_cond': \"task 'hello' has succeeded\"}, logs=':memory:')\n"
        "@app.task('true')\n"
        "def hello():\n"
        "    return 1\n"
        "app.run()\n"
        "print(list(app.session.get_task_log().action))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("MAIN RAN") == 1
    assert "['success']" in done.stdout
