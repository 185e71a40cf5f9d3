"""Reaping the children a thread run forked and left behind (issue 12, item 9).

A task on a worker thread that calls ``os.fork()`` (directly, or through a library) and
never waits leaves a zombie for every such child: an entry in the process table that only
a ``wait`` of this process removes. :func:`reap_after_run` runs on the worker after each
of its runs:

1. one ``waitid(P_ALL, WNOHANG | WNOWAIT)`` asks, without reaping anything, whether any
   child of this process has ended and not been waited for (about 2 µs; the usual answer
   is no, and that is all it costs);
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

__all__ = ["reap_after_run"]

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


def reap_after_run() -> list[int]:
    """Reap the zombies this worker thread's run forked and nobody will wait for; returns
    their pids (see the module docstring)."""
    if not _LINUX:
        return []
    try:
        info = os.waitid(os.P_ALL, 0, _PEEK)
    except ChildProcessError:
        return []  # no children at all
    except OSError:
        return []
    if info is None:
        return []  # no child has ended: the usual case
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/children") as fh:
            mine = [int(p) for p in fh.read().split()]
    except (OSError, ValueError):
        return []
    candidates = [pid for pid in mine if _zombie(pid)]
    if not candidates:
        return []
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
    return reaped
