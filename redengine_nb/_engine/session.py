"""The session: the task registry, the scheduler step, and every runtime change.

``tick()`` is the whole scheduling decision: refresh the run log, enforce timeouts and
end conditions, evaluate the conditions of the tasks that may have changed, and start what
is due in priority order. A runner thread (``runner.py``) only loops ``tick()`` and waits
for :meth:`Session.seconds_until_wake` or an event.

Caching: each task remembers when its condition can next become true by the clock alone
(``_next_check``, kept as a heap). A tick re-evaluates a task only when that time has
come, when the task itself changed, or after an event that may change its condition (a
run it reads started or ended, the clock went back, the config changed). Everything is
guarded by one re-entrant lock that is never held while a task runs.

:class:`Session` owns three parts, each an object with its own state: the scheduler step
(``step.py``, :class:`Step`: ``tick()``, the checks of timeouts, end conditions and
``shut_cond``, and which conditions to look at again), the launcher (``launch.py``,
:class:`Launcher`: preparing the due runs, writing their starts in batches, the
executors) and the end writer (``ends.py``, :class:`EndWriter`: writing and
acknowledging run ends, terminating runs). The session itself holds what they share —
the task registry, the runs in flight, the forced-run queues, the status cache, one lock
— and the events, what a task asks about its own state, the stop and restart requests
the runner acts on, and the status and log tables.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Unpack
from zoneinfo import ZoneInfo

from ..clock import Clock, get_zone
from ..config import Config
from ..errors import ConditionParseError, RunLogError, TaskExistsError, TaskSetupError
from ..records import Action
from ..runlog.base import RunLog, is_lease_id, last_of
from .ends import EndWriter
from .launch import Launcher, _local, _Run
from .options import TaskOptions, check_execution, check_options, check_target, check_timeout
from .step import Step
from .tasks import BaseTask, CodeTask, CommandTask, FuncTask

if TYPE_CHECKING:
    import pandas as pd

    from ..conditions.base import BaseCondition, Context
    from ..conditions.parser import Grammar

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
    "warning_changed",
)


#: The actions that close a run (an open run is a ``RUN`` record newer than all of these).
_ENDS = tuple(a for a in Action if a is not Action.RUN)


class Session:
    """Tasks, parameters, the run log and the scheduling step of one app."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        runlog: RunLog,
        *,
        grammar: Grammar | None = None,
        app: Any = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.runlog = runlog
        self.grammar = grammar
        self.app = app
        self.parameters: dict[str, Any] = {}
        self.returns: dict[str, Any] = {}
        # What 'scheduler has more than 3 cycles' / 'scheduler started 10 minutes ago' read:
        # steps taken, and the clock at the first one.
        self.cycles = 0
        self.started: float | None = None
        self._tasks: dict[str, BaseTask] = {}
        self._lock = threading.RLock()
        self._tick_lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._runs: dict[str, _Run] = {}  # runs in flight, by run id
        self._running: dict[str, int] = {}  # runs in flight, by task name
        self._forced: dict[str, deque[dict[str, Any]]] = {}
        self._status: dict[str, Action] = {}  # each task's newest action, as last known
        self._subscribers: list[Callable[[str, str | None], None]] = []
        self.wake = threading.Event()
        #: The runner's thread while it loops (else None): an event it emits itself needs
        #: no wake-up, as it works out how long to sleep after its step anyway.
        self.runner_thread: int | None = None
        # The parts, each with its own state (the launcher uses the end writer's on_done).
        self.ends = EndWriter(self)
        self.step = Step(self)
        self.launcher = Launcher(self)
        self._state_lock = threading.Lock()
        self.stop_requested = False
        self.restart_requested = False
        self.runner: Any = None
        from ..runlog.owner import owner_alive
        from .clockstep import ClockGuard
        from .lease import LeaseKeeper

        self._owner_alive = owner_alive
        #: This scheduler's lease on the run log (taken at the first start it writes).
        self.lease = LeaseKeeper(runlog, clock.time, lambda: self.config.lease_ttl)
        #: Watches for backward clock steps; gives the conditions their history.
        self.clock_guard = ClockGuard(runlog, lambda: self.config.clock_step_tolerance)
        self.clock_guard.start(clock.time())
        # A step seen from now on is news for the panel and serve (one seen at start is
        # there before anyone subscribes: they read it then).
        self.clock_guard.on_step = lambda: self._emit("warning_changed")
        clock.subscribe(self._clock_moved)
        config.on_change(self._config_changed)
        # A store shared by several schedulers (PostgreSQL) tells when another one wrote:
        # a run that ended there may make a task due here, so wake at once.
        hook = getattr(runlog, "on_change", None)
        if hook is not None:
            hook(self._log_changed)
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
        from ..conditions.base import Context

        now = now or self.now()
        return Context(
            now,
            self.clock_guard.history(now.timestamp()),
            task,
            self.is_task_running,
            parameters=self.parameters,
            cycles=self.cycles,
            started=self.started,
        )

    @property
    def env(self) -> Any:
        """The session parameter ``env`` (Red Engine's ``session.env``), which the
        condition ``env 'prod'`` reads; ``None`` when unset."""
        return self.parameters.get("env")

    @env.setter
    def env(self, value: Any) -> None:
        self.parameters["env"] = value

    # -- conditions --------------------------------------------------------------------
    def parse_condition(self, value: Any) -> BaseCondition:
        """A condition object from text (parsed with this app's grammar) or an object."""
        from ..conditions.base import BaseCondition

        if isinstance(value, BaseCondition):
            return value
        if isinstance(value, str):
            from ..conditions.parser import parse

            return parse(value, self.grammar)
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
        # The runner's own events (a run it started, a main run's end) would only make it
        # take one more step for nothing: what they change is in the step's state, which
        # seconds_until_wake() reads before the runner sleeps.
        if not self.wake.is_set() and threading.get_ident() != self.runner_thread:
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
        self.launcher.wrappers.append(factory)

        def remove() -> None:
            try:
                self.launcher.wrappers.remove(factory)
            except ValueError:
                pass

        return remove

    def _clock_moved(self) -> None:
        # Forward, the step's check times say what the move made due, as they do for
        # passing time; a step that finds the clock went back looks at everything.
        self.wake.set()

    def _log_changed(self) -> None:
        # Another scheduler wrote to the shared log: any condition reading another task's
        # history may have changed, and which ones is not known here.
        self.step.invalidate()
        self.wake.set()

    def _config_changed(self, key: str, value: Any) -> None:
        self.step.invalidate()
        self.wake.set()

    # -- the parts' faces --------------------------------------------------------------
    def tick(self) -> list[str]:
        """One scheduler step at the clock's now; returns the names of the tasks started."""
        return self.step.tick()

    def seconds_until_wake(self, cap: float = 60.0) -> float:
        """Seconds until the next thing can be due by the clock alone (at most ``cap``)."""
        return self.step.seconds_until_wake(cap)

    def begin(self) -> None:
        """For the runner, as its loop (re)starts: mark runs dead schedulers left open,
        look at every condition again, say the scheduler started."""
        self.mark_crashed_runs()
        self.lease.owner  # noqa: B018 - take the lease now: other schedulers see us alive
        # Thread workers and the end writer made now, not by the first runs due.
        self.launcher.warm()
        self.ends.warm()
        self.step.invalidate()
        self._emit("scheduler_started", None)

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

    def create_task(self, start_cond: Any = None, **options: Unpack[TaskOptions]) -> BaseTask:
        """Create a task (see ``app.task``); returns it (the old one under ``'ignore'``)."""
        from ..conditions.base import false

        check_options(options)
        check_target(options)
        name = options.get("name")
        func = options.get("func")
        path = options.get("path")
        func_name = options.get("func_name")
        command = options.get("command")
        code = options.get("code")
        priority = options.get("priority", 0)
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
        end_cond = options.get("end_cond")
        end = None if end_cond is None else self.parse_condition(end_cond)
        common: dict[str, Any] = {
            "start_cond": cond,
            "end_cond": end,
            "execution": check_execution(options.get("execution")),
            "timeout": check_timeout(options.get("timeout")),
            "priority": priority,
            "disabled": options.get("disabled", False),
            "parameters": options.get("parameters"),
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
                task = CodeTask(self, name, code=code, namespace=options.get("namespace"), **common)
            old = self._tasks.get(name)
            self._tasks[name] = task
            self._status.pop(name, None)  # a new definition: read it from the log
            self.step.task_changed(name)
            self.step.invalidate()
            self.runlog.fit_cache(len(self._tasks))
        self._emit("task_changed" if old is not None else "task_added", name)
        return task

    def delete_task(self, name: str | BaseTask) -> None:
        key = name.name if isinstance(name, BaseTask) else name
        with self._lock:
            del self._tasks[self[key].name]  # self[key]: a KeyError naming close matches
            self._forced.pop(key, None)
            self._status.pop(key, None)
            self.step.forget(key)
        self._emit("task_deleted", key)

    @contextmanager
    def _changing(self, task: BaseTask) -> Iterator[None]:
        """Around a change of ``task``'s definition (made by the task, in the block):
        under the lock, then the step looks at it again and ``task_changed`` is sent."""
        with self._lock:
            yield
            self.step.task_changed(task.name)
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
        """A run of ``name`` is alive here, or (with ``force_status_from_logs``) the run
        log says so: its newest record is an open run, written by another scheduler
        perhaps, as the task's status reads it."""
        if self._running.get(name, 0) > 0:
            return True
        if not self.config.force_status_from_logs:
            return False
        started = self.runlog.last(name, Action.RUN)
        if started is None:
            return False
        ended = last_of(self.runlog, name, _ENDS)
        return ended is None or started > ended

    def _running_since(self, name: str) -> datetime | None:
        with self._lock:
            starts = [r.start for r in self._runs.values() if r.task.name == name]
        return self._dt(min(starts)) if starts else None

    def _status_of(self, task: BaseTask) -> Action | None:
        cached = self._status.get(task.name)
        if not self.config.force_status_from_logs and cached is not None:
            return cached
        best: tuple[float, int, Action] | None = None
        for action in Action:
            ts = self.runlog.last(task.name, action)
            if ts is None:
                continue
            key = (ts, 0 if action is Action.RUN else 1, action)
            if best is None or key[:2] > best[:2]:
                best = key
        status = None if best is None else best[2]
        if status is not None:
            self._status[task.name] = status
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
    def owner(self) -> str:
        """This scheduler's lease id in the run log (the ``owner`` of the runs it starts);
        the lease is taken at the first use."""
        return self.lease.owner

    def owns(self, owner: str | None) -> bool:
        """Whether a run's ``owner`` is one of this session's leases (now or before a
        stop: a stopped scheduler releases its lease; it takes a new one to start again)."""
        return owner is not None and owner in self.lease.held

    @property
    def clock_step(self) -> str | None:
        """The backward clock step beyond ``clock_step_tolerance`` in effect, as text, or
        None (none, the clock has caught up with the future records, or dismissed)."""
        return self.clock_guard.step

    def dismiss_clock_step(self) -> bool:
        """Hide the clock-step warning (the panel, ``%tasks``, ``serve``'s report). Its
        effect stays: records after now + ``clock_step_tolerance`` are ignored until the
        clock catches up; a later step is reported again. False if there was none."""
        return self.clock_guard.dismiss()

    @property
    def store_error(self) -> str | None:
        """The run log's write error while run ends wait to be written, else None."""
        return self.ends.store_error

    @property
    def fatal_error(self) -> BaseException | None:
        """What stopped the scheduler for good (its run log's file was lost), else None."""
        return self.ends.fatal_error

    def mark_crashed_runs(self) -> int:
        """Turn open runs whose scheduler is gone into ``crash`` records: those of expired
        leases (and of this host's schedulers whose process died), and those written
        before leases whose owning process is gone. First, the process runs such a
        scheduler of this host left alive are killed and their temp folders removed."""
        from ..executors.orphans import sweep_orphans

        sweep_orphans()
        try:
            count = len(self.lease.reap())
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
        self.step.invalidate()
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
            self.ends.terminate_run(run, reason)

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
        self.launcher.close_executors(terminate=terminate)

    def dask_cluster(self) -> dict[str, Any] | None:
        """The Dask cluster of this session's ``dask`` runs, for panels: ``{'address',
        'workers', 'dashboard'}`` (``None`` until a dask run has connected). No round trip."""
        info = getattr(self.launcher._executors.get("dask"), "cluster_info", None)
        return None if info is None else info()

    @property
    def running_runs(self) -> int:
        return len(self._runs)

    # -- tables (tables.py) ------------------------------------------------------------
    def status(self) -> pd.DataFrame:
        """One row per task: what it is, how it went, when it is next due."""
        from .tables import status_frame

        return status_frame(self)

    def get_task_log(
        self,
        task: str | None = None,
        action: str | Action | None = None,
        since: Any = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Run records as a DataFrame, newest last."""
        from .tables import log_frame

        return log_frame(self, task, action, since, limit)

    def __repr__(self) -> str:
        return f"<Session {len(self._tasks)} tasks, log={self.runlog.location!r}>"
