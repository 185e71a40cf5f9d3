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
become due by the clock alone (``_next_check``, and the same as a heap, ``_heap``: a
step and ``seconds_until_wake`` cost the same with 10 or 100,000 tasks), which tasks'
history each condition read
(``_reads``/``_readers``/``_wild``), and when ``shut_cond`` or an end condition can next
change. The session and the other parts tell it what changed through
:meth:`Step.invalidate`, :meth:`Step.task_changed`, :meth:`Step.forget` and
:meth:`Step.run_event`.
"""

from __future__ import annotations

import heapq
import logging
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import SchedulerError
from ..records import Action
from ..runlog.base import last_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from .session import Session
    from .tasks import BaseTask

log = logging.getLogger("redengine_nb.session")  # one logger for all the parts of the session

_COND_ERROR_RETRY = 10.0  # seconds before a condition that raised (silenced) is tried again
# Conditions looked at before the first due runs start; each next chunk 4x as many, up
# to _MOST_LOOK (see Step._due).
_FIRST_LOOK = 16
_MOST_LOOK = 256
# Every action that closes a run: a start newer than all of them is a run still open.
_CLOSING = tuple(a for a in Action if a is not Action.RUN)


class _Reads:
    """The history a condition is evaluated over, noting which tasks it looks at.

    A condition is a pure function of its context: the clock (its ``next_due`` says when
    that can change it), the history of the tasks it reads and which of them are
    running. So a run that starts or ends changes only the conditions that read its task.
    ``wild`` is set when the condition used the history in any other way.
    """

    __slots__ = ("anchors", "history", "names", "running", "wild")

    def __init__(
        self,
        history: Any,
        running: Callable[[str], bool],
        anchors: dict[str, tuple[float, float]],
    ) -> None:
        self.history = history
        self.running = running
        self.anchors = anchors
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

    def due_of(self, task: str, start: float) -> float:
        """The instant the run of ``task`` that started at ``start`` was due, if this
        scheduler started it (else ``start``): ``every`` counts its period from it."""
        self.names.add(task)
        anchor = self.anchors.get(task)
        return anchor[1] if anchor is not None and anchor[0] == start else start

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
        # The same times as a heap of (time, name), so that a step finds what the clock
        # made due, and the runner how long to sleep, without looking at every task. An
        # entry is current while _next_check holds its time for its name; the others are
        # dropped when they come to the top (or all at once when they outnumber it).
        self._heap: list[tuple[float, str]] = []
        # Registration order (the order of session._tasks): due tasks of equal priority
        # start in it.
        self._order: dict[str, int] = {}
        self._added = 0
        self._last_now = -math.inf  # the clock's time at the last step
        # When each task found due in this step became due (its check time, else the
        # step's instant), and for the last run each task started here, (its recorded
        # start, the instant it was due): see _Reads.due_of.
        self._due_now: dict[str, float] = {}
        self._anchors: dict[str, tuple[float, float]] = {}
        # Tasks found due that have not started yet (no free slot), with the instant each
        # became due: due tasks of equal priority start longest-waiting first.
        self._waiting: dict[str, float] = {}
        self._clocked: dict[str, float] = {}
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
        if name not in self._order:
            self._added += 1
            self._order[name] = self._added

    def forget(self, name: str) -> None:
        """``name`` was deleted: it no longer reads anything, nor waits."""
        self._dirty.discard(name)
        self._next_check.pop(name, None)  # its heap entry is stale now
        self._order.pop(name, None)
        self._anchors.pop(name, None)
        self._waiting.pop(name, None)
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
            if now_ts < self._last_now:
                # The clock went back (set back, or the wall clock jumped): the check
                # times may be too late now. Forward, they say what became due.
                with session._lock:
                    self.all_dirty = True
            self._last_now = now_ts
            now = datetime.fromtimestamp(now_ts, session.tz)
            if session.started is None:
                session.started = now_ts
            session.cycles += 1
            self.check_runs(now, now_ts)
            if session.stop_requested:
                self._shut_next = None
                return []
            if session.config.shut_cond is None:
                # The due tasks start while the later ones are looked at (see _due).
                self._shut_next = None
                return session.launcher.launch_due(self._due(now, now_ts), now_ts)
            due = list(self._due(now, now_ts))
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

    def _set_check(self, name: str, check: float) -> None:
        """``name`` can next become due by the clock at ``check`` (under the lock)."""
        next_check = self._next_check
        if next_check.get(name) == check:
            return  # its entry is in the heap already
        next_check[name] = check
        heap = self._heap
        heapq.heappush(heap, (check, name))
        if len(heap) > 2 * len(next_check) + 1024:  # mostly stale entries: rebuild
            self._heap = [(t, n) for n, t in next_check.items()]
            heapq.heapify(self._heap)

    def _clock_due(self, now_ts: float) -> dict[str, float]:
        """Take out of the heap the tasks whose check time has come, with that time
        (under the lock)."""
        heap = self._heap
        next_check = self._next_check
        names: dict[str, float] = {}
        while heap and heap[0][0] <= now_ts:
            check, name = heapq.heappop(heap)
            if next_check.get(name) == check:
                del next_check[name]  # looked at now; set again if it stays false
                names[name] = check
        return names

    def _candidates(self, now_ts: float) -> list[BaseTask]:
        """The tasks a step looks at, in registration order (under the lock): every task
        after an invalidation, else the dirty ones, the forced ones, those whose check
        time has come and, after a run event, those whose condition reads wildly."""
        session = self._session
        tasks = session._tasks
        # A fresh set, not the old one emptied: a set keeps the table of its largest
        # size, and iterating it (here and in seconds_until_wake) walks that table: after
        # 100,000 tasks were added, 1.5 ms per step for nothing.
        names, self._dirty = self._dirty, set()
        clocked = self._clocked = self._clock_due(now_ts)
        if self.all_dirty:
            self.all_dirty = False
            self._wild_dirty = False
            return list(tasks.values())
        names.update(session._forced)
        names.update(clocked)
        if self._wild_dirty:
            self._wild_dirty = False
            names.update(self._wild)
        order = self._order
        found = [t for n in names if (t := tasks.get(n)) is not None]
        if len(found) > 1:
            found.sort(key=lambda t: order.get(t.name, 0))
        return found

    def _due(
        self, now: datetime, now_ts: float
    ) -> Iterator[tuple[BaseTask, dict[str, Any] | None]]:
        """The due tasks, in the order they start: priority, then the longest waiting (a
        task that found no free slot keeps the instant it became due), then registration
        order -- a task registered last is not starved by earlier ones due as often.

        That order is known before any condition is read (a due task waits since it
        waited, else since its check time, else since now), so the candidates are put in
        it first and looked at in chunks (16, then 4x as many, up to 256), each under the
        lock: the launcher starts the first due runs while the later conditions are still
        to be read, rather than after all of them (a third of a 1,000-run launch)."""
        from ..conditions.base import Context

        session = self._session
        forced = session._forced
        with session._lock:
            reads = _Reads(
                session.clock_guard.history(now_ts), session.is_task_running, self._anchors
            )
            shared = session.runlog.shared  # another scheduler writes this log too
            params, cycles, started = session.parameters, session.cycles, session.started
            self._due_now.clear()
            waiting = self._waiting
            candidates = self._candidates(now_ts)  # (no longer dirty)
            clocked = self._clocked
            if len(candidates) > 1:
                order = self._order
                candidates.sort(
                    key=lambda t: (
                        -t.priority,
                        waiting.get(
                            t.name, now_ts if forced.get(t.name) else clocked.get(t.name, now_ts)
                        ),
                        order.get(t.name, 0),
                    )
                )

            def look(task: BaseTask) -> tuple[bool, dict[str, Any] | None]:
                ctx = Context(
                    now,
                    reads,
                    task.name,
                    reads.is_running,
                    parameters=params,
                    cycles=cycles,
                    started=started,
                )
                return self._look(task, ctx, reads, shared, now_ts)

        tasks = session._tasks
        at, chunk = 0, _FIRST_LOOK
        complete = False
        try:
            while at < len(candidates):
                found: list[tuple[BaseTask, dict[str, Any] | None]] = []
                with session._lock:
                    if session.stop_requested:
                        return
                    for task in candidates[at : at + chunk]:
                        if tasks.get(task.name) is not task:
                            continue  # deleted or replaced since the step began
                        due, given = look(task)
                        if due:
                            found.append((task, given))
                at += chunk
                chunk = min(4 * chunk, _MOST_LOOK)
                yield from found
            complete = True
        finally:
            if not complete:
                # Stopped early (a stop request, an error): what was not looked at, or
                # found due but not taken, is no longer dirty: look at all again.
                with session._lock:
                    self.all_dirty = True

    def _look(
        self, task: BaseTask, ctx: Any, reads: _Reads, shared: bool, now_ts: float
    ) -> tuple[bool, dict[str, Any] | None]:
        """Look at one candidate (under the lock): whether it starts now, and the
        parameters of its forced run (``None`` for a run its condition made due). Sets
        its next check time, what it read, and since when it waits."""
        from ..conditions.base import OUTSIDE_RECHECK

        session = self._session
        name = task.name
        forced = session._forced
        running = session._running
        next_check = self._next_check
        waiting = self._waiting
        if forced.get(name):
            if running.get(name):
                return False, None
            waiting.setdefault(name, now_ts)
            return True, forced[name][0]
        if task._disabled or running.get(name):
            # Looked at again when its run ends, or when it is enabled (both mark it
            # dirty): nothing to keep for it meanwhile.
            next_check.pop(name, None)
            return False, None
        reads.names.clear()
        reads.wild = False
        try:
            if task._start_cond.is_met(ctx):
                if shared and self._open_in_log(name, reads.history):
                    # Started by another scheduler on this log and not ended: looked at
                    # again at its end, or at our next heartbeat.
                    self._set_check(name, now_ts + session.config.lease_ttl / 3)
                    return False, None
                next_check.pop(name, None)
                since = waiting.get(name)
                if since is None:
                    since = waiting[name] = self._clocked.get(name, now_ts)
                self._due_now[name] = since
                return True, None
            waiting.pop(name, None)
            nxt = task._start_cond.next_due(ctx)
            check = None if nxt is None else nxt.timestamp()
            if task._start_cond.reads_outside():
                # A custom phrase: nothing announces its change; look again soon.
                soon = now_ts + OUTSIDE_RECHECK
                check = soon if check is None else min(check, soon)
            if check is None:
                next_check.pop(name, None)
            else:
                self._set_check(name, check)
        except Exception as exc:
            self._set_check(name, now_ts + _COND_ERROR_RETRY)
            self._cond_error(f"the condition of task {name!r} ({task._start_cond})", exc)
        finally:
            self._note_reads(name, reads)
        return False, None

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
            self._waiting.pop(name, None)  # its next due instant is a new one

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

    def started(self, name: str, start: float) -> None:
        """A run of ``name`` found due in this step was recorded as started at ``start``
        (under the lock): remember when it was due."""
        self._anchors[name] = (start, self._due_now.pop(name, start))
        self._waiting.pop(name, None)

    def gave_up(self, name: str) -> None:
        """A run of ``name`` found due could not start (its failure is logged): it no
        longer waits (under the lock)."""
        self._waiting.pop(name, None)

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
            tasks = session._tasks
            # A running task is looked at again when its run ends (an event), a disabled
            # one when it is enabled or forced, one waiting for a slot when a run ends:
            # none of them can be due before.
            for name in session._forced:
                if session._forced[name] and not running.get(name) and name not in slot_wait:
                    return 0.0
            for name in self._dirty:
                task = tasks.get(name)
                if (
                    task is not None
                    and not task._disabled
                    and not running.get(name)
                    and name not in slot_wait
                ):
                    return 0.0
            earliest = self._earliest_check()
            times = [r.deadline for r in session._runs.values() if r.deadline is not None]
        if earliest is not None:
            times.append(earliest)
        if self._shut_next is not None:
            times.append(self._shut_next)
        if self._end_next is not None:
            times.append(self._end_next)
        if not times:
            return cap
        return max(0.0, min(cap, min(times) - session.clock.time()))

    def _earliest_check(self) -> float | None:
        """The earliest check time of a task that can become due by the clock (under the
        lock): stale entries on top are dropped, and so are running, disabled or
        slot-waiting tasks' (an event makes each of those dirty when it matters)."""
        session = self._session
        heap = self._heap
        next_check = self._next_check
        running = session._running
        slot_wait = session.launcher.slot_wait
        tasks = session._tasks
        while heap:
            check, name = heap[0]
            if next_check.get(name) == check:
                task = tasks.get(name)
                if (
                    task is not None
                    and not task._disabled
                    and not running.get(name)
                    and name not in slot_wait
                ):
                    return check
                del next_check[name]
            heapq.heappop(heap)
        return None
