"""A scheduler with a live process run, for the kill -9 test: ``orphan_app.py LOG PIDFILE``.

``worker`` runs in a child process: it writes its pid to ``PIDFILE`` (renamed into place)
and then works for ten minutes. The test kills this scheduler with SIGKILL, alone (not
its process group): the child must die with it.
"""

from __future__ import annotations

import os
import sys
import time

from redengine_nb import RedEngine


def worker(pidfile: str) -> None:
    with open(pidfile + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(pidfile + ".tmp", pidfile)
    time.sleep(600)


def main() -> None:
    log, pidfile = sys.argv[1], sys.argv[2]
    again = sys.argv[3:] == ["again"]
    config: dict[str, object] = {"task_execution": "process"}
    if again:
        config["shut_cond"] = "task 'probe' has succeeded"
    app = RedEngine(config=config, logs=log)
    if not again:
        app.task("daily", func=worker, name="worker", parameters={"pidfile": pidfile})
    else:
        app.task("true", func=print, name="probe", execution="thread")
    app.run()


if __name__ == "__main__":
    main()
