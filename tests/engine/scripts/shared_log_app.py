"""One of two schedulers on one SQLite log, for the exactly-once test:
``shared_log_app.py LOG MARKS GO SECONDS``.

It registers the same ``daily`` tasks as its twin, waits until the file ``GO`` exists (so
that both begin together and find every task due at the same moment), schedules for
``SECONDS`` seconds and stops. Each run appends ``<task> <pid>`` to ``MARKS`` (one
``write`` of a short line with ``O_APPEND``: lines never mix), so the test counts the runs
that happened, not only the ones the log recorded.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from redengine_nb import RedEngine

TASKS = 40


def main() -> None:
    log, marks, go, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    app = RedEngine(config={"task_execution": "thread"}, logs=log)

    def work(name: str) -> None:
        fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{name} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        time.sleep(0.2)  # still running while the twin looks

    for i in range(TASKS):
        name = f"daily{i:02d}"
        app.task("daily", func=work, name=name, parameters={"name": name})
    while not os.path.exists(go):
        time.sleep(0.005)
    threading.Timer(seconds, app.shut_down).start()
    app.run()


if __name__ == "__main__":
    main()
