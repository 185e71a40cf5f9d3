"""The ``thread`` executor: each run on a daemon thread of this process.

A thread cannot be killed. ``terminate()`` (a timeout, an end condition, a request, a
shutdown) sets the run's ``TerminationFlag``: a task that watches it stops, and its run is
recorded ``terminate`` with its output as usual. If the function has not returned
``grace`` seconds later (real seconds, as for process runs; 2 by default), the *run* is
ended without it: reported ``terminate`` ("the thread is still running"), and whatever the
function does or returns afterwards is not recorded (its late outcome is logged by this
module's logger). Its worker stays busy until the function returns, and is
not reused before. A task that must be stoppable for sure runs with ``execution='process'``.

After each run, the worker reaps the zombie children the run forked and nobody will wait
for (:mod:`redengine_nb.executors.zombies`).

Workers are reused and never shared: a run goes to an idle worker if there is one, else to
a new worker while there are fewer than ``eager`` of them (a few per core), else it waits
in the backlog for the first worker that comes back. A run that never returns cannot
starve the rest: a watcher thread, awake only while the backlog is not empty, starts more
workers whenever no worker has taken a run for ``patience`` seconds (1, then 2, 4, ...
at a time while that lasts), so a run waits for a worker a few milliseconds at most, and
nothing bounds the workers but the runs alive at once. Without that, a burst of trivial
runs started a thread per run whenever the workers could not get the GIL back quickly
enough to count themselves idle (a new thread costs more than such a run). A worker idle
for ``keepalive`` seconds ends; idle workers and the idle watcher wait without waking.
While it runs a task a worker is named ``redengine_nb:<task name>``; per run, its output
capture and the session's notion of the current task are set and restored. Thread-local
data a task sets itself may be seen by a later run on the same worker.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

from ..clock import Clock
from ..records import Action
from .base import Executor, RunHandle, RunOutcome, RunSpec
from .capture import buffer_of
from .main import execute
from .zombies import ForkWatch

__all__ = ["ThreadExecutor"]

log = logging.getLogger("redengine_nb.executors.thread")

_IDLE_NAME = "redengine_nb:idle"


#: The text of a thread run ended by ``terminate()`` while its function still runs.
STILL_RUNNING = (
    "the thread is still running: a thread cannot be stopped, so the run was ended "
    "without it; what it does or returns from now on is not recorded"
)


class _ThreadHandle(RunHandle):
    __slots__ = ("clock", "done", "grace", "on_done", "reported", "spec", "timer", "worker")

    def __init__(
        self, spec: RunSpec, on_done: Callable[[RunOutcome], None], clock: Clock, grace: float
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.grace = grace
        self.timer: threading.Timer | None = None
        self.worker: int | None = None  # the ident of the thread running it, once taken
        self.on_done: Callable[[RunOutcome], None] | None = on_done
        self.done = False  # set once, by the worker, when on_done has returned
        self.reported = threading.Lock()  # taken by whoever reports the outcome (once)

    def is_alive(self) -> bool:
        return not self.done

    def terminate(self) -> None:
        self.spec.flag.set()
        if self.done or self.timer is not None:
            return
        if self.grace <= 0:
            self.abandon()
            return
        self.timer = threading.Timer(self.grace, self.abandon)
        self.timer.name = "redengine_nb:thread-grace"
        self.timer.daemon = True
        self.timer.start()

    def abandon(self) -> None:
        """End the run without its function (still running past the grace period)."""
        on_done = self.on_done
        if on_done is not None and self.reported.acquire(blocking=False):
            # What it printed so far is kept: the run's record is all a reader will have.
            buffer = buffer_of(self.worker) if self.worker is not None else None
            output = (buffer.getvalue() or None) if buffer is not None else None
            on_done(
                RunOutcome(
                    Action.TERMINATE, self.clock.time(), exc_text=STILL_RUNNING, output=output
                )
            )


class ThreadExecutor(Executor):
    """Runs each run on a worker thread: an idle one, a new one, or the first one back."""

    kind = "thread"

    def __init__(
        self,
        clock: Clock,
        *,
        keepalive: float = 60.0,
        eager: int | None = None,
        patience: float = 0.002,
        grace: float = 2.0,
    ) -> None:
        super().__init__(clock)
        self.grace = grace
        self.keepalive = keepalive
        self.eager = max(1, eager if eager is not None else 2 * (os.cpu_count() or 1) + 2)
        self.patience = patience
        self._handles: set[_ThreadHandle] = set()
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_ThreadHandle | None] = queue.SimpleQueue()
        # Every queued job has one worker bound to take it (under _lock): an idle worker
        # it claimed, a worker started for it, or -- for the ``_backlog`` ones -- the
        # first worker to finish its run (or one the watcher starts).
        self._idle = 0
        self._backlog = 0
        self._workers = 0
        self._taken = 0  # jobs taken off the queue so far: the watcher's sign of progress
        self._backlog_cv = threading.Condition(self._lock)
        self._watcher: threading.Thread | None = None

    @property
    def worker_count(self) -> int:
        """Worker threads alive (running a task or idle)."""
        return self._workers

    def start(self, spec: RunSpec, on_done: Callable[[RunOutcome], None]) -> RunHandle:
        handle = _ThreadHandle(spec, on_done, self.clock, self.grace)
        spawn = False
        with self._lock:
            self._handles.add(handle)
            if self._idle > 0:
                self._idle -= 1
            elif self._workers < self.eager:
                self._workers += 1
                spawn = True
            else:
                self._backlog += 1
                if self._watcher is None:
                    self._watcher = threading.Thread(
                        target=self._watch, name="redengine_nb:thread-watcher", daemon=True
                    )
                    self._watcher.start()
                elif self._backlog == 1:
                    self._backlog_cv.notify()
        if spawn:
            try:
                self._spawn()
            except BaseException:
                with self._lock:
                    self._workers -= 1
                    self._handles.discard(handle)
                raise
        self._jobs.put(handle)
        return handle

    def warm(self) -> None:
        """Start the ``eager`` workers now, idle: the first runs due (often many at the
        scheduler's start) do not wait for threads to be made."""
        with self._lock:
            extra = max(0, self.eager - self._workers)
            self._workers += extra
            self._idle += extra
        for _ in range(extra):
            try:
                self._spawn()
            except Exception:  # no thread now: runs start them as usual
                log.exception("could not start a worker thread")
                with self._lock:
                    self._workers -= 1
                    self._idle -= 1

    def _spawn(self) -> None:
        """Start a worker (counted in ``_workers`` already); it takes the next queued job."""
        # Named idle until it takes a job: another worker may take the one it was started for.
        threading.Thread(target=self._work, name=_IDLE_NAME, daemon=True).start()

    def _watch(self) -> None:
        """While runs wait in the backlog, add workers whenever none was taken for
        ``patience`` seconds; ends after ``keepalive`` seconds without a backlog."""
        burst = 1
        with self._lock:
            while True:
                if self._backlog == 0:
                    burst = 1
                    if not self._backlog_cv.wait(self.keepalive) and self._backlog == 0:
                        break
                    continue
                taken = self._taken
                self._backlog_cv.wait(self.patience)
                if self._backlog == 0 or self._taken != taken:
                    burst = 1  # the workers keep up
                    continue
                extra = min(self._backlog, burst)
                burst *= 2
                self._backlog -= extra
                self._workers += extra
                self._lock.release()
                try:
                    for _ in range(extra):
                        try:
                            self._spawn()
                        except Exception:  # cannot start a thread now: try again later
                            log.exception("could not start a worker thread")
                            with self._lock:
                                self._backlog += 1
                                self._workers -= 1
                finally:
                    self._lock.acquire()
            self._watcher = None

    def _work(self) -> None:
        me = threading.current_thread()
        forks = ForkWatch()
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=self.keepalive)
                except queue.Empty:
                    with self._lock:
                        if self._idle > 0:  # no queued job counts on this worker
                            self._idle -= 1
                            return  # idle too long
                    continue  # a job was queued for an idle worker: take it
                if job is None:
                    return  # shut down (the sentinel claimed this worker's idle slot)
                self._taken += 1  # only the watcher reads it, as a sign of life (GIL-safe)
                handle = job
                on_done = handle.on_done
                assert on_done is not None  # cleared only once it has been called
                me.name = f"redengine_nb:{handle.spec.task_name}"
                handle.worker = threading.get_ident()
                back = False  # this worker goes back to the idle ones (not if interrupted)
                try:
                    outcome = execute(handle.spec, self.clock)
                    if forks.after_run():
                        log.debug("reaped the zombie children of a run of %r", me.name)
                    if handle.reported.acquire(blocking=False):
                        on_done(outcome)
                    else:
                        log.info(
                            "run %s of task %r ended %s after it was terminated; not recorded",
                            handle.spec.run_id,
                            handle.spec.task_name,
                            outcome.action.value,
                        )
                    back = True
                except Exception:
                    log.exception("ending run %s of %r failed", handle.spec.run_id, me.name)
                    back = True
                finally:
                    if handle.timer is not None:
                        handle.timer.cancel()
                    handle.on_done = None  # the run holds its handle: no cycle left behind
                    handle.done = True
                    me.name = _IDLE_NAME
                    # One lock section per run, not two: start() on the scheduler thread
                    # takes this lock, and each time it finds it held it gives up the GIL.
                    with self._lock:
                        self._handles.discard(handle)
                        if back:
                            if self._backlog > 0:
                                self._backlog -= 1  # bound to a waiting job: take it
                            else:
                                self._idle += 1
                        elif self._backlog > 0:
                            # This worker ends (interrupted): the backlog needs another.
                            self._backlog_cv.notify()
        finally:
            with self._lock:
                self._workers -= 1

    def shutdown(self, *, terminate: bool) -> None:
        # The workers idle now end now; busy ones (also those terminated below) once their
        # run has ended and keepalive has passed.
        with self._lock:
            idle, self._idle = self._idle, 0
            handles = list(self._handles) if terminate else []
            self._backlog_cv.notify()  # a watcher waiting for nothing looks again
        for _ in range(idle):
            self._jobs.put(None)
        for handle in handles:
            handle.terminate()
