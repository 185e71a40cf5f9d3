"""Talk to the reference oracle (``reference_oracle.py``) in the side environment: one long-lived
process, one JSON line per question, so thousands of cases cost seconds.

``reference_python()`` builds the environment on demand with ``scripts/reference_env.sh``
(cached in ``.reference-venv/``, gitignored) and returns its interpreter, or ``None`` with
the reason when it cannot be built (no network to the package index, say).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ORACLE = Path(__file__).with_name("reference_oracle.py")
VENV = Path(os.environ.get("REFERENCE_VENV", ROOT / ".reference-venv"))


def reference_python() -> tuple[Path | None, str]:
    """The side environment's interpreter (built if missing), or ``None`` and why not."""
    python = VENV / "bin" / "python"
    if (VENV / ".complete").exists():
        return python, ""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "reference_env.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "REFERENCE_VENV": str(VENV), "PYTHON": sys.executable},
    )
    if done.returncode != 0 or not (VENV / ".complete").exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return None, "could not build the reference environment: " + " | ".join(tail)
    return python, ""


class Oracle:
    """The oracle process; ``ask(request) -> answer`` (see oracle.py for the shapes)."""

    def __init__(self, python: Path, tz: str = "UTC") -> None:
        self.tz = tz
        self.proc = subprocess.Popen(
            [str(python), str(ORACLE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "TZ": tz, "PYTHONHASHSEED": "0"},
        )
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"the oracle did not start: {ready}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the oracle exited (code {self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
