"""What a dead scheduler of this host left behind: its process runs' children and temp
folders (see :mod:`redengine_nb.executors.process`, "Children die with their scheduler").

Kept apart from ``process.py`` so that the session can sweep at every start without
importing multiprocessing and cloudpickle.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time

from ..runlog.owner import current_owner, owner_alive, start_token

__all__ = ["note_child", "sweep_orphans", "workdir_prefix"]

log = logging.getLogger("redengine_nb.executors.process")


_WORKDIR_PREFIX = "redengine-run-"
_CHILD_FILE = "child"  # a folder's one child (older layout), or "<n>.child" per run
_CHILD_SUFFIX = ".child"
#: The template process's list (``"<pid> <start>"`` a line: itself, then each child).
_CHILDREN_FILE = "children"


def workdir_prefix() -> str:
    """``redengine-run-<pid>-<start>-``: whose run folder it is, for :func:`sweep_orphans`."""
    token = current_owner().rsplit(":", 2)
    return f"{_WORKDIR_PREFIX}{token[1]}-{token[2]}-"


def note_child(prefix: str, pid: int | None) -> None:
    """Record a run's child pid and start time in ``<prefix>.child`` (best effort): the
    run's files are ``<folder>/<n>.*``, in its executor's folder."""
    if pid is None:
        return
    token = start_token(pid) or "-"
    try:
        with open(prefix + _CHILD_SUFFIX, "w") as fh:
            fh.write(f"{pid} {token}\n")
    except OSError:
        pass


def _children_of(path: str) -> list[tuple[int, str]]:
    """The (pid, start token) of each child recorded in a run folder."""
    try:
        names = [
            n
            for n in os.listdir(path)
            if n in (_CHILD_FILE, _CHILDREN_FILE) or n.endswith(_CHILD_SUFFIX)
        ]
    except OSError:
        return []
    found: list[tuple[int, str]] = []
    for name in names:
        try:
            with open(os.path.join(path, name)) as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                pid_text, token = line.split()
                found.append((int(pid_text), token))
            except ValueError:  # a line cut short by the death of its writer
                continue
    return found


def sweep_orphans(folder: str | None = None) -> list[int]:
    """Deal with what dead schedulers of this host left: in each run folder whose
    scheduler (named in the folder's name) is gone, kill each child recorded there that
    is still alive (same pid *and* start time), then remove the folder. Returns the pids killed. Old
    folders named ``redengine-run-XXXX`` (no scheduler in the name) are left alone."""
    import socket

    folder = folder or tempfile.gettempdir()
    host = socket.gethostname()
    killed: list[int] = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(_WORKDIR_PREFIX)]
    except OSError:
        return killed
    for name in names:
        parts = name[len(_WORKDIR_PREFIX) :].split("-")
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        if owner_alive(f"{host}:{parts[0]}:{parts[1]}"):
            continue
        path = os.path.join(folder, name)
        for pid, token in _children_of(path):
            if pid > 0 and token != "-" and start_token(pid) == token:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except OSError:
                    continue
                deadline = time.monotonic() + 5.0
                while start_token(pid) == token and time.monotonic() < deadline:
                    time.sleep(0.01)  # a killed process is gone within milliseconds
        shutil.rmtree(path, ignore_errors=True)
    if killed:
        log.warning(
            "killed %d task process(es) left alive by a scheduler that died: %s",
            len(killed),
            ", ".join(map(str, killed)),
        )
    return killed
