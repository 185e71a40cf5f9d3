"""Where the CPU of one run goes: one task due every 0.1 s among 10 idle ones (compare.py's
"scale" scenario at 10 tasks), each part of the path timed in CPU time of its thread.

    python benchmarks/run_cost.py [--window 5]

Prints the process's CPU per run, then for each part (the scheduler step, the launch, the
start commit, the end commit, ...) how often a run calls it and its median CPU time
(``time.thread_time()`` around the call: the CPU of the calling thread only, not wall
time, so waiting for a lock or the disk does not count), and the CPU of each thread per
run (``/proc/<tid>/schedstat``, Linux). docs/performance.md reads the CPU per run against
APScheduler's with these figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

costs: dict[str, list[float]] = {}


def _timed(owner: Any, name: str, label: str | None = None) -> None:
    original: Callable[..., Any] = getattr(owner, name)
    key = label or name

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            costs.setdefault(key, []).append(time.thread_time() - t0)

    setattr(owner, name, timed)


def _thread_cpu_us() -> dict[str, float]:
    """CPU time of each thread of this process so far, µs, by thread name (Linux)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as fh:
                ns = int(fh.read().split()[0])
        except OSError:
            continue
        name = names.get(int(tid), "?")
        if name.startswith("redengine_nb:") and name != "redengine_nb:end-writer":
            name = "workers"
        out[name] = out.get(name, 0.0) + ns / 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--window", type=float, default=5.0, help="seconds measured")
    args = ap.parse_args()

    import redengine_nb._engine.ends as ends
    import redengine_nb._engine.launch as launch
    import redengine_nb._engine.step as step
    import redengine_nb.executors.thread as thread
    from redengine_nb import RedEngine
    from redengine_nb.runlog.sqlite import SQLiteRunLog

    _timed(step.Step, "tick", "step (tick)")
    _timed(step.Step, "_look", "a condition looked at")
    _timed(step.Step, "seconds_until_wake")
    _timed(launch.Launcher, "_prepare", "prepare")
    _timed(launch.Launcher, "_start_batch", "start batch (commit + hand-off)")
    _timed(thread.ThreadExecutor, "start", "hand-off to a worker")
    _timed(SQLiteRunLog, "claim_starts", "start commit (claim_starts)")
    _timed(SQLiteRunLog, "refresh_if_free", "refresh_if_free")
    _timed(SQLiteRunLog, "end_runs", "end commit (end_runs)")
    _timed(ends.EndWriter, "_finish", "end writer: write + acknowledge")

    with tempfile.TemporaryDirectory(prefix="renb-runcost-") as d:
        app = RedEngine(config={"task_execution": "thread"}, logs=f"{d}/log.db")
        for i in range(10):
            app.task("every 1 hour", func=lambda: None, name=f"t{i}")
        app.task("every 0.1 seconds", func=lambda: None, name="ticker")
        app.start()
        time.sleep(1.0)  # the first step looks at every task; then settle
        costs.clear()
        before, c0 = _thread_cpu_us(), time.process_time()
        time.sleep(args.window)
        after, c1 = _thread_cpu_us(), time.process_time()
        app.shut_down()
    runs = len(costs.get("start commit (claim_starts)", [])) or 1
    print(f"{runs} runs; process CPU per run: {(c1 - c0) / runs * 1e6:.0f} µs")
    print(f"{'part':36} {'calls/run':>9} {'median µs':>10} {'µs/run':>8}")
    for key, values in sorted(costs.items(), key=lambda kv: -sum(kv[1])):
        print(
            f"{key:36} {len(values) / runs:9.2f} {statistics.median(values) * 1e6:10.0f} "
            f"{sum(values) / runs * 1e6:8.0f}"
        )
    print("CPU per run by thread, µs:")
    for name, total in sorted(after.items(), key=lambda kv: -kv[1]):
        spent = total - before.get(name, 0.0)
        if spent > 0:
            print(f"  {name:36} {spent / runs:8.0f}")


if __name__ == "__main__":
    main()
