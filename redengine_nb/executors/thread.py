"""The ``thread`` executor: each run on a daemon thread of this process.

A thread cannot be killed: ``terminate()`` (timeout, end_cond, asked to) sets the run's
``TerminationFlag`` and the run is logged ``terminate`` when its function returns.

Threads are reused, never shared: a run goes to an idle worker thread if there is one,
else a new worker is started for it, so a run never waits for another to end (one that
never returns cannot starve the rest) and nothing bounds the count but the runs alive at
once. Starting a thread costs a hand-over with the new thread, which under load (many
threads wanting the GIL) is far dearer than the run of a trivial task; reuse avoids it.
A worker that has been idle for ``keepalive`` seconds ends (idle workers wait without
waking). While it runs a task a worker is named ``redengine_nb:<task name>``; per run,
its output capture and the session's notion of the current task are set and restored.
Thread-local data a task sets itself may be seen by a later run on the same worker.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from ..clock import Clock
from .base import Executor, RunHandle, RunOutcome, RunSpec
from .main import execute

__all__ = ["ThreadExecutor"]

log = logging.getLogger("redengine_nb.executors.thread")

_IDLE_NAME = "redengine_nb:idle"

_Job = tuple["_ThreadHandle", Callable[[RunOutcome], None]]


class _ThreadHandle(RunHandle):
    __slots__ = ("done", "spec")

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.done = False  # set once, by the worker, when on_done has returned

    def is_alive(self) -> bool:
        return not self.done

    def terminate(self) -> None:
        self.spec.flag.set()


class ThreadExecutor(Executor):
    """Runs each run on a daemon worker thread: an idle one, or a new one if none is."""

    kind = "thread"

    def __init__(self, clock: Clock, *, keepalive: float = 60.0) -> None:
        self.clock = clock
        self.keepalive = keepalive
        self._handles: set[_ThreadHandle] = set()
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Idle workers not yet claimed by a queued job (under _lock): a start that claims
        # one leaves its job to the idle workers; a start that finds none starts a worker.
        self._idle = 0
        self._workers = 0

    @property
    def worker_count(self) -> int:
        """Worker threads alive (running a task or idle)."""
        return self._workers

    def start(self, spec: RunSpec, on_done: Callable[[RunOutcome], None]) -> RunHandle:
        handle = _ThreadHandle(spec)
        with self._lock:
            self._handles.add(handle)
            claimed = self._idle > 0
            if claimed:
                self._idle -= 1
            else:
                self._workers += 1
        if not claimed:
            thread = threading.Thread(
                target=self._work, name=f"redengine_nb:{spec.task_name}", daemon=True
            )
            try:
                thread.start()  # it waits for a job: ours, or another queued meanwhile
            except BaseException:
                with self._lock:
                    self._workers -= 1
                    self._handles.discard(handle)
                raise
        self._jobs.put((handle, on_done))
        return handle

    def _work(self) -> None:
        me = threading.current_thread()
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
                handle, on_done = job
                me.name = f"redengine_nb:{handle.spec.task_name}"
                back = False  # this worker goes back to the idle ones (not if interrupted)
                try:
                    on_done(execute(handle.spec, self.clock))
                    back = True
                except Exception:
                    log.exception("ending run %s of %r failed", handle.spec.run_id, me.name)
                    back = True
                finally:
                    handle.done = True
                    me.name = _IDLE_NAME
                    # One lock section per run, not two: start() on the scheduler thread
                    # takes this lock, and each time it finds it held it gives up the GIL.
                    with self._lock:
                        self._handles.discard(handle)
                        if back:
                            self._idle += 1
        finally:
            with self._lock:
                self._workers -= 1

    def shutdown(self, *, terminate: bool) -> None:
        if terminate:
            with self._lock:
                handles = list(self._handles)
            for handle in handles:
                handle.terminate()
        # Idle workers end now; busy ones once their run has ended and keepalive passed.
        with self._lock:
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)
