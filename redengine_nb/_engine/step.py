"""The scheduler step: the part of the session that decides.

``Step.tick()`` refreshes the run log (when statuses come from it), terminates the runs
past their timeout or whose end condition became true, evaluates the start conditions of
the tasks that may have changed, looks at ``shut_cond`` and hands what is due to the
launcher (``launch.py``). While a condition is evaluated, ``_Reads`` notes which tasks'
history it read, so that a run starting or ending makes only the conditions that read its
task be looked at again. ``seconds_until_wake`` tells the runner how long nothing can be
due.

:class:`Step` is owned by the session. Its own state is what it needs to decide without
looking at every task: which tasks to look at again (``_dirty``), when each can next
become due by the clock alone (``_next_check``), which tasks' history each condition read
(``_reads``/``_readers``/``_wild``), and when ``shut_cond`` or an end condition can next
change. The session and the other parts tell it what changed through
:meth:`Step.invalidate`, :meth:`Step.task_changed`, :meth:`Step.forget` and
:meth:`Step.run_event`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import SchedulerError
from ..records import Action
from ..runlog.base import last_of

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .session import Session
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


class Step:
    """The scheduler step of a session: decides what is due and when to look again."""

    def __init__(self, session: Session) -> None:
        self._session = session
        #: Every task's condition is looked at again at the next step (set on any change
        #: that may change any condition: the clock was set, the config changed, ...).
        self.all_dirty = True
        self._dirty: set[str] = set()  # tasks to look at again (they or what they read changed)
        self._next_check: dict[str, float] = {}  # earliest time the clock can make each due
        # What each task's condition read at its last evaluation (see _Reads): the
        # tasks whose runs can change it; _wild: tasks whose condition read no task, or
        # read the history some other way, looked at again after every run event.
        self._reads: dict[str, tuple[str, ...]] = {}
        self._readers: dict[str, set[str]] = {}
        self._wild: set[str] = set()
        self._wild_dirty = True
        self._shut_next: float | None = None
        self._end_next: float | None = None

    # -- what changed (called under the session's lock) ----------------------------------
    def invalidate(self) -> None:
        """Look at every condition again at the next step."""
        self.all_dirty = True

    def task_changed(self, name: str) -> None:
        """``name`` was added or its definition changed: look at it again."""
        self._dirty.add(name)

    def forget(self, name: str) -> None:
        """``name`` was deleted: it no longer reads anything, nor waits."""
        self._dirty.discard(name)
        self._next_check.pop(name, None)
        for other in self._reads.pop(name, ()):
            readers = self._readers.get(other)
            if readers is not None:
                readers.discard(name)
                if not readers:
                    del self._readers[other]
        self._wild.discard(name)

    # -- the scheduler step ------------------------------------------------------------
    def tick(self) -> list[str]:
        """One scheduler step at the clock's now; returns the names of the tasks started."""
        session = self._session
        with session._tick_lock:
            if session.config.force_status_from_logs:
                # Not behind our own end writer's commit (it wakes us after).
                session.runlog.refresh_if_free()
            now_ts = session.clock.time()
            session.clock_guard.see(now_ts)
            if session.lease.beat(now_ts):  # the heartbeat, when due; it may reap crashes
                with session._lock:
                    self.all_dirty = True
            now = datetime.fromtimestamp(now_ts, session.tz)
            if session.started is None:
                session.started = now_ts
            session.cycles += 1
            self.check_runs(now, now_ts)
            if session.stop_requested:
                self._shut_next = None
                return []
            due = self._due(now, now_ts)
            # shut_cond after the due tasks are chosen: a run that ended in between (so
            # that its task is due again) is then seen by shut_cond too, and a shut_cond
            # it made true stops the scheduler before that task starts again.
            self._check_shut_cond(now)
            if session.stop_requested:
                with session._lock:
                    self.all_dirty = True  # what was found due is looked at again
                return []
            return session.launcher.launch_due(due, now_ts)

    def _cond_error(self, what: str, exc: Exception) -> None:
        if self._session.config.silence_cond_check:
            log.error(
                "%s raised (counted as false): %s",
                what,
                exc,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            return
        raise SchedulerError(f"{what} raised {type(exc).__name__}: {exc}") from exc

    def _check_shut_cond(self, now: datetime) -> None:
        from ..conditions.base import OUTSIDE_RECHECK

        session = self._session
        cond = session.config.shut_cond
        self._shut_next = None
        if cond is None or session.stop_requested:
            return
        if isinstance(cond, str):
            cond = session.parse_condition(cond)
        ctx = session._context(None, now)
        try:
            if cond.is_met(ctx):
                log.info("shut_cond %s is true: shutting down", cond)
                session.shut_down()
                return
            nxt = cond.next_due(ctx)
            self._shut_next = None if nxt is None else nxt.timestamp()
            if cond.reads_outside():  # parameters, steps taken: nothing announces a change
                soon = now.timestamp() + OUTSIDE_RECHECK
                self._shut_next = soon if self._shut_next is None else min(soon, self._shut_next)
        except Exception as exc:
            self._cond_error(f"shut_cond {cond}", exc)

    def check_runs(self, now: datetime, now_ts: float) -> None:
        """Terminate runs past their timeout or whose end_cond is true."""
        session = self._session
        with session._lock:
            runs = list(session._runs.values())
        self._end_next = None
        for run in runs:
            if run.handle is None or run.spec.flag.is_set():
                continue
            if run.deadline is not None and now_ts >= run.deadline:
                session.ends.terminate_run(run, f"terminated: timeout of {run.spec.timeout:g} s")
                continue
            end = run.task.end_cond
            if end is None:
                continue
            ctx = session._context(run.task.name, now)
            try:
                if end.is_met(ctx):
                    session.ends.terminate_run(run, f"terminated: end_cond {end} became true")
                    continue
                nxt = end.next_due(ctx)
            except Exception as exc:
                self._cond_error(f"end_cond of task {run.task.name!r}", exc)
                continue
            if nxt is not None and (self._end_next is None or nxt.timestamp() < self._end_next):
                self._end_next = nxt.timestamp()

    def _due(self, now: datetime, now_ts: float) -> list[tuple[BaseTask, dict[str, Any] | None]]:
        from ..conditions.base import OUTSIDE_RECHECK, Context

        session = self._session
        due: list[tuple[BaseTask, dict[str, Any] | None]] = []
        dirty = self._dirty
        next_check = self._next_check
        forced = session._forced
        running = session._running
        with session._lock:
            all_dirty = self.all_dirty
            self.all_dirty = False
            wild_dirty = self._wild_dirty
            self._wild_dirty = False
            wild = self._wild
            reads = _Reads(session.clock_guard.history(now_ts), session.is_task_running)
            shared = session.runlog.shared  # another scheduler writes this log too
            params, cycles, started = session.parameters, session.cycles, session.started
            for task in session._tasks.values():
                name = task.name
                if forced.get(name):
                    if not running.get(name):
                        due.append((task, forced[name][0]))
                    continue
                if task._disabled or running.get(name):
                    continue
                if not (all_dirty or name in dirty or (wild_dirty and name in wild)):
                    check = next_check.get(name)
                    if check is None or check > now_ts:
                        continue
                dirty.discard(name)
                reads.names.clear()
                reads.wild = False
                ctx = Context(
                    now,
                    reads,
                    name,
                    reads.is_running,
                    parameters=params,
                    cycles=cycles,
                    started=started,
                )
                try:
                    if task._start_cond.is_met(ctx):
                        if shared and self._open_in_log(name, reads.history):
                            # Started by another scheduler on this log and not ended:
                            # looked at again at its end, or at our next heartbeat.
                            next_check[name] = now_ts + session.config.lease_ttl / 3
                            continue
                        next_check.pop(name, None)
                        due.append((task, None))
                    else:
                        nxt = task._start_cond.next_due(ctx)
                        check = None if nxt is None else nxt.timestamp()
                        if task._start_cond.reads_outside():
                            # A custom phrase: nothing announces its change; look again soon.
                            soon = now_ts + OUTSIDE_RECHECK
                            check = soon if check is None else min(check, soon)
                        if check is None:
                            next_check.pop(name, None)
                        else:
                            next_check[name] = check
                except Exception as exc:
                    next_check[name] = now_ts + _COND_ERROR_RETRY
                    self._cond_error(f"the condition of task {name!r} ({task._start_cond})", exc)
                finally:
                    self._note_reads(name, reads)
        due.sort(key=lambda item: -item[0].priority)
        return due

    @staticmethod
    def _open_in_log(name: str, history: Any) -> bool:
        """Whether the run log holds an open run of ``name`` (not one of ours: the caller
        skips the tasks running here): its newest start is newer than every end."""
        started = history.last(name, Action.RUN)
        if started is None:
            return False
        ended = last_of(history, name, _CLOSING)
        return ended is None or ended < started

    def still_due(self, names: Sequence[str], forced: set[str]) -> list[str]:
        """A claim's recheck (called by the run log inside its write transaction, after
        another scheduler wrote): the names whose start is still due against the history
        as stored -- their condition true and no open run of them -- or asked for."""
        from ..conditions.base import Context

        session = self._session
        now_ts = session.clock.time()
        now = datetime.fromtimestamp(now_ts, session.tz)
        history = session.clock_guard.history(now_ts)
        keep: list[str] = []
        for name in names:
            if name in forced:
                keep.append(name)
                continue
            task = session._tasks.get(name)
            if task is None or self._open_in_log(name, history):
                continue
            try:
                ctx = Context(
                    now,
                    history,
                    name,
                    session.is_task_running,
                    parameters=session.parameters,
                    cycles=session.cycles,
                    started=session.started,
                )
                if task._start_cond.is_met(ctx):
                    keep.append(name)
            except Exception:
                continue  # counted as false; the step reports it at its next look
        return keep

    def claim_refused(self, name: str) -> None:
        """``name`` was due here but another scheduler started it first (under no lock)."""
        log.info("task %r was started by another scheduler on this run log", name)
        with self._session._lock:
            self._dirty.add(name)

    def _note_reads(self, name: str, reads: _Reads) -> None:
        """Remember which other tasks' runs can change ``name``'s condition (under the
        lock; its own runs always do, see :meth:`run_event`)."""
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

    def run_event(self, name: str) -> None:
        """A run of ``name`` started or ended: look again at the conditions that read it
        (under the lock)."""
        self._dirty.add(name)
        readers = self._readers.get(name)
        if readers:
            self._dirty.update(readers)
        if self._wild:
            self._wild_dirty = True

    def seconds_until_wake(self, cap: float = 60.0) -> float:
        """Seconds until the next thing can be due by the clock alone (at most ``cap``)."""
        session = self._session
        with session._lock:
            if self.all_dirty or session.stop_requested:
                return 0.0
            if self._wild_dirty and self._wild:
                return 0.0
            running = session._running
            slot_wait = session.launcher.slot_wait
            forced = session._forced
            times: list[float] = []
            for t in session._tasks.values():
                # A running task is looked at again when its run ends (an event), a
                # disabled one when it is enabled or forced: neither can be due before.
                name = t.name
                if running.get(name) or name in slot_wait:
                    continue  # (a task waiting for a slot is looked at when a run ends)
                if forced.get(name):
                    return 0.0
                if t._disabled:
                    continue
                if name in self._dirty:
                    return 0.0
                check = self._next_check.get(name)
                if check is not None:
                    times.append(check)
            times += [r.deadline for r in session._runs.values() if r.deadline is not None]
        if self._shut_next is not None:
            times.append(self._shut_next)
        if self._end_next is not None:
            times.append(self._end_next)
        if not times:
            return cap
        return max(0.0, min(cap, min(times) - session.clock.time()))
