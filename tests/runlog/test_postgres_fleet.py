"""Three scheduler processes on one PostgreSQL run log; one is killed with SIGKILL mid-run.

Each process runs the shared-log protocol as a scheduler does: a lease renewed on a
heartbeat (reaping expired ones), a refresh, the real conditions evaluated against the
store, the due tasks claimed with ``claim_starts`` (the condition re-checked inside the
claim), their runs ended when done. Time is accelerated (one wall second is one minute
of the schedulers' clock, shared by all through the wall clock), so a short run covers
half an hour of schedule.

After the run: every due run happened exactly once (no two starts of an ``every`` task
closer than its period, no two runs of a ``minutely`` task in one minute, no two runs of
an ``after task`` reader for one run of what it reads), none was lost (no gap longer
than the period plus the lease time), and the killed scheduler's open runs are ``crash``
-- ended once its lease had expired -- with its lease gone.

This drives the store through the protocol directly; the session's own wiring of claims
(REL's part) is tested apart.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from pg_server import wait_until

from redengine_nb.records import Action
from redengine_nb.runlog.postgres import PostgresRunLog

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SPEED = 60.0  # scheduler seconds per wall second
TTL = 180.0  # lease time, scheduler seconds (3 wall seconds)
RUNTIME = 20.0  # each run lasts this long, scheduler seconds
T0 = 1_700_000_000.0  # the schedulers' clock at wall time W0

EVERY = {f"every{i:02d}": (1 + i % 4) * 60 for i in range(24)}  # 1..4 minutes
MINUTELY = [f"minutely{i:02d}" for i in range(14)]
AFTER = {f"after{i:02d}": f"every{i:02d}" for i in range(12)}  # reads an 'every' task


def conditions() -> dict[str, str]:
    out = {name: f"every {period // 60} minutes" for name, period in EVERY.items()}
    out.update({name: "minutely" for name in MINUTELY})
    out.update({name: f"after task '{parent}'" for name, parent in AFTER.items()})
    return out


SCHEDULER = r"""
import json, os, socket, sys, time
from datetime import datetime
from zoneinfo import ZoneInfo
from redengine_nb.conditions import parse
from redengine_nb.conditions.base import Context
from redengine_nb.records import Action
from redengine_nb.runlog.postgres import PostgresRunLog

url, t0, speed, ttl, runtime, until = sys.argv[1:7]
t0, speed, ttl, runtime, until = map(float, (t0, speed, ttl, runtime, until))
conds = {name: parse(text) for name, text in json.loads(sys.stdin.readline()).items()}
tz = ZoneInfo("UTC")
FINAL = (Action.SUCCESS, Action.FAIL, Action.TERMINATE, Action.INACTION, Action.CRASH)

def now():
    return t0 + (time.time() - w0) * speed

log = PostgresRunLog(url)
print("ready", flush=True)
w0 = float(sys.stdin.readline())  # the same wall instant for all: their clocks agree
time.sleep(max(0.0, w0 - time.time()))
lease = log.acquire_lease(now=now(), ttl=ttl, host=socket.gethostname(), pid=os.getpid())
print(lease, flush=True)
mine = {}  # run_id -> (task, end at)
beat = 0.0

def running(name):
    started = log.last(name, Action.RUN)
    if started is None:
        return False
    ended = log.last_of(name, FINAL)
    return ended is None or ended < started

def due(names, t):
    at = datetime.fromtimestamp(t, tz)
    return [n for n in names if not running(n) and conds[n].is_met(Context(at, log, n, running))]

while now() < until:
    t = now()
    if t - beat >= ttl / 6:
        if not log.renew_lease(lease, now=t, ttl=ttl):
            sys.exit("lease lost")
        log.reap_expired(now=t)
        beat = t
    log.refresh()
    # each run ends at its own end time (before this step's starts)
    ends = [(task, rid, Action.SUCCESS, at, None, None)
            for rid, (task, at) in mine.items() if at <= t]
    if ends:
        log.end_runs(ends)
        for _task, rid, *_ in ends:
            del mine[rid]
    names = due(sorted(conds), t)
    if names:
        # The claim and its re-check at the clock's time now, not the step's start: the
        # history may hold runs that other schedulers started after that (a condition
        # read at an instant older than the history can be true again).
        t = now()
        for rec in log.claim_starts(
            names, created=t, start=t, owner=lease, recheck=lambda ns, t=t: due(ns, t)
        ):
            mine[rec.run_id] = (rec.task_name, t + runtime)
    time.sleep(0.02)
# let our runs end, then leave cleanly
t = now()
log.end_runs([(task, rid, Action.SUCCESS, max(t, at), None, None)
              for rid, (task, at) in mine.items()])
log.release_lease(lease)
log.close()
print("done", flush=True)
"""


def test_three_schedulers_one_killed_every_due_run_once(pg_url: str) -> None:
    import json

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    wall = 24.0
    until = T0 + wall * SPEED
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCHEDULER, pg_url]
            + [str(x) for x in (T0, SPEED, TTL, RUNTIME, until)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    watch = PostgresRunLog(pg_url, listen=False)
    try:
        text = json.dumps(conditions())
        for p in procs:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write(text + "\n")
            p.stdin.flush()
        for p in procs:  # imported, connected
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        w0 = time.time() + 0.5  # all start their clocks together
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{w0!r}\n")
            p.stdin.close()
        leases = []
        for p in procs:
            assert p.stdout is not None
            leases.append(p.stdout.readline().strip())
        assert all(leases), [p.stderr.read() if p.stderr else "" for p in procs]
        victim, victim_lease = procs[0], leases[0]

        # kill it a third of the way in, while it owns open runs
        def victim_busy() -> bool:
            watch.refresh()
            late = time.time() > w0 + wall / 3
            return late and any(r.owner == victim_lease for r in watch.open_runs())

        assert wait_until(victim_busy, timeout=wall)
        victim.send_signal(signal.SIGKILL)
        killed_at = T0 + (time.time() - w0) * SPEED
        victim.wait(30)
        for p in procs[1:]:
            assert p.stdout is not None and p.stderr is not None
            out, err = p.stdout.read(), p.stderr.read()  # till it exits
            assert p.wait(60) == 0, err
            assert out.strip().endswith("done")
        watch.refresh()
        records = watch.records()
        remaining = watch.leases(now=until + 10 * TTL)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        watch.close()

    starts: dict[str, list[float]] = defaultdict(list)
    for r in records:
        assert r.owner in leases
        assert r.start is not None
        starts[r.task_name].append(r.start)
    for s in starts.values():
        s.sort()
    # the killed scheduler's runs: crash, ended after its lease expired; its lease gone
    crashed = [r for r in records if r.action is Action.CRASH]
    assert crashed and {r.owner for r in crashed} == {victim_lease}
    assert all(r.end is not None and r.end >= killed_at - TTL / 6 for r in crashed)
    assert victim_lease not in {x.lease_id for x in remaining}
    assert [r for r in records if r.action is Action.RUN] == []  # nothing left open
    assert {r.owner for r in records} == set(leases)  # all three took part

    # exactly once: every-tasks never closer than their period, never much further apart
    start_of_run = T0
    for name, period in EVERY.items():
        s = starts[name]
        assert s and s[0] - start_of_run <= 120, name  # started at once (2 wall s)
        gaps = [b - a for a, b in itertools.pairwise(s)]
        assert all(g >= period - 1e-6 for g in gaps), (name, gaps)
        assert all(g <= period + TTL + RUNTIME + 60 for g in gaps), (name, gaps)
    # minutely: at most one run that finished per clock minute, none missed for long
    for name in MINUTELY:
        per_minute: dict[int, int] = defaultdict(int)
        for r in records:
            if r.task_name == name and r.action is Action.SUCCESS:
                assert r.start is not None
                per_minute[int(r.start // 60)] += 1
        twice = [m for m, n in per_minute.items() if n > 1]
        assert per_minute and not twice, [
            (r.start, r.end, r.action.value, leases.index(r.owner or ""))
            for r in records
            if r.task_name == name and r.start and int(r.start // 60) in twice
        ]
        assert len(per_minute) >= wall - 3 - TTL / 60 - 2, (name, len(per_minute))
    # after task: one reader run per run of what it reads (counted between parent ends)
    for child, parent in AFTER.items():
        ends = sorted(
            r.end
            for r in records
            if r.task_name == parent and r.action is Action.SUCCESS and r.end is not None
        )
        kid = starts[child]
        for a, b in itertools.pairwise(ends):
            assert sum(1 for s in kid if a <= s < b) <= 1, (child, a, b, kid)
        assert len(kid) >= len(ends) - 2, (child, len(kid), len(ends))
