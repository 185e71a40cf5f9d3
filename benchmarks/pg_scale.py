"""Schedulers sharing one run log: burst rate and start lag at 1,000 tasks, PostgreSQL vs
SQLite, one scheduler vs three.

Each scheduler is a process running the shared-log protocol as a scheduler step does
(refresh, the real ``every 1 second`` condition of each task evaluated against the store,
the due tasks claimed with ``claim_starts`` -- re-checked inside the claim -- in chunks
of ``--chunk`` so that several schedulers split a burst through ``SKIP LOCKED``, the runs
ended at the next step in one ``end_runs``). The runs do no work: this measures the
scheduling and the shared log, not the tasks.

- **burst runs/s** -- all tasks are due at once at the start (none has run): tasks /
  seconds until the last of them has been claimed (committed), across the schedulers;
- **sustained runs/s** -- runs started per second over the whole ``--seconds``;
- **p50/p99 start lag** -- per run, the commit of its claim minus the instant it became
  due (its previous start + 1 s, or the start of the run).

A store without ``claim_starts`` (SQLite until the claims land there) is measured with
one scheduler through ``start_runs``, and not with several (it would start runs twice).

Run: ``python benchmarks/pg_scale.py [--tasks 1000] [--seconds 10] [--url URL]``; without
``--url`` a temporary PostgreSQL server is started (tests/pg_server.py) and stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SCHEDULER = r"""
import json, os, socket, sys, time
from datetime import datetime, timezone
from redengine_nb.conditions import parse
from redengine_nb.conditions.base import Context
from redengine_nb.records import Action
from redengine_nb.runlog import open_runlog

logs, n_tasks, seconds, index, chunk = sys.argv[1:6]
n_tasks, seconds, index, chunk = int(n_tasks), float(seconds), int(index), int(chunk)
log = open_runlog(logs)
if hasattr(log, "fit_cache"):
    log.fit_cache(n_tasks)
cond = parse("every 1 second")
names = [f"task{i:04d}" for i in range(n_tasks)]
claims = hasattr(log, "claim_starts")
lease = None
if claims:
    lease = log.acquire_lease(now=time.time(), ttl=600, host=socket.gethostname(), pid=os.getpid())
open_runs = []
lags, commits = [], []
print("ready", flush=True)
w0 = float(sys.stdin.readline())
while time.time() < w0:
    time.sleep(0.001)
while time.time() < w0 + seconds:
    now = time.time()
    log.refresh()
    if open_runs:
        log.end_runs([(t, rid, Action.SUCCESS, now, None, None) for t, rid in open_runs])
        open_runs = []
    at = datetime.fromtimestamp(now, timezone.utc)
    due = [n for n in names if cond.is_met(Context(at, log, n))]
    if not due:
        time.sleep(0.001)
        continue
    since = {n: log.last(n, Action.RUN) for n in due}
    # each scheduler starts its chunks at another place: several split a burst
    k = (index * len(due) // 3) if claims else 0
    due = due[k:] + due[:k]
    for i in range(0, len(due), chunk):
        part = due[i:i + chunk]
        t = time.time()
        if claims:
            recs = log.claim_starts(
                part, created=t, start=t, owner=lease,
                recheck=lambda ns, t=t: [
                    n for n in ns
                    if cond.is_met(Context(datetime.fromtimestamp(t, timezone.utc), log, n))
                ],
            )
        else:
            recs = log.start_runs(part, created=t, start=t, owner="bench")
        done = time.time()
        for r in recs:
            prev = since[r.task_name]
            became_due = w0 if prev is None else max(w0, prev + 1.0)
            lags.append(done - became_due)
            commits.append(done)
            open_runs.append((r.task_name, r.run_id))
if open_runs:
    log.end_runs([(t, rid, Action.SUCCESS, time.time(), None, None) for t, rid in open_runs])
if claims:
    log.release_lease(lease)
log.close()
print(json.dumps({"lags": lags, "commits": commits}), flush=True)
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def cell(logs: str, schedulers: int, tasks: int, seconds: float, chunk: int) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCHEDULER, logs, str(tasks), str(seconds), str(i), str(chunk)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(schedulers)
    ]
    # the start instant is set once every scheduler has imported and opened the log
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
    w0 = time.time() + 0.5
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"{w0!r}\n")
        p.stdin.flush()
    lags: list[float] = []
    commits: list[float] = []
    for p in procs:
        assert p.stdout is not None and p.stdin is not None
        p.stdin.close()
        out = p.stdout.read()
        p.wait(120)
        last = out.strip().splitlines()[-1]
        got = json.loads(last)
        lags += got["lags"]
        commits += got["commits"]
    return summary(lags, commits, tasks, seconds, w0)


def aps4_cell(
    python: str, url: str, schedulers: int, tasks: int, seconds: float
) -> dict[str, float]:
    """The same cell with APScheduler 4 (its SQLAlchemy data store on the same server)."""
    import sqlalchemy as sa

    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS apscheduler CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA apscheduler"))
    w0 = time.time() + 10.0 + 5.0 * schedulers  # time to start and to add the schedules
    script = str(ROOT / "benchmarks" / "_aps4_cell.py")
    procs: list[subprocess.Popen[str]] = []
    for i in range(schedulers):  # one at a time: each makes the tables if missing
        procs.append(
            subprocess.Popen(
                [python, script, url, str(tasks), str(seconds), str(i), repr(w0)],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        assert procs[-1].stdout is not None
        assert procs[-1].stdout.readline().strip() == "ready"
    late = time.time() - w0
    if late > 0:
        print(f"APScheduler 4 was ready {late:.1f} s after the start instant", file=sys.stderr)
    lags: list[float] = []
    commits: list[float] = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 180)
        got = json.loads(out.strip().splitlines()[-1])
        lags += got["lags"]
        commits += got["commits"]
    return summary(lags, commits, tasks, seconds, w0)


def summary(
    lags: list[float], commits: list[float], tasks: int, seconds: float, w0: float
) -> dict[str, float]:
    commits.sort()
    burst_end = commits[tasks - 1] if len(commits) >= tasks else float("nan")
    return {
        "runs": len(commits),
        "burst_runs_s": tasks / (burst_end - w0),
        "sustained_runs_s": len(commits) / seconds,
        "lag_p50_ms": pct(lags, 50) * 1000,
        "lag_p99_ms": pct(lags, 99) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--url")
    ap.add_argument(
        "--aps4-python",
        default=str(ROOT / "benchmarks" / ".aps4-venv" / "bin" / "python"),
        help="a Python with APScheduler 4 (benchmarks/aps4_env.sh makes it)",
    )
    ap.add_argument("--only", default="", help="comma list of: pg, sqlite, aps4")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    from _pg import server

    rows = []
    with server(args.url) as url, tempfile.TemporaryDirectory() as tmp:
        import sqlalchemy as sa

        from redengine_nb.runlog.postgres import PostgresRunLog

        def fresh_pg() -> str:
            with sa.create_engine(url).begin() as conn:
                conn.execute(sa.text("DROP SCHEMA IF EXISTS redengine_nb CASCADE"))
            PostgresRunLog(url, listen=False).close()
            return url

        cells = [("PostgreSQL", 1), ("PostgreSQL", 3), ("SQLite", 1), ("SQLite", 3)]
        cells += [("APScheduler 4 (PostgreSQL)", 1), ("APScheduler 4 (PostgreSQL)", 3)]
        keys = {"PostgreSQL": "pg", "SQLite": "sqlite"}
        for store, n in cells:
            if only and keys.get(store, "aps4") not in only:
                continue
            if store.startswith("APScheduler"):
                if not Path(args.aps4_python).exists():
                    rows.append((store, n, None))
                    continue
                rows.append(
                    (store, n, aps4_cell(args.aps4_python, url, n, args.tasks, args.seconds))
                )
                continue
            if store == "SQLite":
                logs = str(Path(tmp) / f"runs{n}.db")
                from redengine_nb.runlog import SQLiteRunLog

                if n > 1 and not hasattr(SQLiteRunLog, "claim_starts"):
                    rows.append((store, n, None))
                    continue
            else:
                logs = fresh_pg()
            rows.append((store, n, cell(logs, n, args.tasks, args.seconds, args.chunk)))
    print(f"\n{args.tasks} tasks 'every 1 second', {args.seconds:g} s, chunks of {args.chunk}")
    print("| store | schedulers | burst runs/s | sustained runs/s | lag p50 ms | lag p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for store, n, got in rows:
        if got is None:
            why = (
                "not measured (run benchmarks/aps4_env.sh)"
                if store.startswith("APScheduler")
                else "n/a: no claims in this store yet"
            )
            print(f"| {store} | {n} | {why} | | | |")
            continue
        print(
            f"| {store} | {n} | {got['burst_runs_s']:.0f} | {got['sustained_runs_s']:.0f} | "
            f"{got['lag_p50_ms']:.1f} | {got['lag_p99_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
