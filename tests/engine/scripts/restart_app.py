"""A headless scheduler that restarts once: ``restart_app.py MODE LOG``.

``lifetime`` records which life of the process chain it runs in (pid, session id and the
restart count that :mod:`redengine_nb._engine.restart` passes on). In the first life it asks the
session to restart (``restarting`` = MODE); in the second it shuts the scheduler down.
"""

from __future__ import annotations

import os
import sys

from redengine_nb import RedEngine
from redengine_nb._engine.restart import restart_count
from redengine_nb.args import Session


def main() -> None:
    mode, log = sys.argv[1], sys.argv[2]
    app = RedEngine(config={"task_execution": "thread", "restarting": mode}, logs=log)

    @app.task("true")
    def lifetime(session: object = Session()) -> None:
        life = restart_count()
        sid = os.getsid(0) if hasattr(os, "getsid") else -1
        print(f"life={life} pid={os.getpid()} sid={sid}")
        if life == 0:
            session.restart()  # type: ignore[attr-defined]
        else:
            session.shut_down()  # type: ignore[attr-defined]

    app.run()
    print(f"life {restart_count()} ended", flush=True)


if __name__ == "__main__":
    main()
