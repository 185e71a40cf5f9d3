"""Run owners: this process is alive; a finished one, or a reused pid, is not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from redengine_nb.runlog.owner import current_owner, owner_alive

ON_LINUX_PROC = sys.platform.startswith("linux") and os.path.isdir("/proc/self")


def test_current_owner_names_host_and_pid() -> None:
    owner = current_owner()
    host, pid, token = owner.rsplit(":", 2)
    assert host == socket.gethostname()
    assert pid == str(os.getpid())
    assert token
    assert current_owner() == owner  # stable within the process


def test_this_process_is_alive() -> None:
    assert owner_alive(current_owner())


def _child_owner(keep: bool, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    code = "from redengine_nb.runlog.owner import current_owner; print(current_owner(), flush=True)"
    if keep:
        code += "; import sys; sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_a_running_child_is_alive_and_dead_once_finished(child_env: dict[str, str]) -> None:
    proc, owner = _child_owner(keep=True, env=child_env)
    try:
        assert owner.rsplit(":", 2)[1] == str(proc.pid)
        assert owner_alive(owner)
    finally:
        proc.communicate("", timeout=60)  # it exits and is reaped
    assert proc.returncode == 0
    assert not owner_alive(owner)


@pytest.mark.skipif(
    not ON_LINUX_PROC or not hasattr(os, "waitid"),
    reason="needs /proc and os.waitid(WNOWAIT) to keep a zombie",
)
def test_a_zombie_child_is_dead(child_env: dict[str, str]) -> None:
    proc, owner = _child_owner(keep=False, env=child_env)
    # wait until it has exited, without reaping it: its pid still exists, as a zombie
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    try:
        assert os.path.exists(f"/proc/{proc.pid}")
        assert not owner_alive(owner)
    finally:
        proc.wait(timeout=60)


def test_reused_pid_with_another_start_time_is_dead() -> None:
    host, pid, token = current_owner().rsplit(":", 2)
    if token == "-":
        pytest.skip("this platform gives no process start time")
    other = token[0] + ("1" + token[1:] if token[1:] != "1" else "2")
    assert not owner_alive(f"{host}:{pid}:{other}")


def test_unknown_start_time_falls_back_to_the_pid() -> None:
    host = socket.gethostname()
    assert owner_alive(f"{host}:{os.getpid()}:-")


def test_another_host_is_assumed_alive() -> None:
    assert owner_alive(f"not-{socket.gethostname()}-x:1:t1")


@pytest.mark.parametrize("owner", [None, "", "garbage", "host:notapid:t1", ":12:t1", "h:12:"])
def test_unparsable_owner_is_dead(owner: str | None) -> None:
    assert not owner_alive(owner)
