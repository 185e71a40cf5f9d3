"""Command tasks' runs: a command in its own process group, its output into the run's
capture, TERM then KILL of the whole group when the run is asked to stop.

Imported when a command task first runs (subprocess, shlex and signal are not needed by an
engine without command tasks).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import CommandFailed

if TYPE_CHECKING:
    from ..executors.base import RunFlag

__all__ = ["run_command"]


def _command_args(kwargs: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in kwargs.items():
        args += [f"--{key}", str(value.get_value() if hasattr(value, "get_value") else value)]
    return args


def run_command(command: str | list[str], kwargs: dict[str, Any], flag: RunFlag | None) -> int:
    """Run a command, echo its output into this run's capture, fail on non-zero exit."""
    extra = _command_args(kwargs)
    if isinstance(command, str):
        argv: str | list[str] = command + "".join(" " + shlex.quote(a) for a in extra)
        shell = True
    else:
        argv = [*command, *extra]
        shell = False
    # Its own session (process group): stopping the run stops everything the command
    # started, not only the shell in front of it.
    proc = subprocess.Popen(
        argv,
        shell=shell,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=os.name == "posix",
    )
    out, err = "", ""
    while True:
        try:
            out, err = proc.communicate(timeout=None if flag is None else 0.25)
            break
        except subprocess.TimeoutExpired:
            if flag is not None and flag.is_set():
                out, err = _stop_command(proc)
                break
    if out:
        sys.stdout.write(out)
    if err:
        sys.stderr.write(err)
    if flag is not None and flag.is_set():
        return proc.returncode
    if proc.returncode != 0:
        tail = "\n".join(err.rstrip().splitlines()[-20:])
        shown = command if isinstance(command, str) else shlex.join(command)
        raise CommandFailed(
            f"command {shown!r} exited with status {proc.returncode}"
            + (f"; stderr (tail):\n{tail}" if tail else "")
        )
    return proc.returncode


def _stop_command(proc: subprocess.Popen[str], grace: float = 2.0) -> tuple[str, str]:
    """Stop a command's whole process group: TERM, then KILL after ``grace`` seconds."""

    def signal_group(sig: int) -> None:
        try:
            if os.name == "posix":
                os.killpg(proc.pid, sig)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass

    signal_group(signal.SIGTERM)
    try:
        return proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(signal.SIGKILL)
        return proc.communicate()
