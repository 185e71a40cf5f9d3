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
fresh      like ``relaunch``, but the new process is detached, with its own output. On
           POSIX: a new session (``start_new_session=True``: no controlling terminal, not
           in this process group, so it outlives the terminal that started it), standard
           input ``/dev/null``, standard output and error appended to
           :func:`fresh_output_path` — nothing of this process's terminal or pipes is
           kept (a reader of the old output, e.g. ``serve | tee``, sees it end when this
           process exits). On Windows: a new console window, which is its output.
=========  ==================================================================================

Where a ``fresh`` process writes: ``$REDENGINE_NB_FRESH_OUTPUT`` if set, else
``redengine_nb.out`` in the working folder, else (that folder not writable) in the home
folder — as ``nohup`` does with ``nohup.out``. The file is created readable by its owner
only (task output can hold secrets), and this process says on its standard error which
process was started and where its output goes.

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
    "FRESH_OUTPUT_ENV",
    "PROCESS_MODES",
    "RESTART_COUNT_ENV",
    "fresh_output_path",
    "restart_command",
    "restart_count",
    "restart_process",
]

#: The modes that swap the process (``recall`` stays in-process, in the session).
PROCESS_MODES = ("replace", "relaunch", "fresh")

#: Environment variable carrying the number of restarts so far.
RESTART_COUNT_ENV = "REDENGINE_NB_RESTARTS"

#: Environment variable naming the file a ``fresh`` process writes its output to.
FRESH_OUTPUT_ENV = "REDENGINE_NB_FRESH_OUTPUT"

#: The file a ``fresh`` process writes its output to, in the working or home folder.
FRESH_OUTPUT_NAME = "redengine_nb.out"


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


def fresh_output_path() -> str:
    """The file a ``fresh`` restart's new process appends its output to (see above)."""
    chosen = os.environ.get(FRESH_OUTPUT_ENV)
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    here = os.getcwd()
    if not os.access(here, os.W_OK):
        here = os.path.expanduser("~")
    return os.path.join(here, FRESH_OUTPUT_NAME)


def _open_fresh_output() -> tuple[str, int]:
    path = fresh_output_path()
    return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # no stderr, or a reader that has gone
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
    if mode == "relaunch":
        subprocess.Popen(command, env=env, close_fds=True)
    elif sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        # No standard handles given: the new console's own are used, not this process's.
        subprocess.Popen(
            command, env=env, close_fds=True, creationflags=subprocess.CREATE_NEW_CONSOLE
        )
    else:
        path, output = _open_fresh_output()
        try:
            child = subprocess.Popen(
                command,
                env=env,
                close_fds=True,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        finally:
            os.close(output)
        _say(f"redengine_nb: restarted (fresh) as process {child.pid}; its output: {path}")
    _flush()
    os._exit(0)
