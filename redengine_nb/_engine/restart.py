"""Restarting the scheduler's process: the ``replace``, ``relaunch`` and ``fresh`` modes.

The session calls :func:`restart_process` after it has shut down cleanly (runs finished
or terminated, run log closed); this module only swaps the process. ``recall`` (stop and
start the runner inside the same process) is the session's own and never comes here.

=========  ==================================================================================
mode       what happens
=========  ==================================================================================
replace    ``os.execv`` of ``sys.executable`` with the original command line: same process
           id, same terminal, a fresh interpreter. (On Windows ``execv`` starts a new
           process and ends this one, which amounts to ``relaunch``.)
relaunch   a new process with the original command line, the same working directory,
           environment and standard streams; then this process exits with status 0.
fresh      like ``relaunch``, but the new process is detached: a new session on POSIX
           (``start_new_session=True``: no controlling terminal, not in this process group,
           so it outlives the terminal that started it), a new console window on Windows.
           Standard input is ``/dev/null``; standard output and error are inherited.
=========  ==================================================================================

"The original command line" is ``sys.orig_argv`` with the interpreter replaced by
``sys.executable``, so ``python -m package``, ``python script.py args`` and interpreter
options (``-X``, ``-u``, ...) all come back as they were started. The new process gets
``REDENGINE_NB_RESTARTS`` in its environment: how many times this chain of processes has
restarted (``restart_count()`` reads it), which lets a script tell its first life from the
next ones.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import NoReturn

from ..errors import ConfigError

__all__ = [
    "PROCESS_MODES",
    "RESTART_COUNT_ENV",
    "restart_command",
    "restart_count",
    "restart_process",
]

#: The modes that swap the process (``recall`` stays in-process, in the session).
PROCESS_MODES = ("replace", "relaunch", "fresh")

#: Environment variable carrying the number of restarts so far.
RESTART_COUNT_ENV = "REDENGINE_NB_RESTARTS"


def restart_count() -> int:
    """How many times the process chain this process belongs to has restarted (0: never)."""
    try:
        return max(0, int(os.environ.get(RESTART_COUNT_ENV, "0")))
    except ValueError:
        return 0


def restart_command() -> list[str]:
    """The command line that starts this program again (interpreter first)."""
    return [sys.executable, *sys.orig_argv[1:]]


def _flush() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env[RESTART_COUNT_ENV] = str(restart_count() + 1)
    return env


def restart_process(mode: str) -> NoReturn:
    """Replace this process by a new run of the same program, as ``mode`` says.

    Never returns. Raises :class:`~redengine_nb.errors.ConfigError` for a mode that is not
    one of :data:`PROCESS_MODES`, and ``OSError`` when the new process cannot be started
    (this process then keeps running, so the caller can report it).
    """
    if mode not in PROCESS_MODES:
        allowed = ", ".join(repr(m) for m in PROCESS_MODES)
        hint = (
            " ('recall' restarts inside the process: the session does it)"
            if mode == "recall"
            else ""
        )
        raise ConfigError(f"restart_process() takes one of {allowed}, not {mode!r}{hint}")
    command = restart_command()
    env = _environment()
    _flush()
    if mode == "replace":
        os.execve(sys.executable, command, env)
    kwargs: dict[str, object] = {}
    if mode == "fresh":
        kwargs["stdin"] = subprocess.DEVNULL
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            kwargs["creationflags"] = subprocess.CREATE_NEW_CONSOLE
        else:
            kwargs["start_new_session"] = True
    subprocess.Popen(command, env=env, close_fds=True, **kwargs)  # type: ignore[call-overload]
    _flush()
    os._exit(0)
