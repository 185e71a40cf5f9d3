"""The session: the task registry, the scheduler step, and every runtime change.

``tick()`` is the whole scheduling decision: refresh the run log, enforce timeouts and
end conditions, evaluate the conditions of the tasks that may have changed, and start what
is due in priority order. A runner thread (``runner.py``) only loops ``tick()`` and waits
for :meth:`Session.seconds_until_wake` or an event.

Caching: each task remembers when its condition can next become true by the clock alone
(``_next_check``). A tick re-evaluates a task only when that time has come, when the task
itself changed, or after an event that may change any condition (a run started or ended,
the clock was set, the config changed). Everything is guarded by one re-entrant lock that
is never held while a task runs.
"""

from __future__ import annotations

import difflib
import functools
import logging
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .args import Argument, Private, ResolveContext
from .args import TerminationFlag as _TerminationFlagMarker
from .clock import Clock, get_zone
from .config import Config
from .errors import ConditionParseError, SchedulerError, TaskExistsError, TaskSetupError
from .executors import Executor, RunFlag, RunHandle, RunOutcome, RunSpec, make_executor
from .records import Action, RunRecord
from .runlog.base import RunLog, end_runs, start_runs
from .tasks import BaseTask, CodeTask, CommandTask, FuncTask, check_execution, check_timeout

if TYPE_CHECKING:
    import pandas as pd

    from .conditions.base import BaseCondition, Context

__all__ = ["Session"]

log = logging.getLogger("redengine_nb.session")

EVENTS = (
    "run_started",
    "run_ended",
    "task_added",
    "task_changed",
    "task_deleted",
    "scheduler_started",
    "scheduler_stopped",
)
STATUS_COLUMNS = [
    "name",
    "condition",
    "status",
    "last_run",
    "last_success",
    "last_fail",
    "next_due",
    "is_running",
    "disabled",
    "execution",
    "runs",
    "fails",
    "runtime",
    "priority",
    "running_since",
]
LOG_COLUMNS = [
    "task_name",
    "run_id",
    "action",
    "created",
    "start",
    "end",
    "runtime",
    "exc_text",
    "output",
]
_COND_ERROR_RETRY = 10.0  # seconds before a condition that raised (silenced) is tried again
_START_BATCH = 256  # most run starts written in one run-log transaction
_END_BATCH = 1024  # most run ends written in one run-log transaction
# Seconds the end writer waits for more ends before it exits: as long as an idle worker
# lives, so that a task every few seconds does not start (and end) a thread per run; an
# exiting thread costs ~0.2 ms of CPU, a waiting one nothing.
_WRITER_KEEPALIVE = 60.0

_local = threading.local()


def _owner_tools() -> tuple[Callable[[], str], Callable[[str | None], bool]]:
    from .runlog.owner import current_owner, owner_alive

    return current_owner, owner_alive


class _Run:
    __slots__ = (
        "deadline",
        "handle",
        "privates",
        "reason",
        "run_id",
        "spec",
        "start",
        "sync",
        "task",
    )

    def __init__(self, task: BaseTask, spec: RunSpec, start: float, privates: list[str]) -> None:
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


class _End:
    """A run's end, queued for the end writer."""

    __slots__ = ("action", "end", "exc_text", "output", "return_value", "run")

    def __init__(
        self,
        run: _Run,
        outcome: RunOutcome,
        exc_text: str | None,
        output: str | None,
    ) -> None:
        self.run = run
        self.action = outcome.action
        self.end = outcome.end
        self.return_value = outcome.return_value
        self.exc_text = exc_text
        self.output = output


class _Prepared:
    """A due run, ready but for its start record."""

    __slots__ = ("at", "executor", "flag", "privates", "target", "task")

    def __init__(
        self,
        task: BaseTask,
        executor: Executor,
        target: Callable[[], Any],
        flag: RunFlag,
        privates: list[str],
        at: float,
    ) -> None:
        self.at = at  # its start time: when it was made ready
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


class _Reads:
    """The history a condition is evaluated over, noting which tasks it looks at.

    A condition is a pure function of its context: the clock (its ``next_due`` says when
    that can change it), the history of the tasks it reads and which of them are
    running. So a run that starts or ends changes only the conditions that read its task.
    ``wild`` is set when the condition used the history in any other way.
    """

    __slots__ = ("history", "names", "running", "wild")

    def __init__(self, history: Any, running: Callable[[str], bool]) -> None:
        self.history = history
        self.running = running
        self.names: set[str] = set()
        self.wild = False

    def last(self, task: str, action: Any) -> float | None:
        self.names.add(task)
        value: float | None = self.history.last(task, action)
        return value

    def last_of(self, task: str, actions: Any) -> float | None:
        self.names.add(task)
        last_of = getattr(self.history, "last_of", None)
        if last_of is None:
            times = [t for t in (self.history.last(task, a) for a in actions) if t is not None]
            return max(times) if times else None
        value: float | None = last_of(task, actions)
        return value

    def count(self, task: str, *args: Any, **kwargs: Any) -> int:
        self.names.add(task)
        value: int = self.history.count(task, *args, **kwargs)
        return value

    def is_running(self, task: str) -> bool:
        self.names.add(task)
        return self.running(task)

    def __getattr__(self, name: str) -> Any:
        self.wild = True
        return getattr(self.history, name)


class Session:
    """Tasks, parameters, the run log and the scheduling step of one app."""

    def __init__(
        self, config: Config, clock: Clock, runlog: RunLog, *, grammar: Any = None, app: Any = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.runlog = runlog
        self.grammar = grammar
        self.app = app
        self.parameters: dict[str, Any] = {}
        self.returns: dict[str, Any] = {}
        self._tasks: dict[str, BaseTask] = {}
        self._lock = threading.RLock()
        self._tick_lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._runs: dict[str, _Run] = {}
        self._running: dict[str, int] = {}
        self._forced: dict[str, deque[dict[str, Any]]] = {}
        self._executors: dict[str, Executor] = {}
        self._subscribers: list[Callable[[str, str | None], None]] = []
        self._wrappers: list[Callable[[BaseTask, str], AbstractContextManager[Any]]] = []
        self._last_runtime: dict[str, float] = {}
        self._all_dirty = True
        self._slot_wait: set[str] = set()  # due, waiting for an executor slot (a run end)
        # What each task's condition read at its last evaluation (see _Reads): the
        # tasks whose runs can change it; _wild: tasks whose condition read no task, or
        # read the history some other way, looked at again after every run event.
        self._reads: dict[str, tuple[str, ...]] = {}
        self._readers: dict[str, set[str]] = {}
        self._wild: set[str] = set()
        self._wild_dirty = True
        self._shut_next: float | None = None
        self._end_next: float | None = None
        self.wake = threading.Event()
        # Ends waiting for the end writer (a thread started on demand; see _on_done).
        self._ends: list[_End] = []
        self._ends_cv = threading.Condition(threading.Lock())
        self._writer: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self.stop_requested = False
        self.restart_requested = False
        self.runner: Any = None
        current_owner, self._owner_alive = _owner_tools()
        self.owner = current_owner()
        clock.subscribe(self._clock_moved)
        config.on_change(self._config_changed)
        self.mark_crashed_runs()

    # -- time --------------------------------------------------------------------------
    @property
    def tz(self) -> ZoneInfo:
        name = self.config.timezone
        return self.clock.tz if name is None else get_zone(name)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), self.tz)

    def _dt(self, ts: float | None) -> datetime | None:
        return None if ts is None else datetime.fromtimestamp(ts, self.tz)

    def _context(self, task: str | None, now: datetime | None = None) -> Context:
        from .conditions.base import Context

        return Context(now or self.now(), self.runlog, task, self.is_task_running)

    # -- conditions --------------------------------------------------------------------
    def parse_condition(self, value: Any) -> BaseCondition:
        """A condition object from text (parsed with this app's grammar) or an object."""
        from .conditions.base import BaseCondition

        if isinstance(value, BaseCondition):
            return value
        if isinstance(value, str):
            try:
                from .conditions import parse  # type: ignore[attr-defined,unused-ignore]
            except ImportError as exc:  # the parser is another layer; say so plainly
                raise ConditionParseError(f"condition text needs the parser: {exc}", value) from exc
            if self.grammar is None:
                return parse(value)  # type: ignore[no-any-return,unused-ignore]
            return parse(value, self.grammar)  # type: ignore[no-any-return,unused-ignore]
        raise ConditionParseError(
            f"a condition is text (e.g. 'daily') or a condition object; got {type(value).__name__}"
        )

    # -- events ------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[str, str | None], None]) -> Callable[[], None]:
        """Call ``callback(event, task_name)`` on every session event; returns an unsubscribe."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            try:
                self._subscribers.remove(callback)
            except ValueError:
                pass

        return unsubscribe

    def _emit(self, event: str, task: str | None = None) -> None:
        # Setting a set Event still takes its lock and notifies: skip it. A runner clears
        # `wake` before its step, so a change made before that clear is seen by the step.
        if not self.wake.is_set():
            self.wake.set()
        for callback in list(self._subscribers):
            try:
                callback(event, task)
            except Exception:
                log.exception("session event subscriber %r failed on %s", callback, event)

    def add_run_wrapper(
        self, factory: Callable[[BaseTask, str], AbstractContextManager[Any]]
    ) -> Callable[[], None]:
        """Enter ``factory(task, run_id)`` around each main/thread run, in its thread."""
        self._wrappers.append(factory)

        def remove() -> None:
            try:
                self._wrappers.remove(factory)
            except ValueError:
                pass

        return remove

    def _clock_moved(self) -> None:
        self._all_dirty = True
        self.wake.set()

    def _config_changed(self, key: str, value: Any) -> None:
        self._all_dirty = True
        self.wake.set()

    # -- registry ----------------------------------------------------------------------
    @property
    def tasks(self) -> list[BaseTask]:
        with self._lock:
            return list(self._tasks.values())

    def __getitem__(self, name: str) -> BaseTask:
        try:
            return self._tasks[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._tasks), n=3, cutoff=0.5)
            hint = (" Did you mean " + ", ".join(repr(c) for c in close) + "?") if close else ""
            raise KeyError(f"no task named {name!r}.{hint}") from None

    def __contains__(self, name: object) -> bool:
        if isinstance(name, BaseTask):
            return self._tasks.get(name.name) is name
        return name in self._tasks

    def __iter__(self) -> Iterator[BaseTask]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def create_task(
        self,
        start_cond: Any = None,
        *,
        name: str | None = None,
        func: Callable[..., Any] | None = None,
        func_name: str | None = None,
        path: Any = None,
        command: str | list[str] | None = None,
        code: str | None = None,
        execution: str | None = None,
        timeout: Any = None,
        end_cond: Any = None,
        priority: int = 0,
        disabled: bool = False,
        parameters: dict[str, Any] | None = None,
        namespace: dict[str, Any] | None = None,
    ) -> BaseTask:
        """Create a task (see ``app.task``); returns it (the old one under ``'ignore'``)."""
        from .conditions.base import false

        kinds = [
            k
            for k, v in (("func", func), ("path", path), ("command", command), ("code", code))
            if v is not None
        ]
        if func_name is not None and "path" not in kinds:
            raise TaskSetupError("func_name= goes with path= (the file that defines it)")
        if len(kinds) != 1:
            raise TaskSetupError(
                "a task needs exactly one of func=, path= + func_name=, command= or code=; "
                + (f"got {', '.join(kinds)}" if kinds else "got none")
            )
        if path is not None and func_name is None:
            raise TaskSetupError(f"path={str(path)!r} needs func_name= (the function to call)")
        if name is None:
            if func is not None:
                name = getattr(func, "__name__", None)
                if not name or name == "<lambda>":
                    raise TaskSetupError("this function has no usable name; pass name=")
            elif path is not None:
                name = f"{path}:{func_name}"
            elif command is not None:
                name = command if isinstance(command, str) else " ".join(map(str, command))
            else:
                raise TaskSetupError(
                    "a CodeTask needs a name: app.task(..., code=..., name='my_task')"
                )
        if not isinstance(name, str) or not name:
            raise TaskSetupError(f"a task name is a non-empty string; got {name!r}")
        cond = false if start_cond is None else self.parse_condition(start_cond)
        end = None if end_cond is None else self.parse_condition(end_cond)
        common: dict[str, Any] = {
            "start_cond": cond,
            "end_cond": end,
            "execution": check_execution(execution),
            "timeout": check_timeout(timeout),
            "priority": priority,
            "disabled": disabled,
            "parameters": parameters,
        }
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValueError(f"priority must be an integer; got {priority!r}")
        with self._lock:
            if name in self._tasks:
                policy = self.config.task_pre_exist
                if policy == "raise":
                    raise TaskExistsError(
                        f"a task named {name!r} exists. Pass another name=, delete it "
                        "first, or set config task_pre_exist to 'rename', 'ignore' or "
                        "'replace'."
                    )
                if policy == "ignore":
                    return self._tasks[name]
                if policy == "rename":
                    n = 1
                    while f"{name}-{n}" in self._tasks:
                        n += 1
                    name = f"{name}-{n}"
            task: BaseTask
            if func is not None or path is not None:
                task = FuncTask(self, name, func=func, path=path, func_name=func_name, **common)
                if path is not None:
                    try:
                        task.check_prerun()
                    except TaskSetupError as exc:
                        log.warning("%s (checked again at each run)", exc)
            elif command is not None:
                task = CommandTask(self, name, command=command, **common)
            else:
                assert code is not None
                task = CodeTask(self, name, code=code, namespace=namespace, **common)
            old = self._tasks.get(name)
            if old is not None:
                old._deleted = True
            self._tasks[name] = task
            self._all_dirty = True
            fit_cache = getattr(self.runlog, "fit_cache", None)
            if fit_cache is not None:
                fit_cache(len(self._tasks))
        self._emit("task_changed" if old is not None else "task_added", name)
        return task

    def delete_task(self, name: str | BaseTask) -> None:
        key = name.name if isinstance(name, BaseTask) else name
        with self._lock:
            task = self[key]
            del self._tasks[key]
            self._forced.pop(key, None)
            for other in self._reads.pop(key, ()):  # it no longer reads anything
                readers = self._readers.get(other)
                if readers is not None:
                    readers.discard(key)
                    if not readers:
                        del self._readers[other]
            self._wild.discard(key)
            task._deleted = True
        self._emit("task_deleted", key)

    def _update_task(self, task: BaseTask, attr: str, value: Any) -> None:
        with self._lock:
            setattr(task, attr, value)
            task._dirty = True
            task._cached_status = task._cached_status
        self._emit("task_changed", task.name)

    # -- forced runs -------------------------------------------------------------------
    def _has_forced(self, task: BaseTask) -> bool:
        return bool(self._forced.get(task.name))

    def _force(self, task: BaseTask, params: dict[str, Any]) -> None:
        with self._lock:
            queue = self._forced.setdefault(task.name, deque())
            if params or not queue:
                queue.append(dict(params))
        self._emit("task_changed", task.name)

    def _unforce(self, task: BaseTask) -> None:
        with self._lock:
            self._forced.pop(task.name, None)
        self._emit("task_changed", task.name)

    # -- state -------------------------------------------------------------------------
    def is_task_running(self, name: str) -> bool:
        return self._running.get(name, 0) > 0

    def _running_since(self, name: str) -> datetime | None:
        with self._lock:
            starts = [r.start for r in self._runs.values() if r.task.name == name]
        return self._dt(min(starts)) if starts else None

    def _status_of(self, task: BaseTask) -> Action | None:
        if not self.config.force_status_from_logs and task._cached_status is not None:
            return task._cached_status
        best: tuple[float, int, Action] | None = None
        for action in Action:
            ts = self.runlog.last(task.name, action)
            if ts is None:
                continue
            key = (ts, 0 if action is Action.RUN else 1, action)
            if best is None or key[:2] > best[:2]:
                best = key
        status = None if best is None else best[2]
        task._cached_status = status
        return status

    def _last_time(self, name: str, action: Action) -> datetime | None:
        return self._dt(self.runlog.last(name, action))

    def _is_due(self, task: BaseTask) -> bool:
        if self._has_forced(task):
            return True
        if task.disabled:
            return False
        return task.start_cond.is_met(self._context(task.name))

    def _next_due(self, task: BaseTask) -> datetime | None:
        ctx = self._context(task.name)
        if self._has_forced(task):
            return ctx.now
        return task.start_cond.next_due(ctx)

    # -- the scheduler step ------------------------------------------------------------
    def tick(self) -> list[str]:
        """One scheduler step at the clock's now; returns the names of the tasks started."""
        with self._tick_lock:
            if self.config.force_status_from_logs:
                quick = getattr(self.runlog, "refresh_if_free", None)
                if quick is None:
                    self.runlog.refresh()
                else:
                    quick()  # not behind our own end writer's commit (it wakes us after)
            now_ts = self.clock.time()
            now = datetime.fromtimestamp(now_ts, self.tz)
            self._check_runs(now, now_ts)
            if self.stop_requested:
                self._shut_next = None
                return []
            due = self._due(now, now_ts)
            # shut_cond after the due tasks are chosen: a run that ended in between (so
            # that its task is due again) is then seen by shut_cond too, and a shut_cond
            # it made true stops the scheduler before that task starts again.
            self._check_shut_cond(now)
            if self.stop_requested:
                with self._lock:
                    self._all_dirty = True  # what was found due is looked at again
                return []
            return self._launch_due(due, now_ts)

    def _cond_error(self, what: str, exc: Exception) -> None:
        if self.config.silence_cond_check:
            log.error(
                "%s raised (counted as false): %s",
                what,
                exc,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            return
        raise SchedulerError(f"{what} raised {type(exc).__name__}: {exc}") from exc

    def _check_shut_cond(self, now: datetime) -> None:
        cond = self.config.shut_cond
        self._shut_next = None
        if cond is None or self.stop_requested:
            return
        if isinstance(cond, str):
            cond = self.parse_condition(cond)
        ctx = self._context(None, now)
        try:
            if cond.is_met(ctx):
                log.info("shut_cond %s is true: shutting down", cond)
                self.shut_down()
                return
            nxt = cond.next_due(ctx)
            self._shut_next = None if nxt is None else nxt.timestamp()
        except Exception as exc:
            self._cond_error(f"shut_cond {cond}", exc)

    def _check_runs(self, now: datetime, now_ts: float) -> None:
        """Terminate runs past their timeout or whose end_cond is true."""
        with self._lock:
            runs = list(self._runs.values())
        self._end_next = None
        for run in runs:
            if run.handle is None or run.spec.flag.is_set():
                continue
            if run.deadline is not None and now_ts >= run.deadline:
                self._terminate_run(run, f"terminated: timeout of {run.spec.timeout:g} s")
                continue
            end = run.task.end_cond
            if end is None:
                continue
            ctx = self._context(run.task.name, now)
            try:
                if end.is_met(ctx):
                    self._terminate_run(run, f"terminated: end_cond {end} became true")
                    continue
                nxt = end.next_due(ctx)
            except Exception as exc:
                self._cond_error(f"end_cond of task {run.task.name!r}", exc)
                continue
            if nxt is not None and (self._end_next is None or nxt.timestamp() < self._end_next):
                self._end_next = nxt.timestamp()

    def _due(self, now: datetime, now_ts: float) -> list[tuple[BaseTask, dict[str, Any] | None]]:
        from .conditions.base import OUTSIDE_RECHECK, Context

        due: list[tuple[BaseTask, dict[str, Any] | None]] = []
        with self._lock:
            all_dirty = self._all_dirty
            self._all_dirty = False
            wild_dirty = self._wild_dirty
            self._wild_dirty = False
            wild = self._wild
            reads = _Reads(self.runlog, self.is_task_running)
            for task in self._tasks.values():
                name = task.name
                if self._forced.get(name):
                    if not self._running.get(name):
                        due.append((task, self._forced[name][0]))
                    continue
                if task._disabled or self._running.get(name):
                    continue
                if not (
                    all_dirty
                    or task._dirty
                    or (task._next_check is not None and task._next_check <= now_ts)
                    or (wild_dirty and name in wild)
                ):
                    continue
                task._dirty = False
                reads.names.clear()
                reads.wild = False
                ctx = Context(now, reads, name, reads.is_running)
                try:
                    if task._start_cond.is_met(ctx):
                        task._next_check = None
                        due.append((task, None))
                    else:
                        nxt = task._start_cond.next_due(ctx)
                        check = None if nxt is None else nxt.timestamp()
                        if task._start_cond.reads_outside():
                            # A custom phrase: nothing announces its change; look again soon.
                            soon = now_ts + OUTSIDE_RECHECK
                            check = soon if check is None else min(check, soon)
                        task._next_check = check
                except Exception as exc:
                    task._next_check = now_ts + _COND_ERROR_RETRY
                    self._cond_error(f"the condition of task {name!r} ({task._start_cond})", exc)
                finally:
                    self._note_reads(name, reads)
        due.sort(key=lambda item: -item[0].priority)
        return due

    def _note_reads(self, name: str, reads: _Reads) -> None:
        """Remember which other tasks' runs can change ``name``'s condition (under the
        lock; its own runs always do, see :meth:`_run_event`)."""
        names = reads.names
        if reads.wild or not names:
            self._wild.add(name)
        else:
            self._wild.discard(name)
        old = self._reads.get(name)
        others = len(names) - (name in names)
        if old is not None and len(old) == others and all(o in names for o in old):
            return  # the usual case: what it read last time
        new = tuple(o for o in names if o != name)  # a tuple of str: no GC tracking
        for other in old or ():
            readers = self._readers.get(other)
            if readers is not None:
                readers.discard(name)
                if not readers:
                    del self._readers[other]
        for other in new:
            self._readers.setdefault(other, set()).add(name)
        self._reads[name] = new

    def _run_event(self, name: str) -> None:
        """A run of ``name`` started or ended: look again at the conditions that read it
        (under the lock)."""
        task = self._tasks.get(name)
        if task is not None:
            task._dirty = True
        for reader in self._readers.get(name, ()):
            other = self._tasks.get(reader)
            if other is not None:
                other._dirty = True
        if self._wild:
            self._wild_dirty = True

    def seconds_until_wake(self, cap: float = 60.0) -> float:
        """Seconds until the next thing can be due by the clock alone (at most ``cap``)."""
        with self._lock:
            if self._all_dirty or self.stop_requested:
                return 0.0
            if self._wild_dirty and self._wild:
                return 0.0
            times: list[float] = []
            for t in self._tasks.values():
                # A running task is looked at again when its run ends (an event), a
                # disabled one when it is enabled or forced: neither can be due before.
                if self._running.get(t.name) or t.name in self._slot_wait:
                    continue  # (a task waiting for a slot is looked at when a run ends)
                if self._forced.get(t.name):
                    return 0.0
                if t._disabled:
                    continue
                if t._dirty:
                    return 0.0
                if t._next_check is not None:
                    times.append(t._next_check)
            times += [r.deadline for r in self._runs.values() if r.deadline is not None]
        if self._shut_next is not None:
            times.append(self._shut_next)
        if self._end_next is not None:
            times.append(self._end_next)
        if not times:
            return cap
        return max(0.0, min(cap, min(times) - self.clock.time()))

    # -- launching ---------------------------------------------------------------------
    def _executor(self, kind: str) -> Executor:
        executor = self._executors.get(kind)
        if executor is None:
            executor = make_executor(kind, self.clock, max_processes=self.config.max_process_count)
            self._executors[kind] = executor
        return executor

    def _resolve(
        self, task: BaseTask, params: dict[str, Any], process: bool, flag: RunFlag
    ) -> tuple[dict[str, Any], list[str]]:
        names = task.signature_names()
        defaults = task.marker_defaults()
        if (
            not defaults
            and not params
            and not task.parameters
            and (names is None or not self.parameters or names.isdisjoint(self.parameters))
        ):
            return {}, []  # the usual run: nothing to pass, nothing to resolve
        kwargs: dict[str, Any] = {}
        for key, default in defaults.items():
            if isinstance(default, Argument | Private):
                kwargs[key] = default
        if names is not None:
            for key, value in self.parameters.items():
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
        ctx = ResolveContext(self, task, flag)
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
        return _InTask(task, run_id, target, tuple(self._wrappers))

    def _prerun_failed(self, task: BaseTask, exc: BaseException, now_ts: float) -> None:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        detail = f"the run could not start: {text}"
        if not isinstance(exc, TaskSetupError):
            detail += "\n" + "".join(traceback.format_exception(exc))
        self.runlog.log_run(
            RunRecord(
                "",
                task.name,
                Action.FAIL,
                now_ts,
                now_ts,
                now_ts,
                exc_text=detail,
                owner=self.owner,
            )
        )
        task._cached_status = Action.FAIL
        with self._lock:
            self._all_dirty = True
        self._emit("run_ended", task.name)
        if not self.config.silence_task_prerun:
            raise SchedulerError(f"task {task.name!r} could not start: {text}") from exc
        log.error("task %r could not start (silence_task_prerun): %s", task.name, text)

    def _launch_due(
        self, due: list[tuple[BaseTask, dict[str, Any] | None]], now_ts: float
    ) -> list[str]:
        """Start the due runs in priority order; returns the names started.

        Runs are prepared one by one, and their starts written in batches of up to
        ``_START_BATCH`` in one run-log transaction each (a commit per run would cost more
        than the rest of a launch); a run begins only once its start is written. A ``main``
        run goes alone, after the runs before it have started, as it blocks this thread.
        """
        started: list[str] = []
        batch: list[_Prepared] = []
        try:
            for task, params in due:
                prepared = self._prepare(task, params, now_ts, batch)
                if prepared is None:
                    continue
                if prepared.executor.kind == "main":
                    ready, batch = batch, []
                    self._start_batch(ready, now_ts, started)
                    self._start_batch([prepared], now_ts, started)
                    continue
                batch.append(prepared)
                if len(batch) >= _START_BATCH:
                    ready, batch = batch, []
                    self._start_batch(ready, now_ts, started)
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
        process = execution == "process"
        try:
            executor = self._executor(execution)
        except Exception as exc:
            self._pop_forced(task, params)
            self._prerun_failed(task, exc, now_ts)
            return None
        capacity = executor.capacity()
        if capacity is not None:
            capacity -= sum(1 for p in pending if p.executor is executor)
            if capacity <= 0:
                with self._lock:  # looked at again when a run ends (not before: no spin)
                    self._slot_wait.add(task.name)
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
        return _Prepared(task, executor, target, flag, privates, max(now_ts, self.clock.time()))

    def _start_batch(self, batch: list[_Prepared], now_ts: float, started: list[str]) -> None:
        """Write the starts of ``batch`` in one transaction, then start each run."""
        if not batch:
            return
        # created: when the step found them due; start: when each was prepared, just
        # before this write. In a long step the later runs start later, and a condition
        # on their last start (every 10 minutes) then finds them due again one by one,
        # not all at the step's instant (measured: lag-1000 p50 28 -> 11 ms).
        records = start_runs(
            self.runlog,
            [p.task.name for p in batch],
            created=now_ts,
            start=[p.at for p in batch],
            owner=self.owner,
        )
        runs: list[tuple[_Prepared, _Run]] = []
        with self._lock:
            for prepared, record in zip(batch, records, strict=True):
                task = prepared.task
                target = prepared.target
                if prepared.executor.kind != "process":
                    target = self._wrap(task, record.run_id, target)
                spec = RunSpec(task.name, record.run_id, target, task.timeout, prepared.flag)
                run = _Run(task, spec, prepared.at, prepared.privates)
                self._runs[run.run_id] = run
                self._running[task.name] = self._running.get(task.name, 0) + 1
                task._cached_status = Action.RUN
                self._run_event(task.name)
                runs.append((prepared, run))
        error: SchedulerError | None = None
        for prepared, run in runs:
            name = run.task.name
            self._emit("run_started", name)
            run.sync = prepared.executor.kind == "main"
            try:
                run.handle = prepared.executor.start(
                    run.spec, functools.partial(self._on_done, run)
                )
            except Exception as exc:
                text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                run.sync = True
                self._on_done(
                    run,
                    RunOutcome(
                        Action.FAIL, self.clock.time(), exc_text=f"the run could not start: {text}"
                    ),
                )
                if not self.config.silence_task_prerun:
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
        with self._lock:
            queue = self._forced.get(task.name)
            if queue:
                queue.popleft()
                if not queue:
                    del self._forced[task.name]

    def _on_done(self, run: _Run, outcome: RunOutcome) -> None:
        """A run ended (called once, from whichever thread saw it end).

        The end goes to the end writer thread, which writes the ends queued meanwhile in
        one transaction and then acknowledges each (status, ``last()``, ``returns``, the
        ``run_ended`` event, ``wait_idle``), so a worker is free at once. A caller on the
        scheduler's own thread (a ``main`` run, a run that could not start) waits for its
        end to be acknowledged, so the next step sees it: it writes the end itself."""
        exc_text, output = outcome.exc_text, outcome.output
        if outcome.action is Action.TERMINATE and run.reason:
            exc_text = run.reason if not exc_text else f"{run.reason}\n{exc_text}"
        for secret in run.privates:
            if exc_text:
                exc_text = exc_text.replace(secret, "***")
            if output:
                output = output.replace(secret, "***")
        item = _End(run, outcome, exc_text, output)
        if run.sync:
            self._finish([item])
            return
        with self._ends_cv:
            self._ends.append(item)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_ends, name="redengine_nb:end-writer", daemon=True
                )
                self._writer.start()
            else:
                self._ends_cv.notify()

    def _write_ends(self) -> None:
        """The end writer: write queued ends in batches and acknowledge them; exit after
        ``_WRITER_KEEPALIVE`` seconds without any (it waits without waking)."""
        while True:
            with self._ends_cv:
                if not self._ends:
                    self._ends_cv.wait(_WRITER_KEEPALIVE)
                    if not self._ends:
                        self._writer = None
                        return
                batch = self._ends[:_END_BATCH]
                del self._ends[:_END_BATCH]
            try:
                self._finish(batch)
            except Exception:  # the writer must not die: later ends still need it
                log.exception("acknowledging %d run end(s) failed", len(batch))

    def _finish(self, batch: list[_End]) -> None:
        """Write ``batch``'s ends in one transaction, then acknowledge each, in order."""
        ends = [
            (e.run.task.name, e.run.run_id, e.action, e.end, e.exc_text, e.output) for e in batch
        ]
        try:
            results: list[Any] = end_runs(self.runlog, ends)
        except Exception as exc:
            results = [exc] * len(batch)
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "could not write the end of run %s of task %r to the run log",
                    item.run.run_id,
                    item.run.task.name,
                    exc_info=result,
                )
            if item.action is Action.SUCCESS:
                self.returns[item.run.task.name] = item.return_value
        with self._lock:
            for item in batch:
                run = item.run
                name = run.task.name
                left = self._running.get(name, 0) - 1
                if left > 0:
                    self._running[name] = left
                else:
                    self._running.pop(name, None)
                run.task._cached_status = item.action
                self._last_runtime[name] = item.end - run.start
                self._run_event(name)
            for name in self._slot_wait:  # a slot may be free now
                waiting = self._tasks.get(name)
                if waiting is not None:
                    waiting._dirty = True
            self._slot_wait.clear()
        for item in batch:
            self._emit("run_ended", item.run.task.name)
        # Last, so that wait_idle() returns only once the run_ended events are out.
        with self._lock:
            for item in batch:
                self._runs.pop(item.run.run_id, None)
            if not self._runs:
                self._idle.notify_all()  # wait_idle() waits for no run at all

    def _terminate_run(self, run: _Run, reason: str) -> None:
        log.info("task %r: %s", run.task.name, reason)
        if run.reason is None:
            run.reason = reason
        run.spec.flag.set()
        if run.handle is not None:
            run.handle.terminate()

    def _terminate_task(self, name: str, reason: str) -> None:
        with self._lock:
            runs = [r for r in self._runs.values() if r.task.name == name]
        for run in runs:
            self._terminate_run(run, reason)

    # -- lifecycle -----------------------------------------------------------------------
    def mark_crashed_runs(self) -> int:
        """Turn open runs whose owning process is gone into ``crash`` records."""
        try:
            open_runs = self.runlog.open_runs()
        except Exception:
            log.exception("could not read open runs from %s", self.runlog.location)
            return 0
        dead = [
            r.run_id
            for r in open_runs
            if r.run_id not in self._runs
            and r.owner != self.owner
            and not self._owner_alive(r.owner)
        ]
        if not dead:
            return 0
        count = self.runlog.mark_crashed(dead, end=self.clock.time())
        log.warning("marked %d run(s) left open by a dead scheduler as crash", count)
        self._all_dirty = True
        return count

    def in_task(self) -> bool:
        """True when called from inside a main/thread run of this process."""
        return getattr(_local, "task", None) is not None

    def shut_down(self) -> None:
        """Ask the scheduler to stop (it finishes its step, then waits for or ends runs).

        A shutdown wins over a restart asked for earlier and not yet carried out."""
        with self._state_lock:
            self.restart_requested = False
            self.stop_requested = True
        self.wake.set()

    def restart(self) -> None:
        """Ask the scheduler to restart the way config ``restarting`` says."""
        with self._state_lock:
            self.restart_requested = True
            self.stop_requested = True
        self.wake.set()

    def take_restart(self) -> bool:
        """For the runner, once its loop ended: was a restart asked for (and not cancelled
        by a later shutdown)? Clears both requests atomically, so a shutdown that arrives
        while the runner restarts is never lost."""
        with self._state_lock:
            wanted = self.restart_requested
            self.restart_requested = False
            if wanted:
                self.stop_requested = False
            return wanted

    def clear_stop(self) -> None:
        """For the runner: forget a stop request (the scheduler has stopped or starts)."""
        with self._state_lock:
            self.stop_requested = False
            self.restart_requested = False

    def terminate_all(self, reason: str = "terminated: the scheduler shut down") -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            self._terminate_run(run, reason)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no run is alive; False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._runs, timeout)

    def nudge(self) -> None:
        """Wake every wait of the scheduler (its sleep and ``wait_idle``) so that it looks
        again; nothing changes otherwise. Used to let the main thread run signal handlers."""
        self.wake.set()
        with self._idle:
            self._idle.notify_all()

    def close_executors(self, *, terminate: bool) -> None:
        executors, self._executors = self._executors, {}
        for executor in executors.values():
            try:
                executor.shutdown(terminate=terminate)
            except Exception:
                log.exception("shutting down the %s executor failed", executor.kind)

    @property
    def running_runs(self) -> int:
        return len(self._runs)

    # -- tables --------------------------------------------------------------------------
    def _runtime_of(self, name: str) -> float | None:
        if name in self._last_runtime:
            return self._last_runtime[name]
        for record in reversed(self.runlog.records(task=name, limit=3)):
            if record.action is not Action.RUN and record.runtime is not None:
                self._last_runtime[name] = record.runtime
                return record.runtime
        return None

    def status(self) -> pd.DataFrame:
        """One row per task: what it is, how it went, when it is next due."""
        import pandas as pd

        rows = []
        now = self.now()
        for task in self.tasks:
            try:
                nxt = (
                    now
                    if self._has_forced(task)
                    else task.start_cond.next_due(self._context(task.name, now))
                )
            except Exception as exc:
                log.debug("next_due of %r raised: %s", task.name, exc)
                nxt = None
            rows.append(
                {
                    "name": task.name,
                    "condition": str(task.start_cond),
                    "status": task.status,
                    "last_run": task.last_run,
                    "last_success": task.last_success,
                    "last_fail": task.last_fail,
                    "next_due": None if task.disabled else nxt,
                    "is_running": task.is_running,
                    "disabled": task.disabled,
                    "execution": task.execution,
                    "runs": self.runlog.count(task.name, Action.RUN),
                    "fails": self.runlog.count(task.name, Action.FAIL),
                    "runtime": self._runtime_of(task.name),
                    "priority": task.priority,
                    "running_since": task.running_since,
                }
            )
        return pd.DataFrame(rows, columns=STATUS_COLUMNS)

    def get_task_log(
        self,
        task: str | None = None,
        action: str | Action | None = None,
        since: Any = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Run records as a DataFrame, newest last."""
        import pandas as pd

        from .timetext import parse_datetime

        act = None if action is None else Action.parse(action)
        since_ts: float | None
        if since is None:
            since_ts = None
        elif isinstance(since, int | float):
            since_ts = float(since)
        else:
            since_ts = parse_datetime(since, self.tz).timestamp()
        records = self.runlog.records(task=task, action=act, since=since_ts, limit=limit)
        rows = [r.as_dict(self.tz) for r in records]
        return pd.DataFrame(rows, columns=LOG_COLUMNS)

    def __repr__(self) -> str:
        return f"<Session {len(self._tasks)} tasks, log={self.runlog.location!r}>"
