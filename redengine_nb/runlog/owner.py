"""Who owns a run: a token naming this process, and a check whether such a process lives.

An open run (``action='run'``) whose owner is gone was cut off; the session marks it
``crash`` at its next start. The owner token is ``"<host>:<pid>:<start>"``:

- ``host`` is :func:`socket.gethostname`;
- ``pid`` is the process id;
- ``start`` tells this process apart from a later one that reuses the pid. On Linux it is
  ``t<ticks>``, the process start time in clock ticks since boot (``/proc/<pid>/stat``
  field 22); elsewhere ``c<seconds>``, the creation time from :mod:`psutil` when it is
  installed; ``-`` when neither is available.

:func:`owner_alive` decides, conservatively where it cannot know:

- another host → **alive** (we cannot look at its processes; a dead session on another
  machine leaves its runs open until that host starts again);
- this host, pid gone, a zombie, or a pid reused by a process with another start time →
  **dead**;
- this host, the start time not comparable (``-``, or a token of another kind than this
  platform computes) → alive exactly when the pid exists;
- a token that does not parse (empty, a foreign format) → **dead**: nothing could ever
  prove such a run alive, and leaving it open would keep its task "running" for ever.
"""

from __future__ import annotations

import functools
import os
import socket
import sys

__all__ = ["current_owner", "owner_alive", "start_token"]

_UNKNOWN = "-"


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from field 3 (state) on, or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # Field 2 (comm) is in parentheses and may itself contain spaces or parentheses.
    close = raw.rfind(")")
    if close < 0:
        return None
    return raw[close + 1 :].split()


def _has_proc() -> bool:
    return sys.platform.startswith("linux") and os.path.isdir("/proc/self")


def _start_token(pid: int) -> str | None:
    """This platform's start-time token of ``pid``; ``None`` if the process does not exist,
    ``'-'`` if it exists (or may) but its start time cannot be read here."""
    if _has_proc():
        fields = _proc_stat(pid)
        if fields is None:
            return None
        if fields[0] in ("Z", "X", "x"):  # zombie or dead: it has finished
            return None
        # field 22 (starttime) is at index 22 - 3 once fields 1-2 are cut off
        return f"t{fields[19]}" if len(fields) > 19 else _UNKNOWN
    try:
        import psutil
    except ImportError:
        return _UNKNOWN
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"c{proc.create_time():.2f}"
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return _UNKNOWN


def start_token(pid: int) -> str | None:
    """The start-time token of process ``pid`` (``None``: no such live process; ``'-'``:
    it may exist but its start time cannot be read here)."""
    return _start_token(pid)


@functools.cache
def _owner_of(pid: int) -> str:
    token = _start_token(pid) or _UNKNOWN
    return f"{socket.gethostname()}:{pid}:{token}"


def current_owner() -> str:
    """The owner token of this process (computed once per pid, so a fork gets its own)."""
    return _owner_of(os.getpid())


def _pid_exists(pid: int) -> bool:
    if os.name == "posix":
        try:
            os.kill(pid, 0)  # signal 0: only checks that the pid exists
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # exists, owned by someone else
        return True
    try:  # on Windows os.kill would terminate the process; ask psutil instead
        import psutil
    except ImportError:
        return True  # cannot tell: assume alive rather than mark a live run crashed
    return bool(psutil.pid_exists(pid))


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by ``owner`` (a :func:`current_owner` token) still runs.

    See the module docstring for the rules where the answer cannot be known.
    """
    if not owner:
        return False
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[0] or not parts[2]:
        return False
    host, pid_text, token = parts
    if host != socket.gethostname():
        return True
    pid = int(pid_text)
    now_token = _start_token(pid)
    if now_token is None:
        return False
    if token == _UNKNOWN or now_token == _UNKNOWN or token[0] != now_token[0]:
        return _pid_exists(pid)
    return token == now_token
