"""What the SQLite run log's watcher costs (docs/reliability.md, "Noticing another
scheduler's writes"): ``python benchmarks/sqlite_watch.py``.

Two stores on one file in this process, each with a watcher (an idle shared pair), for
``--idle`` seconds: the process's CPU. Then a burst of own starts and ends on one of them
(the looks it made, wall and CPU time), and the latency from a commit of the other store
to the callback. Each for ``off`` (no watcher), ``inotify`` and ``poll`` (inotify turned
off, as elsewhere than Linux).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

import redengine_nb.runlog.sqlite_watch as watch
from redengine_nb.records import Action, RunRecord
from redengine_nb.runlog import SQLiteRunLog


def measure(mode: str, idle: float, burst: int) -> str:
    real = watch._inotify
    if mode == "poll":
        watch._inotify = lambda path: None
    try:
        path = os.path.join(tempfile.mkdtemp(), "runs.db")
        a, b = SQLiteRunLog(path), SQLiteRunLog(path)
        looks = [0]
        look = a._watch_look

        def counted() -> bool:
            looks[0] += 1
            return look()

        a._watch_look = counted  # type: ignore[method-assign]
        woke = threading.Event()
        if mode != "off":
            a.on_change(woke.set)
            b.on_change(lambda: None)
        cpu = time.process_time()
        time.sleep(idle)
        idle_cpu = time.process_time() - cpu
        cpu, wall, before = time.process_time(), time.perf_counter(), looks[0]
        for i in range(burst):
            run = a.start_run("own", created=i, start=i, owner="me")
            a.finish_run(run.run_id, Action.SUCCESS, end=i + 0.5)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        made = looks[0] - before
        latency: list[float] = []
        if mode != "off":
            for i in range(20):
                time.sleep(0.7)
                woke.clear()
                t0 = time.perf_counter()
                b.log_run(RunRecord("", "fetch", Action.SUCCESS, i, i, i + 0.5))
                woke.wait(5.0)
                latency.append(time.perf_counter() - t0)
        a.close()
        b.close()
    finally:
        watch._inotify = real
    text = (
        f"{mode:8} idle pair {idle:g} s: CPU {idle_cpu * 1000:.2f} ms | {burst} own start+end: "
        f"{wall:.2f} s wall, {cpu:.2f} s CPU, {made} looks"
    )
    if latency:
        text += (
            f" | commit to callback: median {statistics.median(latency) * 1000:.1f} ms, "
            f"worst {max(latency) * 1000:.1f} ms"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle (10)")
    parser.add_argument("--burst", type=int, default=3000, help="own starts and ends (3000)")
    args = parser.parse_args()
    for mode in ("off", "inotify", "poll"):
        print(measure(mode, args.idle, args.burst), flush=True)


if __name__ == "__main__":
    main()
