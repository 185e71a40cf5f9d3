"""The executor contract: what every executor does, run against each one.

A new executor is a module in ``redengine_nb/executors/`` plus its line in ``KINDS`` here.
The targets are module-level functions so that the ``process`` executor can pickle them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redengine_nb.errors import TaskInaction
from redengine_nb.executors import EXECUTIONS, Executor, RunHandle, RunOutcome, RunSpec
from redengine_nb.executors.main import MainExecutor
from redengine_nb.executors.thread import ThreadExecutor
from redengine_nb.records import Action
from redengine_nb.testing import FakeClock

GUARD = 30.0  # seconds: a guard against hangs, never the mechanism


def _process(clock: FakeClock) -> Executor:
    from redengine_nb.executors.process import ProcessExecutor

    return ProcessExecutor(2, clock, grace=1.0)


_DASK_CLUSTER: list[Any] = []  # one LocalCluster for the module, made at the first dask case


def _dask(clock: FakeClock) -> Executor:
    distributed = pytest.importorskip("distributed")
    from redengine_nb.executors.dask import DaskExecutor

    if not _DASK_CLUSTER:
        _DASK_CLUSTER.append(
            distributed.LocalCluster(
                n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0"
            )
        )
    return DaskExecutor(clock, address=_DASK_CLUSTER[0].scheduler_address, max_runs=2)


@pytest.fixture(scope="module", autouse=True)
def _close_dask_cluster() -> Iterator[None]:
    yield
    while _DASK_CLUSTER:
        _DASK_CLUSTER.pop().close()


KINDS: dict[str, Callable[[FakeClock], Executor]] = {
    "main": MainExecutor,
    "thread": ThreadExecutor,
    "process": _process,
    "dask": _dask,
}


def test_every_execution_is_in_the_contract() -> None:
    assert sorted(KINDS) == sorted(EXECUTIONS)
    assert sorted(IDLE_CAPACITY) == sorted(EXECUTIONS)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock("2024-03-10 09:00", tz="UTC")


@pytest.fixture(params=sorted(KINDS))
def executor(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Executor]:
    if request.param == "process" and sys.platform == "win32":
        pytest.skip("the process executor's tests use POSIX")
    ex = KINDS[request.param](clock)
    yield ex
    ex.shutdown(terminate=True)
    join = getattr(ex, "join", None)
    if join is not None:
        assert join(GUARD)


class Waiter:
    """``on_done`` that records each call and lets the test wait for the first."""

    def __init__(self) -> None:
        self.outcomes: list[RunOutcome] = []
        self.event = threading.Event()

    def __call__(self, outcome: RunOutcome) -> None:
        self.outcomes.append(outcome)
        self.event.set()

    def wait(self) -> RunOutcome:
        assert self.event.wait(GUARD), "the run never reported an outcome"
        return self.outcomes[0]


def run(executor: Executor, target: Callable[[], Any], *, flag_set: bool = False) -> RunOutcome:
    spec = RunSpec("job", "r1", target)
    if flag_set:
        spec.flag.set()
    waiter = Waiter()
    handle = executor.start(spec, waiter)
    assert isinstance(handle, RunHandle)
    assert handle.spec is spec
    outcome = waiter.wait()
    executor.shutdown(terminate=False)
    join = getattr(executor, "join", None)
    if join is not None:  # every end is reported by now: nothing is left to report twice
        assert join(GUARD)
    assert len(waiter.outcomes) == 1, "on_done is called exactly once"
    return outcome


def returns_41() -> int:
    return 41


def raises() -> None:
    raise ValueError("the task broke")


def has_nothing_to_do() -> None:
    raise TaskInaction


def prints() -> None:
    print("hello from the run")


def test_a_run_that_returns_succeeds_with_its_value(executor: Executor, clock: FakeClock) -> None:
    outcome = run(executor, returns_41)
    assert outcome.action is Action.SUCCESS
    assert outcome.return_value == 41
    assert outcome.exc_text is None
    assert outcome.end == clock.time()  # read from the clock it was given


def test_a_run_that_raises_fails_with_its_traceback(executor: Executor) -> None:
    outcome = run(executor, raises)
    assert outcome.action is Action.FAIL
    assert outcome.return_value is None
    assert outcome.exc_text is not None
    assert "ValueError: the task broke" in outcome.exc_text


def test_task_inaction_is_an_inaction(executor: Executor) -> None:
    assert run(executor, has_nothing_to_do).action is Action.INACTION


def test_what_a_run_prints_is_its_output(executor: Executor) -> None:
    outcome = run(executor, prints)
    assert outcome.output is not None
    assert "hello from the run" in outcome.output


def test_a_run_whose_flag_is_set_is_a_termination(executor: Executor) -> None:
    outcome = run(executor, returns_41, flag_set=True)
    assert outcome.action is Action.TERMINATE
    assert outcome.return_value is None


#: What ``capacity()`` says of an idle executor as KINDS makes it (None: no limit).
IDLE_CAPACITY = {"main": None, "thread": None, "process": 2, "dask": 2}


def test_an_idle_executor_says_how_many_runs_may_start(executor: Executor) -> None:
    assert executor.capacity() == IDLE_CAPACITY[executor.kind]


def test_the_kind_is_its_execution_name(executor: Executor) -> None:
    assert executor.kind in EXECUTIONS
    assert executor.kind in repr(executor)
