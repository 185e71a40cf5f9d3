"""Engine benchmarks: idle CPU, start lag, burst throughput, status lookup time.

Prints numbers; asserts nothing. ``python benchmarks/engine_bench.py`` (full) or
``--quick`` (shorter windows, fewer records). Thread execution, a trivial function, a
SQLite run log in a temporary folder.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from pathlib import Path

from redengine_nb import RedEngine
from redengine_nb.records import Action, RunRecord


def trivial() -> None:
    pass


def make_app(folder: Path, name: str) -> RedEngine:
    return RedEngine(
        logs=str(folder / f"{name}.db"),
        task_execution="thread",
        task_pre_exist="rename",
        silence_task_prerun=True,
    )


def idle_cpu(folder: Path, seconds: float) -> None:
    app = make_app(folder, "idle")
    for i in range(10):
        app.task("every 1 hour", func=trivial, name=f"t{i}")
    app.start()
    app.session.wait_idle(10)
    threading.Event().wait(0.5)
    cpu0, wall0 = time.process_time(), time.monotonic()
    threading.Event().wait(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    app.shut_down(timeout=10)
    print(
        f"idle CPU, 10 hourly tasks, {wall:.1f} s: {100 * cpu / wall:.4f} % of a core "
        "(target ≤ 0.05 %; APScheduler ≈ 0.001 %, Rocketry ≈ 2.2 %)"
    )


def start_lag(folder: Path, count: int, seconds: float) -> None:
    app = make_app(folder, f"lag{count}")
    for i in range(count):
        app.task("every 1 second", func=trivial, name=f"t{i}")
    begin = time.time()
    app.start()
    threading.Event().wait(seconds)
    app.shut_down(timeout=30)
    lags: list[float] = []
    missed = 0
    for i in range(count):
        starts = sorted(r.start for r in app.runlog.records(task=f"t{i}") if r.start is not None)
        for prev, cur in itertools.pairwise(starts):
            lags.append(cur - (prev + 1.0))
        expected = int(seconds) - 1
        missed += max(0, expected - len(starts))
    lags.sort()
    p50 = statistics.median(lags) * 1000 if lags else float("nan")
    p99 = lags[int(len(lags) * 0.99)] * 1000 if lags else float("nan")
    print(
        f"start lag, {count} tasks every 1 s over {seconds:.0f} s: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, {len(lags)} intervals, missed {missed} "
        f"(since start {time.time() - begin:.1f} s)"
    )


def burst(folder: Path, count: int) -> None:
    app = make_app(folder, "burst")
    for i in range(count):
        app.task("every 1 hour", func=trivial, name=f"t{i}")
    begin = time.perf_counter()
    started = app.session.tick()
    app.session.wait_idle(120)
    elapsed = time.perf_counter() - begin
    print(
        f"burst: {len(started)} runs due at once in {elapsed:.2f} s: "
        f"{len(started) / elapsed:,.0f} runs/s including log writes "
        "(target ≥ 5,000/s; APScheduler ≈ 19,000/s without a log)"
    )


def status_lookup(folder: Path, sizes: list[int]) -> None:
    for size in sizes:
        app = make_app(folder, f"status{size}")
        app.task("daily", func=trivial, name="probe")
        log = app.runlog
        t = time.time() - size
        for i in range(size):
            name = "probe" if i % 100 == 0 else f"other{i % 50}"
            log.log_run(
                RunRecord(
                    "", name, Action.SUCCESS if i % 7 else Action.FAIL, t + i, t + i, t + i + 0.5
                )
            )
        task = app.session["probe"]
        rounds = 200
        begin = time.perf_counter()
        for _ in range(rounds):
            _ = task.status, task.last_success, task.last_fail, task.is_due()
        per = (time.perf_counter() - begin) / rounds * 1e6
        print(
            f"status lookup with {size:,} records: {per:.0f} µs "
            "(status + last_success + last_fail + is_due)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    window = 3.0 if args.quick else 10.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        idle_cpu(folder, window)
        start_lag(folder, 100, window)
        start_lag(folder, 1000, window)
        burst(folder, 2000 if args.quick else 10_000)
        status_lookup(folder, [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])


if __name__ == "__main__":
    main()
