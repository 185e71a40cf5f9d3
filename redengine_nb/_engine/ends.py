"""The end writer: the part of the session that ends runs.

An executor reports a run's end to ``EndWriter.on_done``, from whichever thread saw it.
The end is queued for the end writer, a thread started on demand, which writes the ends
queued meanwhile in one run-log transaction and then acknowledges each (``_finish``): the
task's status and runtime, ``returns``, the ``run_ended`` event, ``wait_idle``. A run on
the scheduler's own thread has its end written and acknowledged there, at once. Here too
is the termination of runs (a timeout, an end condition, a request): it sets the run's
flag and asks its handle to stop; the end then comes the usual way.

:class:`EndWriter` is owned by the session. Its own state: the ends queued for its thread,
that thread, and each task's runtime of its newest run (``last_runtime``); while the run
log refuses writes, its error (``store_error``); what stopped the scheduler for good
(``fatal_error``: the log's file was lost).

A batch the run log cannot take (a full disk, a lock held too long) is not dropped: its
ends stay here, unacknowledged -- their tasks still count as running, so none starts again
over an outcome not yet kept -- and the write is tried again until it is made. After
each batch, ``log_retention`` is applied at most once a minute (:meth:`_apply_retention`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ..records import Action
from ..runlog.base import RunLogLost

if TYPE_CHECKING:
    from ..executors import RunOutcome
    from .launch import _Run
    from .session import Session

log = logging.getLogger("redengine_nb.session")  # one logger for all the parts of the session

_END_BATCH = 1024  # most run ends written in one run-log transaction
# Seconds the end writer waits for more ends before it exits: as long as an idle worker
# lives, so that a task every few seconds does not start (and end) a thread per run; an
# exiting thread costs ~0.2 ms of CPU, a waiting one nothing.
_WRITER_KEEPALIVE = 60.0
_PRUNE_EVERY = 60.0  # seconds of the scheduler's clock between two log_retention passes


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


class EndWriter:
    """Writes and acknowledges the ends of a session's runs; terminates runs."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._ends: list[_End] = []  # waiting for the writer thread (started on demand)
        self._ends_cv = threading.Condition(threading.Lock())
        self._writer: threading.Thread | None = None
        #: Each task's runtime of its newest ended run (seconds).
        self.last_runtime: dict[str, float] = {}
        #: The run log's last write error while run ends wait to be written (else None).
        self.store_error: str | None = None
        #: What stopped the scheduler for good (the run log's file was lost), else None.
        self.fatal_error: BaseException | None = None
        self.retry_wake = threading.Event()  # set: try a failed end write again at once
        self._pruned_at: float | None = None  # when log_retention last ran

    def on_done(self, run: _Run, outcome: RunOutcome) -> None:
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
                self._start_writer()
            else:
                self._ends_cv.notify()

    def warm(self) -> None:
        """Start the writer thread now (it exits after ``_WRITER_KEEPALIVE`` seconds
        without ends), so the first runs' ends do not wait for it to be made."""
        with self._ends_cv:
            if self._writer is None:
                self._start_writer()

    def _start_writer(self) -> None:
        """(under ``_ends_cv``)"""
        self._writer = threading.Thread(
            target=self._write_ends, name="redengine_nb:end-writer", daemon=True
        )
        self._writer.start()

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
        session = self._session
        ends = [
            (e.run.task.name, e.run.run_id, e.action, e.end, e.exc_text, e.output) for e in batch
        ]
        results: list[Any] = self._write_with_retry(ends)
        if session.config.log_retention is not None:
            self._apply_retention()
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "could not write the end of run %s of task %r to the run log",
                    item.run.run_id,
                    item.run.task.name,
                    exc_info=result,
                )
            if item.action is Action.SUCCESS:
                session.returns[item.run.task.name] = item.return_value
        running = session._running
        status = session._status
        step = session.step
        with session._lock:
            for item in batch:
                run = item.run
                name = run.task.name
                left = running.get(name, 0) - 1
                if left > 0:
                    running[name] = left
                else:
                    running.pop(name, None)
                status[name] = item.action
                self.last_runtime[name] = item.end - run.start
                step.run_event(name)
            slot_wait = session.launcher.slot_wait
            for name in slot_wait:  # a slot may be free now
                if name in session._tasks:
                    step.task_changed(name)
            slot_wait.clear()
        for item in batch:
            session._emit("run_ended", item.run.task.name)
        # Last, so that wait_idle() returns only once the run_ended events are out.
        with session._lock:
            for item in batch:
                session._runs.pop(item.run.run_id, None)
            if not session._runs:
                session._idle.notify_all()  # wait_idle() waits for no run at all

    def _write_with_retry(self, ends: list[Any]) -> list[Any]:
        """The store's answer for ``ends``, retried while the shared write fails (0.1 s
        doubling to 30 s between tries) and the error kept in ``store_error``. At shut
        down it gives up after ``shutdown_timeout`` (60 s if unset). A lost log file
        cannot be retried: the scheduler stops with that error."""
        session = self._session
        delay = 0.1
        shown: str | None = None
        give_up: float | None = None
        while True:
            try:
                results: list[Any] = session.runlog.end_runs(ends)
            except RunLogLost as exc:
                self.fail(exc)
                return [exc] * len(ends)
            except Exception as exc:
                text = str(exc)
                if text != self.store_error:
                    self.store_error = text
                    session._emit("warning_changed")  # the panel and serve show it
                if text != shown:
                    shown = text
                    log.error(
                        "could not write the end of %d run(s); their outcome is kept and "
                        "written when the run log accepts it: %s",
                        len(ends),
                        text,
                    )
                if session.stop_requested:
                    now = time.monotonic()
                    if give_up is None:
                        give_up = now + (session.config.shutdown_timeout or 60.0)
                    if now >= give_up:
                        log.critical(
                            "gave up writing the end of %d run(s) at shut down: %s",
                            len(ends),
                            text,
                        )
                        return [exc] * len(ends)
                self.retry_wake.wait(delay)
                self.retry_wake.clear()
                delay = min(30.0, delay * 2)
                continue
            if shown is not None:
                log.warning("the run log accepts writes again: %d run end(s) written", len(ends))
                self.store_error = None
                session._emit("warning_changed")
            return results

    def _apply_retention(self) -> None:
        """``log_retention``, at most once a minute of the scheduler's clock, on the end
        writer's thread after a batch: the runs wait for nothing of it."""
        session = self._session
        now = session.clock.time()
        if self._pruned_at is not None and 0 <= now - self._pruned_at < _PRUNE_EVERY:
            return
        self._pruned_at = now
        age, keep = session.config.log_retention
        try:
            deleted = session.runlog.prune(before=None if age is None else now - age, keep=keep)
        except Exception as exc:
            log.error("log_retention: could not delete old runs: %s", exc)
            return
        if deleted:
            log.info("log_retention: deleted %d old run record(s)", deleted)

    def fail(self, exc: BaseException) -> None:
        """The run log cannot go on (its file was lost): stop the scheduler with ``exc``."""
        if self.fatal_error is None:
            log.critical("%s", exc)
            self.fatal_error = exc
            self._session.shut_down()

    def terminate_run(self, run: _Run, reason: str) -> None:
        log.info("task %r: %s", run.task.name, reason)
        if run.reason is None:
            run.reason = reason
        run.spec.flag.set()
        if run.handle is not None:
            run.handle.terminate()

    def terminate_task(self, name: str, reason: str) -> None:
        """Terminate the running runs of task ``name``."""
        session = self._session
        with session._lock:
            runs = [r for r in session._runs.values() if r.task.name == name]
        for run in runs:
            self.terminate_run(run, reason)
