"""Status lookups against a growing SQLite run log: the time should stay flat.

Builds run logs of 10k, 100k and 1M records (``--quick``: 10k and 100k) in a temporary
folder, then times per lookup:

- ``last (cached)``: ``last(task, SUCCESS)`` answered from the in-memory cache;
- ``last (no cache)``: the same with ``cache_size=0`` (an index probe each time);
- ``last RUN``: the newest start, no cache;
- ``count span``: ``count(task, SUCCESS, since, until)`` over a one-day span;
- ``records 20``: the newest 20 records of a task.

Run: ``python benchmarks/history.py [--quick] [--sizes 10000,100000]``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redengine_nb.records import Action
from redengine_nb.runlog import SQLiteRunLog

TASKS = 50
START = 1_700_000_000.0
STEP = 60.0  # a run a minute, spread over the tasks


def build(path: Path, size: int) -> None:
    """A run log of ``size`` finished runs, written in one transaction."""
    SQLiteRunLog(path).close()  # the schema and indexes, as the scheduler makes them
    actions = ["success"] * 8 + ["fail", "inaction"]
    rows = (
        (
            f"task{i % TASKS}",
            actions[i % len(actions)],
            START + i * STEP,
            START + i * STEP + 0.1,
            START + i * STEP + 5.0,
            "host:1:t1",
        )
        for i in range(size)
    )
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(
        'INSERT INTO runs (task_name, action, created, start, "end", owner) '
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")  # PRAGMA optimize would do this too, at the first close
    conn.close()


def per_call(fn: Callable[[], object], seconds: float = 0.3) -> float:
    """Microseconds per call, the best of three timed batches."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - t0
        if took > seconds / 3:
            break
        n *= 4
    best = took
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def measure(path: Path, size: int) -> dict[str, float]:
    end = START + size * STEP
    since, until = end - 86_400 * 2, end - 86_400  # a day, a day before the newest
    cached = SQLiteRunLog(path)
    plain = SQLiteRunLog(path, cache_size=0)
    try:
        return {
            "last (cached)": per_call(lambda: cached.last("task7", Action.SUCCESS)),
            "last (no cache)": per_call(lambda: plain.last("task7", Action.SUCCESS)),
            "last RUN": per_call(lambda: plain.last("task7", Action.RUN)),
            "count span": per_call(
                lambda: plain.count("task7", Action.SUCCESS, since=since, until=until)
            ),
            "records 20": per_call(lambda: plain.records(task="task7", limit=20)),
        }
    finally:
        cached.close()
        plain.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k records only")
    parser.add_argument("--sizes", help="comma-separated record counts")
    args = parser.parse_args()
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="redengine-history-") as tmp:
        for size in sizes:
            path = Path(tmp) / f"runs-{size}.db"
            t0 = time.perf_counter()
            build(path, size)
            built = time.perf_counter() - t0
            mb = os.path.getsize(path) / 1e6
            print(f"built {size:>9,} records in {built:6.1f} s ({mb:.0f} MB)", flush=True)
            results[size] = measure(path, size)
    names = list(next(iter(results.values())))
    print()
    print(f"{'µs per lookup':<18}" + "".join(f"{size:>12,}" for size in sizes) + f"{'ratio':>9}")
    for name in names:
        row = [results[size][name] for size in sizes]
        ratio = row[-1] / row[0]
        print(f"{name:<18}" + "".join(f"{v:12.1f}" for v in row) + f"{ratio:8.2f}x")
    print(f"\n(ratio: largest over smallest log; flat is about 1x. {TASKS} tasks.)")


if __name__ == "__main__":
    main()
