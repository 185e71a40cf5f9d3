"""Per-run capture: a task thread's output goes to its run; other threads' output does not."""

from __future__ import annotations

import io
import sys
import threading

from redengine_nb.executors.capture import (
    RoutingStream,
    TailBuffer,
    capture_output,
    ensure_installed,
)


def test_tail_is_kept() -> None:
    buffer = TailBuffer(limit=10)
    for i in range(100):
        buffer.write(f"{i},")
    text = buffer.getvalue()
    assert text.endswith("97,98,99,")
    assert "truncated" in text
    assert len(text.split("\n", 1)[1]) <= 10


def test_other_threads_are_untouched(monkeypatch) -> None:
    outer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", outer)
    ready, done = threading.Event(), threading.Event()

    def task() -> None:
        with capture_output() as buffer:
            print("from the task")
            ready.set()
            done.wait(5)
        task.text = buffer.getvalue()  # type: ignore[attr-defined]

    thread = threading.Thread(target=task)
    thread.start()
    assert ready.wait(5)
    print("from the notebook")
    done.set()
    thread.join(5)
    assert task.text == "from the task\n"  # type: ignore[attr-defined]
    assert outer.getvalue() == "from the notebook\n"


def test_reinstalls_over_a_replaced_stream(monkeypatch) -> None:
    replacement = io.StringIO()
    monkeypatch.setattr(sys, "stdout", replacement)  # e.g. a kernel replaced it
    ensure_installed()
    assert isinstance(sys.stdout, RoutingStream) and sys.stdout.original is replacement
    with capture_output() as buffer:
        print("captured")
    print("passed through")
    assert buffer.getvalue() == "captured\n"
    assert replacement.getvalue() == "passed through\n"
