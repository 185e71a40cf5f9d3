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
_CHILD_FILE = "child"


def workdir_prefix() -> str:
    """``redengine-run-<pid>-<start>-``: whose run folder it is, for :func:`sweep_orphans`."""
    token = current_owner().rsplit(":", 2)
    return f"{_WORKDIR_PREFIX}{token[1]}-{token[2]}-"


def note_child(workdir: str, pid: int | None) -> None:
    """Record the child's pid and start time in its folder (best effort)."""
    if pid is None:
        return
    token = start_token(pid) or "-"
    try:
        with open(os.path.join(workdir, _CHILD_FILE), "w") as fh:
            fh.write(f"{pid} {token}\n")
    except OSError:
        pass


def sweep_orphans(folder: str | None = None) -> list[int]:
    """Deal with what dead schedulers of this host left: in each run folder whose
    scheduler (named in the folder's name) is gone, kill the child if it is still alive
    (same pid *and* start time), then remove the folder. Returns the pids killed. Old
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
        try:
            with open(os.path.join(path, _CHILD_FILE)) as fh:
                pid_text, token = fh.read().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            pid, token = 0, "-"
        if pid > 0 and token != "-" and start_token(pid) == token:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
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
