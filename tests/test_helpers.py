"""The root conftest's helpers do what the tests rely on."""

from __future__ import annotations

import threading

import pytest

GUARD = 30.0


def test_wait_for_returns_once_true_and_fails_naming_what(wait_for) -> None:
    seen = iter([False, False, True])
    wait_for(lambda: next(seen), "the third look")
    stopped: list[bool] = []
    with pytest.raises(pytest.fail.Exception, match="waiting for the impossible"):
        wait_for(lambda: False, "the impossible", 0.05, on_timeout=lambda: stopped.append(True))
    assert stopped == [True]


def test_wait_for_check_fails_early(wait_for) -> None:
    def check() -> None:
        pytest.fail("the server died")

    with pytest.raises(pytest.fail.Exception, match="the server died"):
        wait_for(lambda: False, "never", GUARD, check=check)


def test_a_failure_in_a_helper_thread_reaches_the_test(start_thread) -> None:
    unblocked = threading.Event()

    def broken() -> None:
        raise AssertionError("inside the thread")

    thread = start_thread(broken, on_error=unblocked.set)
    assert unblocked.wait(GUARD)  # on_error ran: what the test waited on is released
    with pytest.raises(AssertionError, match="inside the thread"):
        thread.result()


def test_a_thread_that_succeeds_reports_nothing(start_thread) -> None:
    ran: list[int] = []
    start_thread(lambda: ran.append(1)).result()
    assert ran == [1]
