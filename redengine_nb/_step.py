"""The scheduler step: the part of :class:`~redengine_nb.session.Session` that decides.

``_Step.tick()`` refreshes the run log (when statuses come from it), terminates the runs
past their timeout or whose end condition became true, evaluates the start conditions of
the tasks that may have changed, looks at ``shut_cond`` and hands what is due to the
launcher (``_launch.py``). While a condition is evaluated, ``_Reads`` notes which tasks'
history it read, so that a run starting or ending makes only the conditions that read its
task be looked at again. ``seconds_until_wake`` tells the runner how long nothing can be
due.

``_Step`` is a mixin without state of its own: ``Session.__init__`` creates all it uses.
The declarations under ``TYPE_CHECKING`` in its class body name that state and the methods
it calls on the session's other parts, for the type checker only.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import SchedulerError
from .records import Action
from .runlog.base import last_of

if TYPE_CHECKING:
    import threading
    from collections import deque
    from collections.abc import Callable, Sequence
    from zoneinfo import ZoneInfo

    from ._clockstep import ClockGuard
    from ._launch import _Run
    from ._lease import LeaseKeeper
    from .clock import Clock
    from .conditions.base import BaseCondition, Context
    from .config import Config
    from .runlog.base import RunLog
    from .tasks import BaseTask

log = logging.getLogger("redengine_nb.session")  # one logger for all the parts of the session

_COND_ERROR_RETRY = 10.0  # seconds before a condition that raised (silenced) is tried again
# Every action that closes a run: a start newer than all of them is a run still open.
_CLOSING = tuple(a for a in Action if a is not Action.RUN)


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
        return last_of(self.history, task, actions)

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


class _Step:
    """The scheduler step of a :class:`~redengine_nb.session.Session` (a mixin)."""

    if TYPE_CHECKING:
        # Made by Session.__init__, or defined by the session and its other parts.
        config: Config
        clock: Clock
        runlog: RunLog
        _lease: LeaseKeeper
        _clock_guard: ClockGuard
        stop_requested: bool
        _lock: threading.RLock
        _tick_lock: threading.RLock
        _tasks: dict[str, BaseTask]
        _runs: dict[str, _Run]
        _running: dict[str, int]
        _forced: dict[str, deque[dict[str, Any]]]
        _all_dirty: bool
        _slot_wait: set[str]
        _reads: dict[str, tuple[str, ...]]
        _readers: dict[str, set[str]]
        _wild: set[str]
        _wild_dirty: bool
        _shut_next: float | None
        _end_next: float | None

        @property
        def tz(self) -> ZoneInfo: ...
        def _context(self, task: str | None, now: datetime | None = None) -> Context: ...
        def parse_condition(self, value: Any) -> BaseCondition: ...
        def is_task_running(self, name: str) -> bool: ...
        def shut_down(self) -> None: ...
        def _launch_due(
            self, due: list[tuple[BaseTask, dict[str, Any] | None]], now_ts: float
        ) -> list[str]: ...
        def _terminate_run(self, run: _Run, reason: str) -> None: ...

    # -- the scheduler step ------------------------------------------------------------
    def tick(self) -> list[str]:
        """One scheduler step at the clock's now; returns the names of the tasks started."""
        with self._tick_lock:
            if self.config.force_status_from_logs:
                # Not behind our own end writer's commit (it wakes us after).
                self.runlog.refresh_if_free()
            now_ts = self.clock.time()
            self._clock_guard.see(now_ts)
            if self._lease.beat(now_ts):  # the heartbeat, when due; it may reap crashes
                with self._lock:
                    self._all_dirty = True
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
            reads = _Reads(self._clock_guard.history(now_ts), self.is_task_running)
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
                        if self._open_in_log(name, reads.history):
                            # Started by another scheduler on this log and not ended:
                            # looked at again at its end, or at our next heartbeat.
                            task._next_check = now_ts + self.config.lease_ttl / 3
                            continue
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

    def _open_in_log(self, name: str, history: Any) -> bool:
        """Whether the run log holds an open run of ``name`` (not one of ours: the caller
        skips the tasks running here): its newest start is newer than every end."""
        started = history.last(name, Action.RUN)
        if started is None:
            return False
        ended = last_of(history, name, _CLOSING)
        return ended is None or ended < started

    def _still_due(self, names: Sequence[str], forced: set[str]) -> list[str]:
        """A claim's recheck (called by the run log inside its write transaction, after
        another scheduler wrote): the names whose start is still due against the history
        as stored -- their condition true and no open run of them -- or asked for."""
        from .conditions.base import Context

        now_ts = self.clock.time()
        now = datetime.fromtimestamp(now_ts, self.tz)
        keep: list[str] = []
        for name in names:
            if name in forced:
                keep.append(name)
                continue
            task = self._tasks.get(name)
            history = self._clock_guard.history(now_ts)
            if task is None or self._open_in_log(name, history):
                continue
            try:
                if task._start_cond.is_met(Context(now, history, name, self.is_task_running)):
                    keep.append(name)
            except Exception:
                continue  # counted as false; the step reports it at its next look
        return keep

    def _claim_refused(self, task: BaseTask, now_ts: float) -> None:
        """``task`` was due here but another scheduler started it first."""
        log.info("task %r was started by another scheduler on this run log", task.name)
        with self._lock:
            task._dirty = True

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
