"""One benchmark cell in a fresh process: ``python benchmarks/_peers.py LIB SCENARIO PARAMS``.

LIB is ``ours`` (redengine_nb, scenarios in ``_ours.py``), ``apscheduler``, ``schedule`` or
``rocketry``; SCENARIO one of ``idle lag burst condition history memory foreground
proc-every proc-burst``; PARAMS a JSON object. The last line printed is a JSON object of
figures, or ``{"na": reason}`` where the scenario does not fit the library.

compare.py runs every cell in its own process so that one library's threads, caches and
memory never colour another's figures. Rocketry runs under the interpreter of
``benchmarks/.rocketry-venv`` (it needs ``pydantic<2``), so this file and ``_harness.py``
import nothing from redengine_nb at module level.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Starts,
    every_lags,
    every_process_summary,
    foreground_p99_ms,
    fork_floor_runs_per_s,
    grid_summary,
    idle_cpu_pct,
    lag_summary,
    read_marks,
    rss_mb,
    time_per_call_us,
    wait_until,
)

Result = dict[str, Any]
Params = dict[str, Any]


def foreground_extra(start: Callable[[], None], stop: Callable[[], None], p: Params) -> Result:
    """p99 of a 1 ms unit of main-thread work with the scheduler idling, minus without."""
    n = int(p["iterations"])
    base1 = foreground_p99_ms(n)
    start()
    time.sleep(p.get("settle", 1.0))
    loaded = foreground_p99_ms(n)
    stop()
    base2 = foreground_p99_ms(n)
    base = (base1 + base2) / 2
    # The same loop twice without the scheduler differs by this much: an extra p99 no
    # larger than that is not told apart from nothing (compare.py says "level" then).
    noise = abs(base1 - base2)
    return {
        "extra_p99_ms": loaded - base,
        "base_p99_ms": base,
        "p99_ms": loaded,
        "noise_ms": noise,
    }


# --------------------------------------------------------------------------- APScheduler
def _aps_scheduler(workers: int = 10, **job_defaults: Any) -> Any:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    return BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(workers)}, job_defaults=job_defaults
    )


def aps_idle(p: Params) -> Result:
    sched = _aps_scheduler()
    for i in range(p["tasks"]):
        sched.add_job(lambda: None, "interval", hours=1, id=f"t{i}")
    sched.start()
    time.sleep(p["settle"])
    cpu = idle_cpu_pct(p["window"])
    sched.shutdown()
    return {"cpu_pct": cpu}


def aps_lag(p: Params) -> Result:
    starts = Starts()
    sched = _aps_scheduler()
    for i in range(p["n"]):
        name = f"t{i}"
        sched.add_job(starts.recorder(name), "interval", seconds=1, id=name)
    sched.start()
    first = {job.id: job.next_run_time.timestamp() for job in sched.get_jobs()}
    window = float(p["window"])
    time.sleep(max(first.values()) + window + 1.5 - time.time())
    sched.shutdown(wait=True)
    # The interval trigger fires on a fixed grid: first, first + 1 s, ...
    lags: list[float] = []
    actual = 0
    for name, runs in starts.by_task.items():
        f0 = first[name]
        for start, _ in runs:
            k = math.floor(start - f0 + 1e-3)
            due = f0 + k
            if due < f0 + window:
                lags.append(start - due)
                actual += 1
    out = lag_summary(lags, p["n"] * round(window), actual)
    return {**out, **grid_summary(starts.by_task, first, 1.0, window)}


def aps_burst(p: Params) -> Result:
    starts = Starts()
    sched = _aps_scheduler(misfire_grace_time=None)
    n = p["n"]
    for i in range(n):
        sched.add_job(starts.end, id=f"t{i}")  # no trigger: run once, now
    t0 = time.time()
    sched.start()
    wait_until(lambda: starts.ends >= n, p.get("timeout", 300))
    sched.shutdown()
    return {"runs_per_s": n / (starts.last_end - t0)}


def _aps_process_scheduler(workers: int, **job_defaults: Any) -> Any:
    from apscheduler.executors.pool import ProcessPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    return BackgroundScheduler(
        executors={"default": ProcessPoolExecutor(workers)}, job_defaults=job_defaults
    )


def aps_proc_every(p: Params) -> Result:
    import tempfile

    n, window, settle = int(p["n"]), float(p["window"]), float(p["settle"])
    with tempfile.TemporaryDirectory(prefix="renb-bench-") as d:
        marks = str(Path(d) / "marks.txt")
        sched = _aps_process_scheduler(n)
        names = [f"t{i}" for i in range(n)]
        for name in names:
            # a textual reference: APScheduler pickles the job itself for its pool
            sched.add_job("_harness:mark_start", "interval", args=[marks, name], seconds=1, id=name)
        sched.start()
        t0 = time.time() + settle
        time.sleep(settle + window + 0.5)
        sched.shutdown(wait=True)
        return every_process_summary(read_marks(marks), names, t0, t0 + window, 1.0)


def aps_proc_burst(p: Params) -> Result:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED

    n, slots = int(p["n"]), int(p["slots"])
    floor = fork_floor_runs_per_s(n, slots)
    done = [0]
    lock = threading.Lock()

    def count(event: Any) -> None:
        with lock:
            done[0] += 1

    sched = _aps_process_scheduler(slots, misfire_grace_time=None)
    sched.add_listener(count, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    for i in range(n):
        sched.add_job(_nothing, id=f"t{i}")  # no trigger: run once, now
    t0 = time.time()
    sched.start()
    ok = wait_until(lambda: done[0] >= n, p.get("timeout", 300))
    t1 = time.time()
    sched.shutdown()
    if not ok:
        return {"na": f"only {done[0]} of {n} runs in {p.get('timeout', 300)} s"}
    rate = n / (t1 - t0)
    return {
        "runs_per_s": rate,
        "floor_runs_per_s": floor,
        "of_floor_pct": 100.0 * rate / floor,
        "note": f"a pool of {slots} worker processes, reused: runs are not isolated",
    }


def aps_condition(p: Params) -> Result:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    tz = ZoneInfo("UTC")
    now = datetime(2024, 3, 10, 9, 0, tzinfo=tz)
    prev = now - timedelta(minutes=3)
    every = IntervalTrigger(minutes=10, start_date=now - timedelta(days=1), timezone=tz)
    daily = CronTrigger(hour=0, timezone=tz)
    parts = [
        IntervalTrigger(minutes=10 + i, start_date=now - timedelta(days=1), timezone=tz)
        if i % 2
        else CronTrigger(hour=i, timezone=tz)
        for i in range(8)
    ]
    compound = OrTrigger(parts)
    cron = CronTrigger.from_crontab("*/15 * * * *", timezone=tz)
    nows = [now + timedelta(seconds=61 * i) for i in range(4096)]
    turn = iter(range(1 << 62))
    return {
        "cron_us": time_per_call_us(lambda: cron.get_next_fire_time(None, nows[next(turn) & 4095])),
        "every_us": time_per_call_us(lambda: every.get_next_fire_time(prev, now)),
        "daily_us": time_per_call_us(lambda: daily.get_next_fire_time(prev, now)),
        "after_us": None,
        "compound_us": time_per_call_us(lambda: compound.get_next_fire_time(prev, now)),
        "note": "trigger next-fire time; no run history consulted",
    }


def _reached(done: Starts, n: int) -> bool:
    return done.ends >= n


def aps_memory(p: Params) -> Result:
    done = Starts()
    sched = _aps_scheduler(misfire_grace_time=None)
    sched.start()
    before = rss_mb()
    batch, total = 1000, int(p["runs"])
    issued = 0
    while issued < total:
        k = min(batch, total - issued)
        for _ in range(k):
            sched.add_job(done.end)
        issued += k
        wait_until(partial(_reached, done, issued), 120)
    after = rss_mb()
    sched.shutdown()
    return {"rss_mb": after, "delta_mb": after - before, "runs": done.ends}


def aps_foreground(p: Params) -> Result:
    sched = _aps_scheduler()
    for i in range(p["tasks"]):
        sched.add_job(lambda: None, "interval", hours=1, id=f"t{i}")
    return foreground_extra(sched.start, sched.shutdown, p)


def aps_scale(p: Params) -> Result:
    """N interval jobs every hour and one every ``tick`` seconds: the scheduler's wake-up
    (``_process_jobs``, which also returns how long to sleep) and the process's CPU."""
    from _harness import percentile

    out: Result = {}
    for size in p["sizes"]:
        sched = _aps_scheduler()
        for i in range(int(size)):
            sched.add_job(_nothing, "interval", hours=1, id=f"t{i}")
        sched.add_job(_nothing, "interval", seconds=p["tick"], id="ticker")
        steps: list[float] = []
        process = sched._process_jobs

        def timed(process: Any = process, steps: list[float] = steps) -> Any:
            t0 = time.perf_counter()
            try:
                return process()
            finally:
                steps.append(time.perf_counter() - t0)

        sched._process_jobs = timed
        sched.start()
        wait_until(lambda steps=steps: len(steps) >= 2, p.get("timeout", 300), 0.01)
        time.sleep(p["settle"])
        steps.clear()
        cpu = idle_cpu_pct(p["window"])
        taken = list(steps)
        sched.shutdown()
        out[f"step_us_{size}"] = percentile(taken, 50) * 1e6
        out[f"step_p99_us_{size}"] = percentile(taken, 99) * 1e6
        out[f"cpu_pct_{size}"] = cpu
        out[f"steps_{size}"] = len(taken)
    return out


def _nothing() -> None:
    return None


# --------------------------------------------------------------------------- schedule
class _ScheduleLoop:
    """``schedule`` has no thread of its own: the documented loop, sleeping exactly until
    the next job is due (``idle_seconds``) rather than a fixed second, capped at 1 s."""

    def __init__(self, sched: Any) -> None:
        self.sched = sched
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            self.sched.run_pending()
            idle = self.sched.idle_seconds
            self.stop_event.wait(1.0 if idle is None else min(max(idle, 0.0), 1.0))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join()


def sch_idle(p: Params) -> Result:
    import schedule

    s = schedule.Scheduler()
    for _ in range(p["tasks"]):
        s.every().hour.do(lambda: None)
    loop = _ScheduleLoop(s)
    loop.start()
    time.sleep(p["settle"])
    cpu = idle_cpu_pct(p["window"])
    loop.stop()
    return {"cpu_pct": cpu}


def sch_lag(p: Params) -> Result:
    import schedule

    starts = Starts()
    s = schedule.Scheduler()

    def body(name: str, holder: list[Any]) -> None:
        # The job's next_run is still the instant that made it due (it is moved after).
        starts.add(name, time.time(), holder[0].next_run.timestamp())

    for i in range(p["n"]):
        holder: list[Any] = []
        job = s.every(1).seconds.do(body, f"t{i}", holder)
        holder.append(job)
    firsts = {f"t{i}": j.next_run.timestamp() for i, j in enumerate(s.jobs)}
    first = min(firsts.values())
    window = float(p["window"])
    loop = _ScheduleLoop(s)
    loop.start()
    time.sleep(first + window + 1.5 - time.time())
    loop.stop()
    lags: list[float] = []
    actual = 0
    for runs in starts.by_task.values():
        for start, due in runs:
            assert due is not None
            if due < first + window:
                lags.append(start - due)
                actual += 1
    out = lag_summary(lags, p["n"] * round(window), actual)
    return {**out, **grid_summary(starts.by_task, firsts, 1.0, window)}


def sch_burst(p: Params) -> Result:
    import schedule

    starts = Starts()
    s = schedule.Scheduler()
    n = p["n"]
    for _ in range(n):
        s.every().day.do(starts.end)
    t0 = time.time()
    s.run_all()  # every job due at once, run in the calling thread (schedule's model)
    return {"runs_per_s": n / (starts.last_end - t0)}


def sch_condition(p: Params) -> Result:
    import schedule

    s = schedule.Scheduler()
    every = s.every(10).minutes.do(lambda: None)
    daily = s.every().day.do(lambda: None)
    return {
        "every_us": time_per_call_us(lambda: every.should_run),
        "daily_us": time_per_call_us(lambda: daily.should_run),
        "after_us": None,
        "compound_us": None,
        "note": "Job.should_run (a clock comparison); no history, no compounds",
    }


def sch_memory(p: Params) -> Result:
    import schedule

    done = Starts()
    s = schedule.Scheduler()
    for _ in range(10):
        s.every().second.do(done.end)
    before = rss_mb()
    for _ in range(int(p["runs"]) // 10):
        s.run_all()
    after = rss_mb()
    return {"rss_mb": after, "delta_mb": after - before, "runs": done.ends}


def sch_foreground(p: Params) -> Result:
    import schedule

    s = schedule.Scheduler()
    for _ in range(p["tasks"]):
        s.every().hour.do(lambda: None)
    loop = _ScheduleLoop(s)
    return foreground_extra(loop.start, loop.stop, p)


# --------------------------------------------------------------------------- Rocketry
def _rocketry(**config: Any) -> Any:
    import logging

    from rocketry import Rocketry

    logging.getLogger("rocketry").setLevel(logging.ERROR)
    config.setdefault("execution", "thread")
    return Rocketry(config=config)


class _RocketryThread:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.thread = threading.Thread(target=app.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.app.session.shut_down()
        self.thread.join(60)


def _rk_task(app: Any, cond: str, name: str, func: Callable[[], None]) -> None:
    app.session.create_task(func=func, name=name, start_cond=cond, execution="thread")


def rk_idle(p: Params) -> Result:
    app = _rocketry()
    for i in range(p["tasks"]):
        _rk_task(app, "hourly", f"t{i}", lambda: None)
    r = _RocketryThread(app)
    r.start()
    time.sleep(p["settle"])
    cpu = idle_cpu_pct(p["window"])
    r.stop()
    return {"cpu_pct": cpu}


def rk_lag(p: Params) -> Result:
    starts = Starts()
    app = _rocketry()
    for i in range(p["n"]):
        name = f"t{i}"
        _rk_task(app, "every 1 second", name, starts.recorder(name))
    r = _RocketryThread(app)
    window = float(p["window"])
    t0 = time.time()  # never run: "every 1 second" is due as soon as the scheduler starts
    r.start()
    time.sleep(t0 + window + 1.5 - time.time())
    r.stop()
    lags, expected, actual = every_lags(starts.by_task, t0, 1.0, window)
    return {**lag_summary(lags, expected, actual), **grid_summary(starts.by_task, t0, 1.0, window)}


def rk_burst(p: Params) -> Result:
    starts = Starts()
    app = _rocketry()
    n = p["n"]
    for i in range(n):
        _rk_task(app, "daily", f"t{i}", starts.end)
    r = _RocketryThread(app)
    t0 = time.time()
    r.start()
    ok = wait_until(lambda: starts.ends >= n, p.get("timeout", 300), 0.02)
    r.stop()
    if not ok:
        return {"na": f"only {starts.ends} of {n} runs in {p.get('timeout', 300)} s"}
    return {"runs_per_s": n / (starts.last_end - t0), "note": "in-memory log"}


def _rk_fill(app: Any, tasks: list[str], records: int) -> None:
    """Put ``records`` finished runs into Rocketry's log repository (its default, in memory)."""
    from rocketry.log.log_record import LogRecord

    repo = app.session.get_repo()
    now = time.time()
    common = dict(
        name="rocketry.task",
        msg="",
        levelname="INFO",
        levelno=20,
        pathname="",
        filename="",
        module="",
        exc_text=None,
        lineno=0,
        funcName="",
        msecs=0.0,
        relativeCreated=0.0,
        thread=0,
        threadName="",
        processName="",
        process=0,
        message="",
        formatted_message="",
    )
    objs = []
    for i in range(records):
        t = now - (records - i)
        action = "run" if i % 2 == 0 else "success"
        objs.append(
            LogRecord.construct(
                task_name=tasks[i // 2 % len(tasks)], action=action, created=t, **common
            )
        )
    repo.collection.extend(objs)


def rk_condition(p: Params) -> Result:
    import rocketry.conditions  # noqa: F401  (registers the phrases)
    from rocketry.parse import parse_condition

    app = _rocketry(force_status_from_logs=True)
    names = [f"t{i}" for i in range(100)] + ["x"]
    for n in names:
        _rk_task(app, "false", n, lambda: None)
    _rk_fill(app, names, int(p["history"]))
    task = app.session["t1"]
    session = app.session
    conds = {
        "every_us": parse_condition("every 10 minutes"),
        "daily_us": parse_condition("daily"),
        "after_us": parse_condition("after task 'x'"),
        "compound_us": parse_condition(
            "(every 10 minutes & time of day between 08:00 and 18:00) | "
            "(daily & after task 'x') | (hourly & ~(task 't2' has failed)) | "
            "(weekly & time of week between Mon and Fri)"
        ),
    }
    out: Result = {}
    for key, cond in conds.items():
        out[key] = time_per_call_us(
            partial(cond.observe, task=task, session=session), min_time=0.2, repeat=1
        )
    out["note"] = "default in-memory log repository"
    return out


def rk_history(p: Params) -> Result:
    out: Result = {}
    for size in p["sizes"]:
        if size > p.get("rocketry_max", 10**9):
            out[f"us_{size}"] = None
            continue
        app = _rocketry(force_status_from_logs=True)
        names = [f"t{i}" for i in range(100)]
        for n in names:
            _rk_task(app, "false", n, lambda: None)
        _rk_fill(app, names, size)
        task = app.session["t50"]
        out[f"us_{size}"] = time_per_call_us(task.get_last_success, min_time=0.2, repeat=1)
        app.session.get_repo().collection.clear()  # the next size gets a fresh app
    out["note"] = "task.get_last_success() with force_status_from_logs"
    return out


def rk_memory(p: Params) -> Result:
    done = Starts()
    app = _rocketry(cycle_sleep=0)
    for i in range(100):
        _rk_task(app, "true", f"t{i}", done.end)
    before = rss_mb()
    r = _RocketryThread(app)
    r.start()
    total = int(p["runs"])
    ok = wait_until(lambda: done.ends >= total, p.get("timeout", 300), 0.05)
    r.stop()
    after = rss_mb()
    if not ok:
        return {"na": f"only {done.ends} of {total} runs in {p.get('timeout', 300)} s"}
    return {"rss_mb": after, "delta_mb": after - before, "runs": done.ends, "note": "in-memory log"}


def rk_foreground(p: Params) -> Result:
    app = _rocketry()
    for i in range(p["tasks"]):
        _rk_task(app, "hourly", f"t{i}", lambda: None)
    r = _RocketryThread(app)
    return foreground_extra(r.start, r.stop, p)


def _na(reason: str) -> Callable[[Params], Result]:
    return lambda p: {"na": reason}


SCENARIOS: dict[str, dict[str, Callable[[Params], Result]]] = {
    "apscheduler": {
        "idle": aps_idle,
        "lag": aps_lag,
        "burst": aps_burst,
        "condition": aps_condition,
        "history": _na("keeps no run history"),
        "memory": aps_memory,
        "foreground": aps_foreground,
        "scale": aps_scale,
        "proc-every": aps_proc_every,
        "proc-burst": aps_proc_burst,
        "status": _na("keeps no run history"),
    },
    "schedule": {
        "idle": sch_idle,
        "lag": sch_lag,
        "burst": sch_burst,
        "condition": sch_condition,
        "history": _na("keeps no run history"),
        "memory": sch_memory,
        "foreground": sch_foreground,
        "scale": _na("no thread of its own: its loop's wake-up is the caller's"),
        "status": _na("keeps no run history"),
    },
    "rocketry": {
        "idle": rk_idle,
        "lag": rk_lag,
        "burst": rk_burst,
        "condition": rk_condition,
        "history": rk_history,
        "memory": rk_memory,
        "foreground": rk_foreground,
        "scale": _na("not measured: it polls every task each cycle (see lag-5000)"),
        "status": _na("not measured: a million pydantic records in memory"),
    },
}


def run_cell(lib: str, scenario: str, params: Params) -> Result:
    if lib == "ours":
        # Measure this checkout's engine, installed or not.
        sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
        import _ours

        return _ours.SCENARIOS[scenario](params)
    return SCENARIOS[lib][scenario](params)


def main(argv: list[str]) -> int:
    lib, scenario, raw = argv
    result = run_cell(lib, scenario, json.loads(raw))
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
