"""Fixtures for browser tests: a JupyterLab server (see ``rnb_lab.py``)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from rnb_lab import Lab, free_port, require_chromium, write_private_config


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_chromium()
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    env = {**os.environ, **write_private_config(base)}
    server = Lab(root=root, port=free_port(), token=secrets.token_hex(16), log=base / "lab.log")
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [
        str(jupyter) if jupyter.exists() else shutil.which("jupyter") or "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={server.port}",
        "--port-retries=0",
        f"--IdentityProvider.token={server.token}",
        f"--ServerApp.root_dir={root}",
        "--allow-root",
    ]
    with server.log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(server.url("api/status"), timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within 90 s:\n{server.log_tail()}")
            time.sleep(0.25)  # polling for readiness, not letting time pass
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
