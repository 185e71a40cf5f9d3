"""The follower of two schedulers on one SQLite log, for the wake test:
``follower_app.py LOG MARKS``.

Its only task, ``report``, runs ``after task 'fetch'`` -- a task another scheduler runs.
Nothing here is ever due by the clock, and its runner's wake-up cap is an hour: it wakes
only when told. It prints ``ready`` once its runner has made its first step (the next
thing it would do on its own is wait), and ``report`` appends ``report`` to ``MARKS``.
"""

from __future__ import annotations

import os
import sys
import threading

from redengine_nb import RedEngine
from redengine_nb._engine.runner import Runner


def main() -> None:
    log, marks = sys.argv[1], sys.argv[2]
    app = RedEngine(config={"task_execution": "thread"}, logs=log)

    def report() -> None:
        fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"report\n")
        finally:
            os.close(fd)
        app.shut_down()

    app.task("after task 'fetch'", func=report, name="report")
    session = app.session
    step = session.tick
    first = threading.Event()

    def tick() -> list[str]:
        started = step()
        if not first.is_set():
            first.set()
            print("ready", flush=True)
        return started

    session.tick = tick  # type: ignore[method-assign]
    Runner(session, cap=3600.0).run()


if __name__ == "__main__":
    main()
