"""A real Jupyter kernel of this interpreter, driven the way a front end drives it.

``KernelHarness`` starts ``ipykernel`` through ``jupyter_client.KernelManager`` from a
kernelspec written to a temporary folder (so it is *this* venv's Python), sends execute
requests (optionally with JupyterLab's ``cellId`` metadata), and keeps every IOPub
message so that tests can group them by ``parent_header.msg_id``.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

KERNEL_NAME = "redengine-nb-test"
REPO = Path(__file__).resolve().parents[2]


def write_kernelspec(root: Path, env: dict[str, str] | None = None) -> Path:
    folder = root / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "redengine_nb tests",
        "language": "python",
        "interrupt_mode": "signal",
        # The kernel imports this checkout, installed or not.
        "env": {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **(env or {}),
        },
    }
    (folder / "kernel.json").write_text(json.dumps(spec))
    return root / "kernels"


@dataclass
class Reply:
    msg_id: str
    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.reply["content"]["status"])

    @property
    def stdout(self) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )

    @property
    def stderr(self) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
        )

    @property
    def error(self) -> str:
        return "\n".join(
            f"{m['content']['ename']}: {m['content']['evalue']}"
            for m in self.messages
            if m["msg_type"] == "error"
        )

    def texts(self) -> str:
        """Every piece of text this cell shows (streams, results, displays, errors)."""
        return "\n".join(message_text(m) for m in self.messages)


def message_text(msg: dict[str, Any]) -> str:
    content = msg.get("content", {})
    kind = msg["msg_type"]
    if kind == "stream":
        return str(content.get("text", ""))
    if kind in ("display_data", "update_display_data", "execute_result"):
        return json.dumps(content.get("data", {}))
    if kind == "error":
        return f"{content.get('ename')}: {content.get('evalue')}\n" + "\n".join(
            content.get("traceback", [])
        )
    return ""


class KernelHarness:
    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        kernel_dirs = write_kernelspec(tmp, env)
        self.km = KernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dirs)]),
        )
        self.km.start_kernel(cwd=str(tmp))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        #: Every IOPub message seen, in arrival order.
        self.iopub: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        provisioner = self.km.provisioner
        assert provisioner is not None
        pid = getattr(provisioner, "pid", None) or provisioner.process.pid  # type: ignore[attr-defined]
        return int(pid)

    # -- sending ----------------------------------------------------------------------
    def send(self, code: str, *, cell_id: str | None = None) -> str:
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        metadata = {"cellId": cell_id} if cell_id else {}
        msg = self.kc.session.msg("execute_request", content, metadata=metadata)
        self.kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def wait(self, msg_id: str, timeout: float = 60) -> Reply:
        deadline = time.monotonic() + timeout
        reply: dict[str, Any] | None = None
        while reply is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no execute_reply for {msg_id}")
            try:
                msg = self.kc.get_shell_msg(timeout=left)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg
        # The reply may come before the cell's last IOPub messages: wait for its idle.
        idle = False
        while not idle:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no idle status for {msg_id}")
            self.drain(timeout=min(left, 1.0))
            idle = any(
                m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == msg_id
                for m in self.iopub
            )
        return Reply(msg_id, reply, self.by_parent()[msg_id])

    def run(self, code: str, *, cell_id: str | None = None, timeout: float = 60) -> Reply:
        return self.wait(self.send(code, cell_id=cell_id), timeout=timeout)

    def value(self, expression: str, timeout: float = 60) -> Any:
        """Evaluate ``expression`` in the kernel; it must be JSON-serialisable."""
        reply = self.run(f"import json as _j; print(_j.dumps({expression}))", timeout=timeout)
        assert reply.status == "ok", reply.error
        return json.loads(reply.stdout.strip().splitlines()[-1])

    def wait_until(self, expression: str, timeout: float = 30, interval: float = 0.3) -> Any:
        """Evaluate ``expression`` until it is truthy (a guard, not a way to pass time)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.value(expression)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(interval)

    # -- receiving --------------------------------------------------------------------
    def drain(self, timeout: float = 0.2) -> None:
        """Read IOPub messages that arrive within ``timeout`` (then stop at the first gap)."""
        wait = timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=wait)
            except queue.Empty:
                return
            self.iopub.append(msg)
            wait = 0.05

    def by_parent(self) -> dict[str | None, list[dict[str, Any]]]:
        groups: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        for msg in self.iopub:
            groups[msg["parent_header"].get("msg_id")].append(msg)
        return groups

    # -- ending -----------------------------------------------------------------------
    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.is_alive():
                self.km.shutdown_kernel(now=False)
