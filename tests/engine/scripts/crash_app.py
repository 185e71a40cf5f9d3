"""A headless scheduler for the crash test: ``crash_app.py LOG FIFO [again]``.

``daily_job`` runs once a day. ``long`` starts after it has succeeded, tells the test so
through the FIFO, and then blocks: the test kills this process with SIGKILL while
``long``'s run is open. Started again on the same log with ``again``, the app also has a
``probe`` task that is due at once, and shuts itself down when ``probe`` has succeeded; by
then the scheduler has evaluated every task at least once.
"""

from __future__ import annotations

import sys
import threading

from redengine_nb import RedEngine


def main() -> None:
    log, fifo = sys.argv[1], sys.argv[2]
    again = sys.argv[3:] == ["again"]
    config = {"task_execution": "thread"}
    if again:
        config["shut_cond"] = "task 'probe' has succeeded"
    app = RedEngine(config=config, logs=log)

    @app.task("daily")
    def daily_job() -> None:
        print("daily work done")

    @app.task("after task 'daily_job'")
    def long() -> None:
        with open(fifo, "w") as pipe:
            pipe.write("running")
        threading.Event().wait(600)  # killed long before this

    if again:

        @app.task("true")
        def probe() -> None:
            print("probe ran")

    app.run()


if __name__ == "__main__":
    main()
