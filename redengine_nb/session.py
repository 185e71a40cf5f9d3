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

:class:`Session` is assembled from parts that share its state, all of it created in
``Session.__init__``: the scheduler step (``_step.py``: ``tick()``, the checks of
timeouts, end conditions and ``shut_cond``, and which conditions to look at again),
launching (``_launch.py``: preparing the due runs and writing their starts in batches)
and the end writer (``_ends.py``: writing and acknowledging run ends, terminating runs).
This module holds the class itself: the task registry, events and run wrappers, what a
task asks about its own state, the stop and restart requests the runner acts on, and the
status and log tables.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ._ends import _End, _EndWriter
from ._launch import _START_BATCH as _START_BATCH  # the tests read it from here
from ._launch import _Launcher, _local, _Run
from ._step import _Step
from .clock import Clock, get_zone
from .config import Config
from .errors import ConditionParseError, RunLogError, TaskExistsError, TaskSetupError
from .executors import Executor
from .records import Action
from .runlog.base import RunLog, is_lease_id
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


class Session(_Step, _Launcher, _EndWriter):
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
        self._ended = self._on_done  # one bound method, kept by every run (see _Run)
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
        self._pruned_at: float | None = None  # when log_retention last ran
        self._retry_wake = threading.Event()  # set to retry a failed end write at once
        #: The run log's last write error while run ends wait to be written (else None).
        self.store_error: str | None = None
        #: What stopped the scheduler for good (the run log's file was lost), else None.
        self.fatal_error: BaseException | None = None
        self._state_lock = threading.Lock()
        self.stop_requested = False
        self.restart_requested = False
        self.runner: Any = None
        from ._lease import LeaseKeeper
        from .runlog.owner import owner_alive

        self._owner_alive = owner_alive
        self._lease = LeaseKeeper(runlog, clock.time, lambda: self.config.lease_ttl)
        from ._clockstep import ClockGuard

        self._clock_guard = ClockGuard(runlog, lambda: self.config.clock_step_tolerance)
        self._clock_guard.start(clock.time())
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

        now = now or self.now()
        history = self._clock_guard.history(now.timestamp())
        return Context(now, history, task, self.is_task_running)

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
            fit_cache = self.runlog.fit_cache
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

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def clock_step(self) -> str | None:
        """The backward clock step beyond ``clock_step_tolerance`` seen, as text, or None."""
        return self._clock_guard.step

    @property
    def owner(self) -> str:
        """This scheduler's lease id in the run log (the ``owner`` of the runs it starts);
        the lease is taken at the first use."""
        return self._lease.owner

    def mark_crashed_runs(self) -> int:
        """Turn open runs whose scheduler is gone into ``crash`` records: those of expired
        leases (and of this host's schedulers whose process died), and those written
        before leases whose owning process is gone."""
        from .executors.orphans import sweep_orphans

        sweep_orphans()  # a child of a dead scheduler still at work dies before its crash
        try:
            count = len(self._lease.reap())
            open_runs = self.runlog.open_runs()
        except RunLogError:
            log.exception("could not reap the open runs of %s", self.runlog.location)
            return 0
        dead = [
            r.run_id
            for r in open_runs
            if r.run_id not in self._runs
            and not is_lease_id(r.owner)
            and not self._owner_alive(r.owner)
        ]
        if dead:
            count += self.runlog.mark_crashed(dead, end=self.clock.time())
        if not count:
            return 0
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
