"""execution="dask" against its floor (a bare ``client.submit``) and against
execution="process", in the same run.

    python benchmarks/dask_bench.py            # 1,000 short runs each
    python benchmarks/dask_bench.py --quick    # 100 each (CI: keeps it working)

One LocalCluster (worker processes, sized to the machine) serves the Dask rows, each the
median of ``--repeat`` (3) runs, bare and ours interleaved. Three rows:

- **bare submit** -- N ``client.submit(f, pure=False)`` of a function that returns the
  time it began; all results fetched with one ``client.gather``. The floor: what Dask itself costs.
- **redengine_nb dask** -- N tasks (``execution="dask"``, SQLite run log in a temp folder),
  each forced once, the scheduler on its thread; until every end is written.
- **redengine_nb process** -- the same with ``execution="process"``
  (``max_process_count`` = CPU count).

Per row: runs/s (N over the wall time from the first submit or step to the last end),
wall time per run, and the start lag of each run (when its function began, minus when it
was submitted / found due): p50 and p99. The last line is the overhead per run of
redengine_nb's Dask runs over the bare submit (goal: within 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def began() -> float:
    """A short task: the time it began."""
    return time.time()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """The repetition with the median wall time (its figures kept together)."""
    return sorted(rows, key=lambda row: row["wall"])[len(rows) // 2]


def bare_submit(client: Any, n: int) -> dict[str, float]:
    client.submit(began, pure=False).result()  # warm: the function is known to the workers
    t0 = time.time()
    submitted: list[float] = []
    futures = []
    for _ in range(n):
        submitted.append(time.time())
        futures.append(client.submit(began, pure=False))
    values = client.gather(futures)  # one batch: the cheapest way to have every result
    lags = [value - at for value, at in zip(values, submitted, strict=True)]
    wall = time.time() - t0
    return {"wall": wall, "runs_s": n / wall, "p50": pct(lags, 50), "p99": pct(lags, 99)}


def ours(execution: str, n: int, address: str | None) -> dict[str, float]:
    from redengine_nb import RedEngine

    with tempfile.TemporaryDirectory() as tmp:
        app = RedEngine(
            config={
                "task_execution": execution,
                "dask_address": address,
                "max_process_count": os.cpu_count() or 1,
            },
            logs=str(Path(tmp) / "runs.db"),
        )
        if execution == "dask":  # warm: connected, the function known to the workers
            app.task(func=began, name="warm")
            app.session["warm"].run()
            app.session.tick()
            app.session.wait_idle(120)
        names = [f"t{i}" for i in range(n)]
        for name in names:
            app.task(func=began, name=name)
            app.session[name].run()
        t0 = time.time()
        app.start()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # until every run has ended (the log says)
            if app.session.wait_idle(1.0) and all(
                app.session[name].status not in (None, "run") for name in names
            ):
                break
        wall = time.time() - t0
        log = app.session.get_task_log()
        app.shut_down()
        log = log[log.task_name.isin(names)]
        created = dict(zip(log.task_name, log.created, strict=True))
        lags = [
            app.session.returns[name] - created[name].timestamp()
            for name in names
            if name in app.session.returns
        ]
        ok = int((log.action == "success").sum())
        return {
            "wall": wall,
            "runs_s": n / wall,
            "p50": pct(lags, 50),
            "p99": pct(lags, 99),
            "success": ok,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 runs per row instead of 1,000")
    ap.add_argument("-n", type=int, default=None, help="runs per row")
    ap.add_argument("--repeat", type=int, default=3, help="Dask rows: median of this many")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    n = args.n or (100 if args.quick else 1000)

    from distributed import Client, LocalCluster

    with LocalCluster(processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        workers = len(cluster.workers)
        threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        bare, dask_rows = [], []
        for _ in range(args.repeat):  # interleaved: a busy spell hits both alike
            bare.append(bare_submit(client, n))
            dask_rows.append(ours("dask", n, cluster.scheduler_address))
        rows = {"bare client.submit": median_row(bare), "redengine_nb dask": median_row(dask_rows)}
    rows["redengine_nb process"] = ours("process", n, None)

    print(
        f"# execution='dask' ({n} short runs; LocalCluster {workers} workers, {threads} threads;"
        f" {os.cpu_count()} cores)\n"
    )
    print("| row | runs/s | ms per run | start lag p50 (ms) | start lag p99 (ms) |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['runs_s']:.0f} | {1000 * row['wall'] / n:.2f} | "
            f"{1000 * row['p50']:.1f} | {1000 * row['p99']:.1f} |"
        )
    per_bare = rows["bare client.submit"]["wall"] / n
    per_ours = rows["redengine_nb dask"]["wall"] / n
    versus = rows["redengine_nb dask"]["runs_s"] / rows["redengine_nb process"]["runs_s"]
    print(
        f"\nredengine_nb dask over bare submit: {per_ours / per_bare:.2f}x per run "
        f"({1000 * (per_ours - per_bare):+.2f} ms; goal within 2x); "
        f"dask vs process runs/s: {versus:.1f}x"
    )
    for name in ("redengine_nb dask", "redengine_nb process"):
        if rows[name].get("success") != n:
            print(f"WARNING: {name}: {rows[name].get('success')} of {n} runs succeeded")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
