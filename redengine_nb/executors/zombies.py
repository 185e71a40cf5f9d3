"""Reaping the children a thread run forked and left behind (issue 12, item 9).

A task on a worker thread that calls ``os.fork()`` (directly, or through a library) and
never waits leaves a zombie for every such child: an entry in the process table that only
a ``wait`` of this process removes. :func:`reap_after_run` runs on the worker after each
of its runs:

0. it does nothing unless this process has forked with ``os.fork`` since the worker last
   found no child of its own (a counter bumped by an ``os.register_at_fork`` hook, read
   twice per run: the usual run pays nothing more). ``subprocess`` does not fork through
   ``os.fork``; its ``Popen`` objects wait for their own children;
1. one ``waitid(P_ALL, WNOHANG | WNOWAIT)`` asks, without reaping anything, whether any
   child of this process has ended and not been waited for;
2. if one has, the children *this worker thread* forked (Linux lists them per thread in
   ``/proc/self/task/<tid>/children``) that are zombies are candidates;
3. a candidate is reaped only if nobody else will wait for it: not the pid of a
   :class:`subprocess.Popen` that has not collected its status (its ``wait()`` would
   otherwise find nothing and report a made-up status) nor of a ``multiprocessing``
   child. Those are left to their owners.

Not done elsewhere than Linux, and not for a child that ends after its worker has gone
idle: it is reaped after that worker's next run (or never, if the worker ends first).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading

__all__ = ["ForkWatch", "reap_after_run"]

_LINUX = sys.platform.startswith("linux")
_PEEK = getattr(os, "WEXITED", 0) | getattr(os, "WNOHANG", 0) | getattr(os, "WNOWAIT", 0)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return False
    close = raw.rfind(b")")
    return raw[close + 2 : close + 3] == b"Z"


def _waited_for_by_others() -> set[int]:
    """Pids some Popen or multiprocessing object still means to wait for."""
    owned: set[int] = set()
    for obj in gc.get_objects():
        if isinstance(obj, subprocess.Popen) and obj.returncode is None:
            owned.add(obj.pid)
    try:
        import multiprocessing.process as mp_process

        for popen in list(getattr(mp_process, "_children", ())):
            pid = getattr(popen, "pid", None)
            if isinstance(pid, int):
                owned.add(pid)
    except ImportError:  # pragma: no cover
        pass
    return owned


_forks = [0]  # os.fork() calls of this process so far (in the parent)


def _count_fork() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_parent=_count_fork)


class ForkWatch:
    """Per worker thread: whether a run may have left a child of this thread to reap."""

    __slots__ = ("pending", "seen")

    def __init__(self) -> None:
        self.seen = _forks[0]
        self.pending = False

    def after_run(self) -> list[int]:
        """Reap what the run(s) on this worker left, if it forked at all."""
        forks = _forks[0]
        if forks == self.seen and not self.pending:
            return []  # no os.fork since this worker last looked: nothing of ours to reap
        self.seen = forks
        reaped, left = _reap()
        self.pending = left
        return reaped


def reap_after_run() -> list[int]:
    """:func:`_reap` once (without the fork counter): the pids reaped."""
    return _reap()[0]


def _reap() -> tuple[list[int], bool]:
    """Reap the zombies this worker thread forked and nobody will wait for: their pids,
    and whether children of this thread are left (to look at again later)."""
    if not _LINUX:
        return [], False
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/children") as fh:
            mine = [int(p) for p in fh.read().split()]
    except (OSError, ValueError):
        return [], False
    if not mine:
        return [], False  # no child of this thread left: stop looking
    try:
        info = os.waitid(os.P_ALL, 0, _PEEK)
    except OSError:  # ChildProcessError: none at all
        return [], False
    if info is None:
        return [], True  # ours still run: look again after the next run
    candidates = [pid for pid in mine if _zombie(pid)]
    if not candidates:
        return [], True
    owned = _waited_for_by_others()
    reaped: list[int] = []
    for pid in candidates:
        if pid in owned:
            continue
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # someone else was quicker
        if done == pid:
            reaped.append(pid)
    return reaped, len(reaped) < len(mine)
