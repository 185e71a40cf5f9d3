"""One of three schedulers on one run log: ``fleet_app.py LOGS MARKS GO SECONDS``.

50 tasks: 20 ``every 3 seconds``, 20 ``daily``, 10 ``after task 'everyNN'``. Each run
appends ``<task> <pid> <time>`` to MARKS and lasts 0.3 s. Starts when GO exists, stops
after SECONDS.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from redengine_nb import RedEngine


def main() -> None:
    logs, marks, go, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    app = RedEngine(config={"task_execution": "thread", "lease_ttl": 3}, logs=logs)

    def work(name: str) -> None:
        fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{name} {os.getpid()} {time.time():.3f}\n".encode())
        finally:
            os.close(fd)
        time.sleep(1.0)

    for i in range(20):
        app.task(
            "every 3 seconds", func=work, name=f"every{i:02d}", parameters={"name": f"every{i:02d}"}
        )
        app.task("daily", func=work, name=f"daily{i:02d}", parameters={"name": f"daily{i:02d}"})
    for i in range(10):
        app.task(
            f"after task 'every{i:02d}'",
            func=work,
            name=f"after{i:02d}",
            parameters={"name": f"after{i:02d}"},
        )
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    threading.Timer(seconds, app.shut_down).start()
    app.run()


if __name__ == "__main__":
    main()
