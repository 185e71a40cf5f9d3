"""Measurement helpers shared by every library's scenarios (stdlib only, psutil if present).

This module is imported both by the project's interpreter and by the Rocketry virtual
environment's (``benchmarks/.rocketry-venv``), so it must not import ``redengine_nb``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "Starts",
    "busy_unit",
    "every_process_summary",
    "foreground_p99_ms",
    "fork_floor_runs_per_s",
    "grid_summary",
    "lag_summary",
    "mark_start",
    "percentile",
    "read_marks",
    "rss_mb",
    "time_per_call_us",
    "wait_until",
]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by the nearest-rank method; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:  # pragma: no cover - psutil is in the bench extra
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    """Poll ``pred`` until true or ``timeout`` seconds passed (benchmark plumbing only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Starts:
    """Thread-safe per-task list of (start, due) pairs recorded inside the task body."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_task: dict[str, list[tuple[float, float | None]]] = {}
        self.count = 0
        self.ends = 0
        self.last_end = 0.0

    def add(self, name: str, start: float, due: float | None = None) -> None:
        with self.lock:
            self.by_task.setdefault(name, []).append((start, due))
            self.count += 1

    def recorder(self, name: str) -> Callable[[], None]:
        """A task body that records its own start time under ``name``."""

        def body() -> None:
            self.add(name, time.time())

        return body

    def end(self) -> None:
        now = time.time()
        with self.lock:
            self.ends += 1
            if now > self.last_end:
                self.last_end = now


def lag_summary(lags: Sequence[float], expected: int, actual: int) -> dict[str, Any]:
    """p50/p99/max of start − due in milliseconds, and missed runs (expected − actual)."""
    return {
        "p50_ms": percentile(lags, 50) * 1000,
        "p99_ms": percentile(lags, 99) * 1000,
        "max_ms": max(lags) * 1000 if lags else math.nan,
        "missed": max(0, expected - actual),
        "runs": actual,
    }


def grid_summary(
    starts: dict[str, list[tuple[float, float | None]]],
    first: float | dict[str, float],
    period: float,
    window: float,
) -> dict[str, float]:
    """Lag against the wall-clock grid: each task's k-th run is due at its first due
    instant + k periods, whatever rule the library uses (a skipped run makes the later
    ones a period late each). ``grid_p50_ms``, ``grid_p99_ms``, ``grid_max_ms``."""
    lags: list[float] = []
    for name, runs in starts.items():
        f0 = first[name] if isinstance(first, dict) else first
        for k, (start, _) in enumerate(sorted(runs)):
            due = f0 + k * period
            if due >= f0 + window:
                break
            lags.append(start - due)
    return {
        "grid_p50_ms": percentile(lags, 50) * 1000,
        "grid_p99_ms": percentile(lags, 99) * 1000,
        "grid_max_ms": max(lags) * 1000 if lags else math.nan,
    }


def every_lags(
    starts: dict[str, list[tuple[float, float | None]]],
    first_due: float,
    period: float,
    window: float,
) -> tuple[list[float], int, int]:
    """Lags for an "every ``period``" rule: the first run is due at ``first_due``, each later
    run ``period`` after the previous *start*. Counts runs due within the window."""
    lags: list[float] = []
    actual = 0
    for runs in starts.values():
        due = first_due
        for start, _ in sorted(runs):
            if due >= first_due + window:
                break
            lags.append(start - due)
            actual += 1
            due = start + period
    expected = len(starts) * round(window / period)
    return lags, expected, actual


def busy_unit(ms: float = 1.0) -> None:
    """About ``ms`` milliseconds of pure-Python work (a calibrated loop, no sleeping)."""
    n = _calibrated(ms)
    x = 0
    for i in range(n):
        x += i * i
    del x


_CAL: dict[float, int] = {}


def _calibrated(ms: float) -> int:
    if ms not in _CAL:
        n = 10_000
        while True:
            t0 = time.perf_counter()
            x = 0
            for i in range(n):
                x += i * i
            dt = time.perf_counter() - t0
            if dt > 0.02:
                break
            n *= 2
        _CAL[ms] = max(1, int(n * (ms / 1000) / dt))
    return _CAL[ms]


def foreground_p99_ms(iterations: int, unit_ms: float = 1.0) -> float:
    """p99 of one unit's wall time (ms) in a loop on the calling thread."""
    busy_unit(unit_ms)  # calibrate and warm
    times: list[float] = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        busy_unit(unit_ms)
        times.append(time.perf_counter() - t0)
    return percentile(times, 99) * 1000


def time_per_call_us(fn: Callable[[], object], min_time: float = 0.3, repeat: int = 3) -> float:
    """Best-of-``repeat`` mean µs per call of ``fn`` (each round at least ``min_time`` s)."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time / 4 or n >= 1 << 24:
            break
        n *= 4
    n = max(1, int(n * (min_time / max(dt, 1e-9))))
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def idle_cpu_pct(window: float) -> float:
    """Process CPU time over ``window`` seconds of wall time, as % of one core."""
    c0, w0 = time.process_time(), time.monotonic()
    time.sleep(window)
    c1, w1 = time.process_time(), time.monotonic()
    return (c1 - c0) / (w1 - w0) * 100


# ----------------------------------------------------------------- process-run scenarios
def mark_start(path: str, name: str) -> None:
    """A process run's body: append "<name> <time>" to ``path`` (one small O_APPEND write,
    which the kernel does not interleave with another's)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{name} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


def read_marks(path: str) -> dict[str, list[float]]:
    """What :func:`mark_start` wrote: each name's body start times, in order."""
    out: dict[str, list[float]] = {}
    try:
        with open(path) as fh:
            for line in fh:
                name, _, at = line.strip().partition(" ")
                if at:
                    out.setdefault(name, []).append(float(at))
    except FileNotFoundError:
        pass
    return {k: sorted(v) for k, v in out.items()}


def every_process_summary(
    marks: dict[str, list[float]], names: Sequence[str], t0: float, t1: float, period: float
) -> dict[str, Any]:
    """Runs held (body starts in [t0, t1) / what ``period`` asks of each task), the
    intervals between a task's consecutive starts, and the spread of runs across tasks."""
    counts = [sum(1 for t in marks.get(n, []) if t0 <= t < t1) for n in names]
    asked = len(names) * (t1 - t0) / period
    intervals = [
        b - a
        for n in names
        for a, b in zip(marks.get(n, []), marks.get(n, [])[1:], strict=False)
        if t0 <= a and b < t1
    ]
    return {
        "held_pct": 100.0 * sum(counts) / asked if asked else math.nan,
        "interval_p50_s": percentile(intervals, 50),
        "interval_p99_s": percentile(intervals, 99),
        "interval_max_s": max(intervals) if intervals else math.nan,
        "fairness": (min(counts) / max(counts)) if counts and max(counts) else math.nan,
    }


def fork_floor_runs_per_s(n: int, concurrency: int) -> float:
    """The bare fork-per-run floor: ``n`` children forked from this process, at most
    ``concurrency`` alive at once, each exiting at once, each reaped."""
    alive = 0
    t0 = time.perf_counter()
    for _ in range(n):
        if alive >= concurrency:
            os.wait()
            alive -= 1
        if os.fork() == 0:
            os._exit(0)
        alive += 1
    while alive:
        os.wait()
        alive -= 1
    return n / (time.perf_counter() - t0)
