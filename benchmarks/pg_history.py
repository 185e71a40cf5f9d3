"""Status lookups on the PostgreSQL run log at 1M runs: the plans (EXPLAIN) and the times.

Fills the log with ``--size`` finished runs (default 1,000,000, over ``--tasks`` 1,000
tasks) by COPY, runs ANALYZE, then for each lookup the store makes prints the plan's
node types (an ``Index``/``Index Only`` scan, never a ``Seq Scan`` on ``runs``) and the
median time of the store's own call with its cache off (a query each time).

Server: ``--url postgresql+psycopg://...`` (its ``redengine_nb_bench`` schema is dropped
and made again), or, without it, a temporary server started from Debian's binaries as
the tests do (tests/pg_server.py) and stopped at the end.

Run: ``python benchmarks/pg_history.py [--size 1000000] [--url URL]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _pg import server  # noqa: E402

from redengine_nb.records import Action  # noqa: E402
from redengine_nb.runlog.postgres import PostgresRunLog  # noqa: E402

SCHEMA = "redengine_nb_bench"
START = 1_700_000_000.0


def fill(url: str, size: int, tasks: int) -> None:
    import psycopg
    import sqlalchemy as sa

    dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    PostgresRunLog(url, schema=SCHEMA, listen=False).close()  # the schema, as made in use
    actions = ["success"] * 8 + ["fail", "inaction"]
    t = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(
            f'COPY {SCHEMA}.runs (task_name, action, created, start, "end", owner) FROM STDIN'
        ) as copy:
            for i in range(size):
                at = START + i * 6.0
                copy.write_row(
                    (f"task{i % tasks:04d}", actions[i % 10], at, at + 0.1, at + 5.0, "bench")
                )
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.runs")
    print(f"filled {size:,} runs over {tasks} tasks in {time.perf_counter() - t:.1f} s")


def plan(url: str, sql: str, params: dict[str, Any]) -> tuple[list[str], float]:
    """The node types of ``sql``'s plan (as run, EXPLAIN ANALYZE) and its execution ms."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), params).scalar_one()
    engine.dispose()
    doc = row if isinstance(row, list) else json.loads(row)
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        name = node["Node Type"]
        if "Relation Name" in node:
            name += f" {node['Relation Name']}"
        if "Index Name" in node:
            name += f" ({node['Index Name']})"
        nodes.append(name)
        for child in node.get("Plans", []):
            walk(child)

    walk(doc[0]["Plan"])
    return nodes, float(doc[0]["Execution Time"])


def timed(fn: Callable[[], object], n: int = 200) -> float:
    """Median microseconds of ``fn()``."""
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--url")
    args = ap.parse_args()
    with server(args.url) as url:
        fill(url, args.size, args.tasks)
        s = SCHEMA
        since, until = START + args.size * 3.0, START + args.size * 3.0 + 86400
        lookups: list[tuple[str, str, dict[str, Any]]] = [
            (
                "last RUN",
                f"SELECT start FROM {s}.runs WHERE task_name = :t AND start IS NOT NULL "
                "ORDER BY start DESC LIMIT 1",
                {"t": "task0500"},
            ),
            (
                "last SUCCESS",
                f"SELECT time FROM {s}.runs WHERE task_name = :t AND action = 'success' "
                "ORDER BY time DESC LIMIT 1",
                {"t": "task0500"},
            ),
            (
                "count task",
                f"SELECT count(*) FROM {s}.runs WHERE task_name = :t",
                {"t": "task0500"},
            ),
            (
                "count FAIL in a day",
                f"SELECT count(*) FROM {s}.runs WHERE task_name = :t AND action = 'fail' "
                "AND time >= :a AND time < :b",
                {"t": "task0500", "a": since, "b": until},
            ),
            (
                "records 5",
                f"SELECT * FROM {s}.runs WHERE task_name = :t "
                "ORDER BY created DESC, run_id DESC LIMIT 5",
                {"t": "task0500"},
            ),
            (
                "open runs",
                f"SELECT * FROM {s}.runs WHERE action = 'run' ORDER BY run_id",
                {},
            ),
        ]
        print(f"\n| lookup | plan at {args.size:,} runs | server ms |")
        print("|---|---|---:|")
        for name, sql, params in lookups:
            nodes, ms = plan(url, sql, params)
            print(f"| {name} | {' > '.join(nodes)} | {ms:.3f} |")
        log = PostgresRunLog(url, schema=SCHEMA, listen=False, cache_size=0)
        cached = PostgresRunLog(url, schema=SCHEMA, listen=False)
        try:
            calls: list[tuple[str, Callable[[], object]]] = [
                ("last(task, SUCCESS), cached", lambda: cached.last("task0500", Action.SUCCESS)),
                ("last(task, SUCCESS), no cache", lambda: log.last("task0500", Action.SUCCESS)),
                ("last(task, RUN), no cache", lambda: log.last("task0500", Action.RUN)),
                ("count(task)", lambda: log.count("task0500")),
                (
                    "count(task, FAIL, day)",
                    lambda: log.count("task0500", Action.FAIL, since, until),
                ),
                ("records(task, limit=5)", lambda: log.records(task="task0500", limit=5)),
            ]
            print("\n| store call (client + round trip) | median us |")
            print("|---|---:|")
            for name, fn in calls:
                print(f"| {name} | {timed(fn):.0f} |")
            t = time.perf_counter()
            names = log.task_names()
            print(
                f"| task_names() ({len(names)} names, skip scan) | "
                f"{(time.perf_counter() - t) * 1e6:.0f} |"
            )
        finally:
            log.close()
            cached.close()


if __name__ == "__main__":
    main()
