"""What this machine allows: the floors our per-run costs are read against.

    python benchmarks/floor.py [--json out.json]

Four figures, in this process (stdlib only); the first three the median of many
repetitions:

- **thread wake-up** -- one thread sets an Event, another blocked on it returns from
  ``wait()``; half of a ping-pong round trip, so one hand-off from a thread to a waiting one.
- **pool submit** -- ``ThreadPoolExecutor.submit(f).result()`` of a function that does
  nothing, the pool's workers already started: one run handed to a pool and back.
- **indexed SQLite read** -- ``SELECT max(start) FROM runs WHERE task_name = ?`` on a file
  of 100,000 rows with an index on ``(task_name, start)``: one point lookup.
- **burst floor** -- measured the way compare.py's burst is: 10,000 bare jobs submitted
  at once to a thread pool of 2 x cores + 2 workers until the last has returned, plus the
  rows a durable burst writes: a start row per run inserted and then an end written per
  run, 256 rows per transaction (WAL, ``synchronous=NORMAL``, no checkpoint in a
  commit, as the run log's connection); wall time per run. What
  a burst of ours costs beyond it is the scheduling itself (conditions, the
  bookkeeping of each run, the hand-offs).

docs/performance.md sets compare.py's per-run figures beside these: a run of ours costs at
least a hand-off to a worker, and a status lookup at least one indexed read.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def thread_wakeup_us(rounds: int = 2000) -> float:
    ping, pong = threading.Event(), threading.Event()

    def other() -> None:
        for _ in range(rounds):
            ping.wait()
            ping.clear()
            pong.set()

    t = threading.Thread(target=other)
    t.start()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ping.set()
        pong.wait()
        pong.clear()
        samples.append((time.perf_counter() - t0) / 2)
    t.join()
    return statistics.median(samples) * 1e6


def pool_submit_us(rounds: int = 2000) -> float:
    with ThreadPoolExecutor(4) as pool:
        for _ in range(50):
            pool.submit(lambda: None).result()
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            pool.submit(lambda: None).result()
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def sqlite_read_us(rows: int = 100_000, rounds: int = 5000) -> float:
    with tempfile.TemporaryDirectory(prefix="renb-floor-") as d:
        conn = sqlite3.connect(Path(d) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE runs (run_id INTEGER PRIMARY KEY, task_name TEXT, start REAL)")
        conn.execute("CREATE INDEX ix ON runs (task_name, start)")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO runs (task_name, start) VALUES (?, ?)",
            ((f"t{i % 100}", float(i)) for i in range(rows)),
        )
        conn.execute("COMMIT")
        sql = "SELECT max(start) FROM runs WHERE task_name = ?"
        samples = []
        for i in range(rounds):
            t0 = time.perf_counter()
            conn.execute(sql, (f"t{i % 100}",)).fetchone()
            samples.append(time.perf_counter() - t0)
        conn.close()
    return statistics.median(samples) * 1e6


def _nothing() -> None:
    return None


def burst_floor_us(n: int = 10_000, batch: int = 256) -> dict[str, float]:
    workers = 2 * (os.cpu_count() or 1) + 2
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(_nothing) for _ in range(workers * 4)]:
            f.result()
        t0 = time.perf_counter()
        futures = [pool.submit(_nothing) for _ in range(n)]
        for f in futures:
            f.result()
        pool_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="renb-floor-") as d:
        conn = sqlite3.connect(Path(d) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # As the run log's own connection: checkpoints are made by another thread.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(
            "CREATE TABLE runs (run_id INTEGER PRIMARY KEY, task_name TEXT, action TEXT, "
            'created REAL, start REAL, "end" REAL)'
        )
        conn.execute("CREATE INDEX ix ON runs (task_name, action, start)")
        t0 = time.perf_counter()
        for lo in range(0, n, batch):
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO runs (run_id, task_name, action, created, start) "
                "VALUES (?, ?, 'run', ?, ?)",
                [(i + 1, f"t{i}", now, now) for i in range(lo, min(n, lo + batch))],
            )
            conn.execute("COMMIT")
        for lo in range(0, n, batch):
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "UPDATE runs SET action = 'success', \"end\" = ? WHERE run_id = ?",
                [(now, i + 1) for i in range(lo, min(n, lo + batch))],
            )
            conn.execute("COMMIT")
        rows_s = time.perf_counter() - t0
        conn.close()
    return {
        "burst_floor_us": (pool_s + rows_s) / n * 1e6,
        "burst_pool_us": pool_s / n * 1e6,
        "burst_rows_us": rows_s / n * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    figures = {
        "thread_wakeup_us": thread_wakeup_us(),
        "pool_submit_us": pool_submit_us(),
        "sqlite_read_us": sqlite_read_us(),
        **burst_floor_us(),
    }
    for key, value in figures.items():
        print(f"{key:18s} {value:8.1f} µs")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
