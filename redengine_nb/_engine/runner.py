"""The runner: the loop that keeps a session scheduling.

It only loops ``tick()`` and waits on the session's wake-up event until the earliest time
something can be due (capped, so that a wall-clock jump is noticed within the cap), or
until an event sets it: a run ended, a task was added or changed, a forced run, a
shutdown, a fake clock moved. No polling, no asyncio.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import SchedulerError

if TYPE_CHECKING:
    from .session import Session

__all__ = ["WAKE_CAP", "Runner"]

log = logging.getLogger("redengine_nb.runner")

#: Longest sleep between two scheduler steps (seconds): wall-clock jumps are seen this soon.
WAKE_CAP = 60.0


class Runner:
    """Runs one session's scheduler loop, in the calling thread or a daemon thread."""

    def __init__(self, session: Session, *, cap: float = WAKE_CAP) -> None:
        self.session = session
        self.cap = cap
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    @property
    def is_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        """Run the loop on a background daemon thread; returns at once."""
        # Forget an old stop request here, not in the new thread: a shut_down() made
        # between start() and the thread's first step must not be erased by it.
        self.session.clear_stop()
        self.thread = threading.Thread(
            target=self._thread_main, name="redengine_nb scheduler", daemon=True
        )
        self.thread.start()

    def _thread_main(self) -> None:
        try:
            self._run()  # not the main thread: no signal relay
        except SchedulerError as exc:
            log.error("the scheduler stopped: %s", exc)
        except BaseException as exc:
            log.exception("the scheduler stopped on an unexpected error")
            self.error = exc

    def run(self) -> None:
        """Run the loop in this thread until shut down; raise what stopped it."""
        self.session.clear_stop()
        with _SignalRelay(self.session.nudge):
            self._run()

    def _run(self) -> None:
        session = self.session
        restart_mode: str | None = None
        try:
            while True:
                self._begin()
                try:
                    self._loop()
                finally:
                    self._end()
                if not session.take_restart():
                    break
                mode = session.config.restarting
                if mode != "recall":
                    restart_mode = mode
                    break
                log.info("restarting the scheduler (recall)")
            if session.ends.fatal_error is not None:
                raise session.ends.fatal_error  # never a clean exit after losing records
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            # Stopped for good: a later manual tick() or start() begins with no request.
            if restart_mode is None:
                session.clear_stop()
            self.stopped.set()
        if restart_mode is not None:
            from .restart import restart_process

            log.info("restarting the process (%s)", restart_mode)
            session.runlog.close()
            restart_process(restart_mode)

    def _begin(self) -> None:
        session = self.session
        session.runner = self
        session.begin()

    def _loop(self) -> None:
        session = self.session
        wake = session.wake
        session.runner_thread = threading.get_ident()
        try:
            self._steps(session, wake)
        finally:
            session.runner_thread = None

    def _steps(self, session: Session, wake: threading.Event) -> None:
        while True:
            wake.clear()
            session.tick()
            if session.stop_requested:
                return
            # The lease's heartbeat is the only other reason to wake while idle.
            wait = session.seconds_until_wake(self.cap)
            beat = session.lease.seconds_until_beat()
            wake.wait(wait if beat is None else min(wait, beat))
            if session.stop_requested:
                return

    def _end(self) -> None:
        session = self.session
        instant = session.config.instant_shutdown
        if instant:
            session.terminate_all()
        session.close_executors(terminate=instant)
        if session.running_runs:
            log.info("waiting for %d running task(s) to finish", session.running_runs)
        limit = session.config.shutdown_timeout
        if not session.wait_idle(10.0 if instant else limit):
            # shutdown_timeout passed: end what is left. A process run gets SIGTERM, then
            # SIGKILL; a thread run is recorded terminate after its grace even if its
            # thread goes on (a thread cannot be killed). Either way, the wait is bounded.
            log.warning("shutdown_timeout passed: terminating %d run(s)", session.running_runs)
            session.terminate_all(f"terminated: shutdown_timeout of {limit:g} s passed")
            session.wait_idle(30.0)
        session.lease.release()
        session._emit("scheduler_stopped", None)

    def join(self, timeout: float | None = None) -> bool:
        if self.thread is None:
            return True
        if self.thread is threading.current_thread():
            return False
        self.thread.join(timeout)
        return not self.thread.is_alive()


class _SignalRelay:
    """Lets the main thread handle signals promptly while it waits.

    Python runs signal handlers in the main thread, but the operating system may deliver
    a signal (Ctrl-C, SIGTERM) to any thread; a main thread blocked in a wait then sees
    it only when the wait ends — up to the wake-up cap later. While the scheduler runs in
    the main thread (``app.run()``), the signal wake-up fd is pointed at a socket that a
    small thread reads; each signal nudges the scheduler's waits, so the main thread
    wakes and its handlers run at once. Nothing happens off the main thread, or when
    something else already uses the wake-up fd (an asyncio loop, say).
    """

    def __init__(self, nudge: Callable[[], None]) -> None:
        self._nudge = nudge
        self._thread: threading.Thread | None = None
        self._sockets: tuple[socket.socket, socket.socket] | None = None

    def __enter__(self) -> _SignalRelay:
        if threading.current_thread() is not threading.main_thread():
            return self
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        try:
            previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            reader.close()
            writer.close()
            return self
        if previous != -1:  # someone else's: put it back and stay out of the way
            signal.set_wakeup_fd(previous)
            reader.close()
            writer.close()
            return self
        self._sockets = (reader, writer)
        self._thread = threading.Thread(
            target=self._relay, args=(reader,), name="redengine_nb signal relay", daemon=True
        )
        self._thread.start()
        return self

    def _relay(self, reader: socket.socket) -> None:
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:  # the writer closed: the scheduler stopped
                return
            self._nudge()

    def __exit__(self, *exc: object) -> None:
        if self._sockets is None:
            return
        reader, writer = self._sockets
        signal.set_wakeup_fd(-1)
        writer.close()
        if self._thread is not None:
            self._thread.join(1.0)
        reader.close()
