"""What every test may use: ``wait_for`` (wait until something holds, with a guard) and
``start_thread`` (a helper thread whose failure reaches the test instead of hanging it).

Both are fixtures that hand out a function: conftest modules are not imported by tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

#: Seconds a test waits for something that should happen at once: a guard against a hang,
#: never the way a test lets time pass (that is a FakeClock's job).
GUARD = 30.0

WaitFor = Callable[..., None]


def _wait_for(
    predicate: Callable[[], object],
    what: str = "the condition to hold",
    timeout: float = GUARD,
    *,
    check: Callable[[], None] | None = None,
    on_timeout: Callable[[], object] | None = None,
) -> None:
    """Return once ``predicate()`` is true; fail the test naming ``what`` when ``timeout``
    seconds pass first (calling ``on_timeout`` then: stop a server the test started, say).
    ``check`` is called between looks and may fail the test early (a server that died)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            if on_timeout is not None:
                on_timeout()
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        pause.wait(0.01)


@pytest.fixture
def wait_for() -> WaitFor:
    """``wait_for(predicate, what, timeout=GUARD, check=None, on_timeout=None)``: see
    :func:`_wait_for`."""
    return _wait_for


class ReportingThread(threading.Thread):
    """A thread that keeps what its target raised, for :meth:`result` to raise in the test.

    ``on_error`` is called in the thread when the target raises: it unblocks what the test
    is waiting on (shuts a scheduler down, sets an event), so the failure is reported at
    once rather than after the test's timeout.
    """

    def __init__(
        self, target: Callable[[], object], on_error: Callable[[], object] | None = None
    ) -> None:
        super().__init__(name=f"test helper {getattr(target, '__name__', '')}", daemon=True)
        self._target_fn = target
        self._on_error = on_error
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:
            self.error = exc
            if self._on_error is not None:
                self._on_error()

    def result(self, timeout: float = GUARD) -> None:
        """Join the thread; raise what its target raised (or that it did not end)."""
        self.join(timeout)
        if self.is_alive():
            pytest.fail(f"{self.name} did not end within {timeout:g} s")
        error, self.error = self.error, None  # raised once: here, not again at teardown
        if error is not None:
            raise error


@pytest.fixture
def start_thread() -> Iterator[Callable[..., ReportingThread]]:
    """``start_thread(target, on_error=None)``: a started :class:`ReportingThread`. Every
    thread started is joined at the end of the test and its failure raised there too."""
    threads: list[ReportingThread] = []

    def start(
        target: Callable[[], object], on_error: Callable[[], object] | None = None
    ) -> ReportingThread:
        thread = ReportingThread(target, on_error)
        threads.append(thread)
        thread.start()
        return thread

    yield start
    for thread in threads:
        thread.result()


# The real PostgreSQL server (tests/pg_server.py): pg_server, pg_database, pg_url.
from pg_server import pg_database, pg_server, pg_url  # noqa: E402, F401
