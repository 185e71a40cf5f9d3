"""Launching: the part of the session that starts due runs.

For each task the step found due, in priority order, ``Launcher._prepare`` does all of a
launch that comes before its start is written: it picks the executor and checks for a
free slot, takes a forced run off its queue, resolves the parameters and argument markers
and builds the target. The starts are then written in batches (a small first one, so that
its runs begin while the rest are prepared, then larger ones up to ``_START_BATCH``), one
run-log transaction each (``_start_batch``), and each run is handed to its executor,
which reports its end to the end writer (``ends.py``). A ``_Run`` is a run as the
session tracks it, from its start until its end is acknowledged; ``_InTask`` calls a
main/thread run's target inside the session's run wrappers.

:class:`Launcher` is owned by the session. Its own state: the executors it made (one per
kind, on first use), the run wrappers entered around each main/thread run, and the tasks
found due that wait for an executor slot (``slot_wait``, looked at again when a run ends).
"""

from __future__ import annotations

import logging
import threading
import traceback
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from ..args import Argument, Private, ResolveContext
from ..args import TerminationFlag as _TerminationFlagMarker
from ..errors import SchedulerError, TaskSetupError
from ..executors import SEPARATE_MEMORY, RunFlag, RunOutcome, RunSpec, make_executor
from ..records import Action, RunRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from contextlib import AbstractContextManager

    from ..executors import Executor, RunHandle
    from .session import Session
    from .tasks import BaseTask

log = logging.getLogger("redengine_nb.session")  # one logger for all the parts of the session

_START_BATCH = 256  # most run starts written in one run-log transaction
# The first batch of a step; each next one 4x as large, up to _START_BATCH. Its runs begin
# while the rest are prepared (measured: lag-100 p50 3.2 -> 1.5 ms; burst unchanged).
_FIRST_START_BATCH = 16

_local = threading.local()  # .task: the task of the main/thread run on this thread


class _Run:
    """A run in flight. Called with its outcome when it ends (it is its executor's
    ``on_done``: one object per run rather than a run and a partial)."""

    __slots__ = (
        "deadline",
        "ended",
        "handle",
        "privates",
        "reason",
        "run_id",
        "spec",
        "start",
        "sync",
        "task",
    )

    def __init__(
        self,
        task: BaseTask,
        spec: RunSpec,
        start: float,
        privates: list[str],
        ended: Callable[[_Run, RunOutcome], None],
    ) -> None:
        self.ended = ended  # the end writer's on_done (one bound method for all runs)
        self.task = task
        self.spec = spec
        self.run_id = spec.run_id
        self.start = start
        self.deadline = None if spec.timeout is None else start + spec.timeout
        self.handle: RunHandle | None = None
        self.reason: str | None = None
        self.privates = privates
        # Its end is acknowledged on the thread that saw it (the scheduler's: a ``main``
        # run, a failed start), not by the end writer.
        self.sync = False

    def __call__(self, outcome: RunOutcome) -> None:
        self.ended(self, outcome)


class _Prepared:
    """A due run, ready but for its start record."""

    __slots__ = ("at", "executor", "flag", "forced", "privates", "target", "task")

    def __init__(
        self,
        task: BaseTask,
        executor: Executor,
        target: Callable[[], Any],
        flag: RunFlag,
        privates: list[str],
        at: float,
        forced: bool,
    ) -> None:
        self.at = at  # its start time: when it was made ready
        self.forced = forced  # asked for (run_task): not subject to a claim's recheck
        self.task = task
        self.executor = executor
        self.target = target
        self.flag = flag
        self.privates = privates


class _InTask:
    """A main/thread run's target: calls it with the session's run wrappers entered and
    the current task set for this thread (one object, where a closure would be six)."""

    __slots__ = ("run_id", "target", "task", "wrappers")

    def __init__(
        self,
        task: BaseTask,
        run_id: str,
        target: Callable[[], Any],
        wrappers: tuple[Callable[[BaseTask, str], AbstractContextManager[Any]], ...],
    ) -> None:
        self.task = task
        self.run_id = run_id
        self.target = target
        self.wrappers = wrappers

    def __call__(self) -> Any:
        previous = getattr(_local, "task", None)
        _local.task = self.task
        try:
            if not self.wrappers:
                return self.target()
            with ExitStack() as stack:
                for factory in self.wrappers:
                    stack.enter_context(factory(self.task, self.run_id))
                return self.target()
        finally:
            _local.task = previous


class Launcher:
    """Starts the due runs of a session: prepares them, writes their starts in batches,
    hands each to its executor."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._executors: dict[str, Executor] = {}
        self.wrappers: list[Callable[[BaseTask, str], AbstractContextManager[Any]]] = []
        #: Tasks found due that wait for an executor slot (a run end frees one).
        self.slot_wait: set[str] = set()
        self._full: set[str] = set()  # see launch_due

    # -- launching ---------------------------------------------------------------------
    def executor(self, kind: str) -> Executor:
        """The executor of ``kind``, made on first use."""
        executor = self._executors.get(kind)
        if executor is None:
            session = self._session
            executor = make_executor(
                kind,
                session.clock,
                max_processes=session.config.max_process_count,
                config=session.config,
            )
            self._executors[kind] = executor
        return executor

    def warm(self) -> None:
        """Before the first step: start the thread pool's workers if a task runs on
        threads, so the runs due at the start wait for none of it. (Only the thread
        executor is made ahead: the others start processes or a cluster, which a
        session whose tasks never become due should not pay for.)"""
        session = self._session
        with session._lock:
            threads = any(task.execution == "thread" for task in session._tasks.values())
        if threads:
            try:
                self.executor("thread").warm()
            except Exception:  # the run that needs it reports the error
                log.debug("could not prepare the thread executor", exc_info=True)

    def close_executors(self, *, terminate: bool) -> None:
        """Shut every executor down (the next run makes new ones)."""
        executors, self._executors = self._executors, {}
        for executor in executors.values():
            try:
                executor.shutdown(terminate=terminate)
            except Exception:
                log.exception("shutting down the %s executor failed", executor.kind)

    def _resolve(
        self, task: BaseTask, params: dict[str, Any], process: bool, flag: RunFlag
    ) -> tuple[dict[str, Any], list[str]]:
        names = task.signature_names()
        defaults = task.marker_defaults()
        if (
            not defaults
            and not params
            and not task.parameters
            and (
                names is None
                or not (parameters := self._session.parameters)
                or names.isdisjoint(parameters)
            )
        ):
            return {}, []  # the usual run: nothing to pass, nothing to resolve
        kwargs: dict[str, Any] = {}
        for key, default in defaults.items():
            if isinstance(default, Argument | Private):
                kwargs[key] = default
        if names is not None:
            for key, value in self._session.parameters.items():
                if key in names:
                    kwargs[key] = value
        given = {**task.parameters, **params}
        if names is not None:
            unknown = sorted(set(given) - names)
            if unknown:
                raise TaskSetupError(
                    f"task {task.name!r} got parameters its function does not take: "
                    + ", ".join(unknown)
                    + f" (it takes: {', '.join(sorted(names)) or 'none'})"
                )
        kwargs.update(given)
        ctx = ResolveContext(self._session, task, flag)
        privates: list[str] = []
        for key, value in list(kwargs.items()):
            if isinstance(value, Argument):
                if process and value.in_process_only:
                    raise TaskSetupError(
                        f"task {task.name!r} runs in a separate process, where {value!r} "
                        f"(parameter {key!r}) cannot be given: the process has its own "
                        "memory, so changes would be lost. Run it with execution='thread' "
                        "or 'main'."
                    )
                if isinstance(value, _TerminationFlagMarker):
                    value = flag.event()
                else:
                    try:
                        value = value.resolve(ctx)
                    except KeyError as exc:
                        raise TaskSetupError(str(exc.args[0]) if exc.args else str(exc)) from exc
            if isinstance(value, Private):
                value = value.get_value()
                text = str(value)
                if len(text) >= 3:
                    privates.append(text)
            kwargs[key] = value
        return kwargs, privates

    def _wrap(self, task: BaseTask, run_id: str, target: Callable[[], Any]) -> Callable[[], Any]:
        return _InTask(task, run_id, target, tuple(self.wrappers))

    def _prerun_failed(self, task: BaseTask, exc: BaseException, now_ts: float) -> None:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        detail = f"the run could not start: {text}"
        if not isinstance(exc, TaskSetupError):
            detail += "\n" + "".join(traceback.format_exception(exc))
        session = self._session
        session.runlog.log_run(
            RunRecord(
                "",
                task.name,
                Action.FAIL,
                now_ts,
                now_ts,
                now_ts,
                exc_text=detail,
                owner=session.owner,
            )
        )
        with session._lock:
            session._status[task.name] = Action.FAIL
            session.step.gave_up(task.name)
            session.step.invalidate()
        session._emit("run_ended", task.name)
        if not session.config.silence_task_prerun:
            raise SchedulerError(f"task {task.name!r} could not start: {text}") from exc
        log.error("task %r could not start (silence_task_prerun): %s", task.name, text)

    def launch_due(
        self, due: Iterable[tuple[BaseTask, dict[str, Any] | None]], now_ts: float
    ) -> list[str]:
        """Start the due runs in priority order; returns the names started.

        Runs are prepared one by one, and their starts written in batches (16, 64, then
        ``_START_BATCH``) in one run-log transaction each (a commit per run would cost
        more than the rest of a launch); a run begins only once its start is written. A ``main``
        run goes alone, after the runs before it have started, as it blocks this thread.
        """
        started: list[str] = []
        batch: list[_Prepared] = []
        limit = _FIRST_START_BATCH
        full = self._full = set()  # executions without a free slot left in this launch
        try:
            for task, params in due:
                if task.execution in full:
                    with self._session._lock:
                        self.slot_wait.add(task.name)
                    continue
                prepared = self._prepare(task, params, now_ts, batch)
                if prepared is None:
                    continue
                if prepared.executor.kind == "main":
                    ready, batch = batch, []
                    self._start_batch(ready, now_ts, started)
                    self._start_batch([prepared], now_ts, started)
                    continue
                batch.append(prepared)
                if len(batch) >= limit:
                    ready, batch = batch, []
                    self._start_batch(ready, now_ts, started)
                    limit = min(4 * limit, _START_BATCH)
        finally:
            # Also when a start error stops the step: what was prepared before it starts
            # (never a batch whose write was tried already).
            if batch:
                self._start_batch(batch, now_ts, started)
        return started

    def _prepare(
        self,
        task: BaseTask,
        params: dict[str, Any] | None,
        now_ts: float,
        pending: list[_Prepared],
    ) -> _Prepared | None:
        """Everything of a launch before its start is written: ``None`` if it waits for
        a slot or could not start (that is logged; it raises unless silenced)."""
        execution = task.execution
        process = execution in SEPARATE_MEMORY
        try:
            executor = self.executor(execution)
        except Exception as exc:
            self._pop_forced(task, params)
            self._prerun_failed(task, exc, now_ts)
            return None
        capacity = executor.capacity()
        if capacity is not None:
            if pending:
                capacity -= sum(1 for p in pending if p.executor is executor)
            if capacity <= 0:
                with self._session._lock:  # looked at when a run ends (not before: no spin)
                    self.slot_wait.add(task.name)
                self._full.add(execution)  # the next due tasks of this kind wait at once
                return None
        self._pop_forced(task, params)
        flag = RunFlag()
        try:
            task.check_prerun()
            kwargs, privates = self._resolve(task, params or {}, process, flag)
            target = task.build_target(kwargs, process=process, flag=flag)
        except Exception as exc:
            self._prerun_failed(task, exc, now_ts)
            return None
        at = max(now_ts, self._session.clock.time())
        return _Prepared(task, executor, target, flag, privates, at, params is not None)

    def _start_batch(self, batch: list[_Prepared], now_ts: float, started: list[str]) -> None:
        """Write the starts of ``batch`` in one transaction, then start each run."""
        if not batch:
            return
        # created: when the step found them due; start: when each was prepared, just
        # before this write. In a long step the later runs start later, and a condition
        # on their last start (every 10 minutes) then finds them due again one by one,
        # not all at the step's instant (measured: lag-1000 p50 28 -> 11 ms).
        session = self._session
        # A claim: if another scheduler wrote to the log since we read it, the store
        # asks the step (inside its write transaction) which of them are still due.
        forced = {p.task.name for p in batch if p.forced}
        step = session.step
        records = session.runlog.claim_starts(
            [p.task.name for p in batch],
            created=now_ts,
            start=[p.at for p in batch],
            owner=session.owner,
            recheck=lambda names: step.still_due(names, forced),
        )
        if len(records) != len(batch):
            claimed = {r.task_name for r in records}
            for p in batch:
                if p.task.name not in claimed:  # another scheduler started it
                    step.claim_refused(p.task.name)
            batch = [p for p in batch if p.task.name in claimed]
        runs: list[tuple[_Prepared, _Run]] = []
        running = session._running
        status = session._status
        ended = session.ends.on_done  # the session makes its end writer before its launcher
        with session._lock:
            for prepared, record in zip(batch, records, strict=True):
                task = prepared.task
                target = prepared.target
                if prepared.executor.kind not in SEPARATE_MEMORY:
                    target = self._wrap(task, record.run_id, target)
                spec = RunSpec(task.name, record.run_id, target, task.timeout, prepared.flag)
                run = _Run(task, spec, prepared.at, prepared.privates, ended)
                session._runs[run.run_id] = run
                running[task.name] = running.get(task.name, 0) + 1
                status[task.name] = Action.RUN
                session.step.started(task.name, prepared.at)
                session.step.run_event(task.name)
                runs.append((prepared, run))
        error: SchedulerError | None = None
        for prepared, run in runs:
            name = run.task.name
            session._emit("run_started", name)
            run.sync = prepared.executor.kind == "main"
            try:
                run.handle = prepared.executor.start(run.spec, run)
            except Exception as exc:
                text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                run.sync = True
                at = session.clock.time()
                ended(run, RunOutcome(Action.FAIL, at, exc_text=f"the run could not start: {text}"))
                if not session.config.silence_task_prerun:
                    # The others' starts are written: they still start, then this raises.
                    if error is None:
                        error = SchedulerError(f"task {name!r} could not start: {text}")
                        error.__cause__ = exc
                else:
                    log.error("task %r could not start (silence_task_prerun): %s", name, text)
                continue
            started.append(name)
        if error is not None:
            raise error

    def _pop_forced(self, task: BaseTask, params: dict[str, Any] | None) -> None:
        if params is None:
            return
        forced = self._session._forced
        with self._session._lock:
            queue = forced.get(task.name)
            if queue:
                queue.popleft()
                if not queue:
                    del forced[task.name]
