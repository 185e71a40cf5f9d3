"""redengine_nb's side of each compare.py scenario (run through ``_peers.py ours ...``).

Every scenario uses the engine as a notebook user would: ``RedEngine`` with thread
execution and the default SQLite run log (a file in a temporary folder), started on its
background thread.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from _harness import (
    Starts,
    every_process_summary,
    fork_floor_runs_per_s,
    grid_summary,
    idle_cpu_pct,
    lag_summary,
    mark_start,
    read_marks,
    rss_mb,
    time_per_call_us,
)
from _harness import wait_until as _wait_until
from _peers import foreground_extra

from redengine_nb.records import Action

Result = dict[str, Any]
Params = dict[str, Any]


@contextmanager
def _tmpdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="renb-bench-") as d:
        yield Path(d)


def _app(logs: str | Path, execution: str = "thread") -> Any:
    from redengine_nb import RedEngine

    return RedEngine(config={"task_execution": execution}, logs=str(logs))


def _task(
    app: Any, cond: str, name: str, func: Callable[[], None], execution: str = "thread"
) -> None:
    app.task(cond, func=func, name=name, execution=execution)


def idle(p: Params) -> Result:
    with _tmpdir() as d:
        app = _app(d / "log.db")
        for i in range(p["tasks"]):
            _task(app, "hourly", f"t{i}", lambda: None)
        app.start()
        time.sleep(p["settle"])  # each runs once (a new hour), then nothing is due
        cpu = idle_cpu_pct(p["window"])
        app.shut_down()
    return {"cpu_pct": cpu}


def _next_due_ts(app: Any, name: str) -> float | None:
    try:
        due = app.session[name].next_due()
    except Exception:
        return None
    if isinstance(due, datetime):
        return due.timestamp()
    return None


def lag(p: Params) -> Result:
    starts = Starts()
    window = float(p["window"])
    execution = p.get("execution", "thread")  # "main": each run inline, as schedule's
    with _tmpdir() as d:
        app = _app(d / "log.db", execution)
        names = [f"t{i}" for i in range(p["n"])]
        for name in names:
            _task(app, "every 1 second", name, starts.recorder(name), execution)
        t0 = time.time()
        # Our rule for "every 1 second": due when no run started in the last second, so a
        # task that never ran is due at once; take the engine's own next_due() if later.
        first = max([t0] + [x for x in (_next_due_ts(app, names[0]),) if x is not None])
        app.start()
        time.sleep(max(0.0, first + window + 1.5 - time.time()))
        app.shut_down()
        recorded = _recorded_starts(d / "log.db")
    # Our rule: the first run is due at the scheduler's start (``first``); each later one
    # a second after the instant the previous one was due — its step's instant for the
    # first run, then the rule's own due instants — or after its recorded start when that
    # start was a second or more late (``every``'s anchoring). Body times would make it
    # early: the body starts a little after the recorded start.
    lags: list[float] = []
    firsts: dict[str, float] = {}
    actual = 0
    for name, runs in starts.by_task.items():
        rec = recorded.get(name, [])
        if rec:
            firsts[name] = rec[0][1]  # the grid starts where the engine found it due
        anchor = None
        for k, (start, _) in enumerate(sorted(runs)):
            if k == 0:
                due = first
            else:
                assert anchor is not None
                due = anchor + 1.0
            if due >= first + window:
                break
            lags.append(start - due)
            actual += 1
            if k < len(rec):
                rec_start, created = rec[k]
                own_due = created if k == 0 else due
                anchor = own_due if rec_start - own_due < 1.0 else rec_start
            else:
                anchor = start
    out = lag_summary(lags, p["n"] * round(window), actual)
    return {**out, **grid_summary(starts.by_task, firsts or first, 1.0, window)}


def _recorded_starts(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Each task's recorded (start, created), by start."""
    from redengine_nb.runlog.sqlite import SQLiteRunLog

    out: dict[str, list[tuple[float, float]]] = {}
    log = SQLiteRunLog(path)
    for r in log.records():
        if r.start is not None:
            out.setdefault(r.task_name, []).append((r.start, r.created))
    log.close()
    return {k: sorted(v) for k, v in out.items()}


def burst(p: Params) -> Result:
    done = Starts()
    n = int(p["n"])
    execution = p.get("execution", "thread")  # "main": each run inline, as schedule's
    with _tmpdir() as d:
        app = _app(d / "log.db", execution)
        for i in range(n):
            _task(app, "daily", f"t{i}", done.end, execution)
        t0 = time.time()
        app.start()
        # Finished = every body returned and every run's end is acknowledged, which the
        # engine does only once the end is committed to the log (wait_idle waits on that
        # without polling the file, so the wait adds no reads of its own).
        ok = _wait_until(lambda: done.ends >= n, p.get("timeout", 300), 0.005)
        ok = ok and app.session.wait_idle(p.get("timeout", 300))
        t1 = time.time()
        ok = ok and not app.runlog.open_runs()  # checked, after the clock stopped
        logged = len(app.runlog.records(action=Action.SUCCESS))
        app.shut_down()
    if not ok:
        return {"na": f"only {done.ends} of {n} runs in {p.get('timeout', 300)} s"}
    return {"runs_per_s": n / (t1 - t0), "logged": logged, "note": "SQLite log (file, WAL)"}


def _fill(path: Path, tasks: list[str], records: int) -> None:
    """A run log of ``records`` finished runs spread over ``tasks`` (bulk insert: fixture)."""
    from redengine_nb.runlog.sqlite import SQLiteRunLog

    SQLiteRunLog(path).close()  # creates the schema
    now = time.time()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # a fixture: durability does not matter here
    rows = []
    for i in range(records):
        start = now - (records - i) * 0.5
        action = "fail" if i % 10 == 9 else "success"
        rows.append((tasks[i % len(tasks)], action, start, start, start + 0.1))
        if len(rows) >= 50_000:
            conn.executemany(
                'INSERT INTO runs (task_name, action, created, start, "end") '
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            rows.clear()
    if rows:
        conn.executemany(
            'INSERT INTO runs (task_name, action, created, start, "end") VALUES (?, ?, ?, ?, ?)',
            rows,
        )
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def condition(p: Params) -> Result:
    from redengine_nb.conditions import parse
    from redengine_nb.conditions.base import Context
    from redengine_nb.runlog.sqlite import SQLiteRunLog

    names = [f"t{i}" for i in range(100)] + ["x"]
    texts = {
        "every_us": "every 10 minutes",
        "daily_us": "daily",
        "after_us": "after task 'x'",
        "compound_us": (
            "(every 10 minutes & time of day between 08:00 and 18:00) | "
            "(daily & after task 'x') | (hourly & ~(task 't2' has failed)) | "
            "(weekly & time of week between Mon and Fri)"
        ),
    }
    out: Result = {}
    with _tmpdir() as d:
        _fill(d / "log.db", names, int(p["history"]))
        log = SQLiteRunLog(d / "log.db")
        now = datetime.now().astimezone()
        for key, text in texts.items():
            cond = parse(text)

            def one(cond: Any = cond) -> bool:
                # A fresh context per evaluation, as the scheduler builds one per check.
                return bool(cond.is_met(Context(now=now, history=log, task="t1")))

            out[key] = time_per_call_us(one)
        # cron's next due instant, at a new minute each call (as a step sees it after a
        # run: nothing cached from the call before).
        cron = parse("cron */15 * * * *")
        contexts = [
            Context(
                now=datetime.fromtimestamp(now.timestamp() + 61 * i, now.tzinfo),
                history=log,
                task="t1",
            )
            for i in range(4096)
        ]
        turn = iter(range(1 << 62))

        def cron_next() -> object:
            return cron.next_due(contexts[next(turn) & 4095])

        out["cron_us"] = time_per_call_us(cron_next)
        log.close()
    out["note"] = "SQLite log, bounded last() cache on"
    return out


def history(p: Params) -> Result:
    from redengine_nb.runlog.sqlite import SQLiteRunLog

    out: Result = {}
    names = [f"t{i}" for i in range(100)]
    for size in p["sizes"]:
        with _tmpdir() as d:
            _fill(d / "log.db", names, int(size))
            cold = SQLiteRunLog(d / "log.db", cache_size=0)
            out[f"us_{size}"] = time_per_call_us(partial(cold.last, "t50", Action.SUCCESS))
            cold.close()
            warm = SQLiteRunLog(d / "log.db")
            out[f"warm_us_{size}"] = time_per_call_us(partial(warm.last, "t50", Action.SUCCESS))
            warm.close()
    out["note"] = "runlog.last(task, SUCCESS), cache off (indexed SQLite read)"
    return out


def memory(p: Params) -> Result:
    done = Starts()
    total = int(p["runs"])
    with _tmpdir() as d:
        app = _app(d / "log.db")
        for i in range(10):
            _task(app, "true", f"t{i}", done.end)  # `true` reruns at every chance
        before = rss_mb()
        app.start()
        ok = _wait_until(lambda: done.ends >= total, p.get("timeout", 300), 0.02)
        app.shut_down()
        after = rss_mb()
    if not ok:
        return {"na": f"only {done.ends} of {total} runs in {p.get('timeout', 300)} s"}
    return {
        "rss_mb": after,
        "delta_mb": after - before,
        "runs": done.ends,
        "note": "SQLite log (file)",
    }


def foreground(p: Params) -> Result:
    with _tmpdir() as d:
        app = _app(d / "log.db")
        for i in range(p["tasks"]):
            _task(app, "hourly", f"t{i}", lambda: None)
        return foreground_extra(app.start, app.shut_down, p)


def _step_timer(session: Any) -> list[float]:
    """Time each scheduler step of ``session`` (its ``tick`` and the ``seconds_until_wake``
    that follows, as the runner calls them); returns the list the durations go to (s)."""
    steps: list[float] = []
    tick, wake = session.tick, session.seconds_until_wake
    took = [0.0]

    def timed_tick() -> Any:
        t0 = time.perf_counter()
        try:
            return tick()
        finally:
            took[0] = time.perf_counter() - t0

    def timed_wake(cap: float = 60.0) -> float:
        t0 = time.perf_counter()
        try:
            return float(wake(cap))
        finally:
            steps.append(took[0] + time.perf_counter() - t0)

    session.tick, session.seconds_until_wake = timed_tick, timed_wake
    return steps


def scale(p: Params) -> Result:
    """Step time and CPU with N idle tasks (``every 1 hour``, each ran a second ago) and
    one task due every ``tick`` seconds among them: a step should not grow with N."""
    from _harness import percentile

    out: Result = {}
    for size in p["sizes"]:
        with _tmpdir() as d:
            names = [f"t{i}" for i in range(int(size))]
            _fill_recent(d / "log.db", names)
            app = _app(d / "log.db")
            for name in names:
                _task(app, "every 1 hour", name, _nothing)
            _task(app, f"every {p['tick']} seconds", "ticker", _nothing)
            steps = _step_timer(app.session)
            app.start()
            # The first step looks at every task once; then let it settle.
            _wait_until(partial(_at_least, steps, 2), p.get("timeout", 300), 0.01)
            time.sleep(p["settle"])
            steps.clear()
            cpu = idle_cpu_pct(p["window"])
            taken = list(steps)
            app.shut_down()
        out[f"step_us_{size}"] = percentile(taken, 50) * 1e6
        out[f"step_p99_us_{size}"] = percentile(taken, 99) * 1e6
        out[f"cpu_pct_{size}"] = cpu
        out[f"steps_{size}"] = len(taken)
    return out


def _nothing() -> None:
    return None


def _at_least(items: list[float], n: int) -> bool:
    return len(items) >= n


def _fill_recent(path: Path, tasks: list[str]) -> None:
    """One finished run per task, started a second ago (bulk insert: fixture)."""
    from redengine_nb.runlog.sqlite import SQLiteRunLog

    SQLiteRunLog(path).close()  # creates the schema
    now = time.time()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executemany(
        'INSERT INTO runs (task_name, action, created, start, "end") VALUES (?, ?, ?, ?, ?)',
        [(name, "success", now - 1, now - 1, now - 0.9) for name in tasks],
    )
    conn.commit()
    conn.close()


def status(p: Params) -> Result:
    """``session.status()`` (one row per task, as the panel asks at each refresh) with a
    long history: the whole call, and its runs/fails counts alone."""
    names = [f"t{i}" for i in range(int(p["tasks"]))]
    with _tmpdir() as d:
        _fill(d / "log.db", names, int(p["records"]))
        app = _app(d / "log.db")
        for name in names:
            _task(app, "daily", name, _nothing)
        session = app.session
        log = session.runlog

        def counts() -> None:
            for name in names:
                log.count(name, Action.RUN)
                log.count(name, Action.FAIL)

        whole = time_per_call_us(session.status, min_time=1.0) / 1000
        per_task = time_per_call_us(counts, min_time=1.0) / len(names)
        log.close()
    return {
        "status_ms": whole,
        "counts_us": per_task,
        "note": "SQLite log (file); counts: runs and fails of one task",
    }


def _process_app(logs: Path, slots: int) -> Any:
    from redengine_nb import RedEngine

    return RedEngine(
        config={"task_execution": "process", "max_process_count": slots}, logs=str(logs)
    )


def proc_every(p: Params) -> Result:
    """``n`` process tasks ``every 1 second`` (max_process_count = n): runs held, the
    interval between a task's body starts, and runs of the least/most served task."""
    n, window, settle = int(p["n"]), float(p["window"]), float(p["settle"])
    with _tmpdir() as d:
        marks = str(d / "marks.txt")
        app = _process_app(d / "log.db", n)
        names = [f"t{i}" for i in range(n)]
        for name in names:
            app.task("every 1 second", func=partial(mark_start, marks, name), name=name)
        app.start()
        t0 = time.time() + settle  # after the template process started and the first round
        time.sleep(settle + window + 0.5)
        app.shut_down()
        out = every_process_summary(read_marks(marks), names, t0, t0 + window, 1.0)
    return out


def _lines(path: str) -> int:
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


def proc_burst(p: Params) -> Result:
    """``n`` process runs due at once (max_process_count = ``slots``), against the bare
    fork-per-run floor measured first in this same process."""
    n, slots = int(p["n"]), int(p["slots"])
    floor = fork_floor_runs_per_s(n, slots)
    timeout = p.get("timeout", 300)
    with _tmpdir() as d:
        marks = str(d / "marks.txt")
        app = _process_app(d / "log.db", slots)
        for i in range(n):
            app.task("daily", func=partial(mark_start, marks, f"t{i}"), name=f"t{i}")
        t0 = time.time()
        app.start()
        ok = _wait_until(lambda: _lines(marks) >= n, timeout, 0.02)
        ok = ok and app.session.wait_idle(timeout)
        t1 = time.time()
        app.shut_down()
    if not ok:
        return {"na": f"not all {n} runs ended in {timeout} s"}
    rate = n / (t1 - t0)
    return {
        "runs_per_s": rate,
        "floor_runs_per_s": floor,
        "of_floor_pct": 100.0 * rate / floor,
        "note": "each run in a fresh process forked from a warm template process; floor: bare "
        "os.fork() per run from the measuring process, same concurrency",
    }


SCENARIOS: dict[str, Callable[[Params], Result]] = {
    "proc-every": proc_every,
    "proc-burst": proc_burst,
    "idle": idle,
    "lag": lag,
    "burst": burst,
    "condition": condition,
    "history": history,
    "memory": memory,
    "foreground": foreground,
    "scale": scale,
    "status": status,
}
