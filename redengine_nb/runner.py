"""The runner: the loop that keeps a session scheduling.

It only loops ``tick()`` and waits on the session's wake-up event until the earliest time
something can be due (capped, so that a wall-clock jump is noticed within the cap), or
until an event sets it: a run ended, a task was added or changed, a forced run, a
shutdown, a fake clock moved. No polling, no asyncio.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .errors import SchedulerError

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
        self.thread = threading.Thread(
            target=self._thread_main, name="redengine_nb scheduler", daemon=True
        )
        self.thread.start()

    def _thread_main(self) -> None:
        try:
            self.run()
        except SchedulerError as exc:
            log.error("the scheduler stopped: %s", exc)
        except BaseException as exc:
            log.exception("the scheduler stopped on an unexpected error")
            self.error = exc

    def run(self) -> None:
        """Run the loop in this thread until shut down; raise what stopped it."""
        session = self.session
        restart_mode: str | None = None
        session.clear_stop()
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
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            # Stopped for good: a later manual tick() or start() begins with no request.
            if restart_mode is None:
                session.clear_stop()
            self.stopped.set()
        if restart_mode is not None:
            from .restart import restart_process  # type: ignore[import-not-found,unused-ignore]

            log.info("restarting the process (%s)", restart_mode)
            session.runlog.close()
            restart_process(restart_mode)

    def _begin(self) -> None:
        session = self.session
        session.runner = self
        session.mark_crashed_runs()
        session._all_dirty = True
        session._emit("scheduler_started", None)

    def _loop(self) -> None:
        session = self.session
        wake = session.wake
        while True:
            wake.clear()
            session.tick()
            if session.stop_requested:
                return
            wake.wait(session.seconds_until_wake(self.cap))
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
        session.wait_idle(None if not instant else 10.0)
        session._emit("scheduler_stopped", None)

    def join(self, timeout: float | None = None) -> bool:
        if self.thread is None:
            return True
        if self.thread is threading.current_thread():
            return False
        self.thread.join(timeout)
        return not self.thread.is_alive()
