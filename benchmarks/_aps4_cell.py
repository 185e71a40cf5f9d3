"""One APScheduler 4 scheduler process for pg_scale.py (run by its side venv's Python).

``python _aps4_cell.py URL TASKS SECONDS INDEX W0``: runs a scheduler (SQLAlchemy data
store + psycopg event broker on URL) from now until ``SECONDS`` after the instant ``W0``
and prints one JSON line: each run's lag (start minus its scheduled fire time) and the
wall time it started. Index 0 first adds the schedules (every 1 s from ``W0``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime

from apscheduler import ConflictPolicy, Scheduler, current_job
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.eventbrokers.psycopg import PsycopgEventBroker
from apscheduler.triggers.interval import IntervalTrigger

LAGS: list[float] = []
STARTS: list[float] = []
_lock = threading.Lock()


def job() -> None:
    now = time.time()
    fire = current_job.get().scheduled_fire_time
    with _lock:
        STARTS.append(now)
        if fire is not None:
            LAGS.append(now - fire.timestamp())


def main() -> None:
    url, tasks, seconds, index = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    w0 = float(sys.argv[5])
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    store = SQLAlchemyDataStore(url, schema="apscheduler")
    broker = PsycopgEventBroker(conninfo)
    with Scheduler(store, broker, identity=f"bench-{index}", max_concurrent_jobs=1000) as sched:
        if index == "0":
            start = datetime.fromtimestamp(w0, UTC)
            for i in range(tasks):
                sched.add_schedule(
                    job,
                    IntervalTrigger(seconds=1, start_time=start),
                    id=f"task{i:04d}",
                    conflict_policy=ConflictPolicy.replace,
                )
        print("ready", flush=True)  # the schema and schedules exist: start the others
        sched.start_in_background()
        time.sleep(max(0.0, w0 + seconds - time.time()))
        sched.stop()
        sched.wait_until_stopped()
    print(json.dumps({"lags": LAGS, "commits": STARTS}), flush=True)


if __name__ == "__main__":
    main()
