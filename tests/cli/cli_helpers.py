"""Helpers for the CLI tests: notebooks written as JSON, the CLI run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

Cell = str | tuple[str, Sequence[str]] | dict[str, object]


def notebook_json(cells: Sequence[Cell]) -> dict[str, object]:
    """A format-4 notebook: a str is a code cell, ``(source, tags)`` a tagged code cell,
    a dict is taken as it is."""
    out: list[dict[str, object]] = []
    for cell in cells:
        if isinstance(cell, dict):
            out.append(cell)
            continue
        source, tags = (cell, ()) if isinstance(cell, str) else cell
        out.append(
            {
                "cell_type": "code",
                "execution_count": None,
                "id": uuid.uuid4().hex[:8],
                "metadata": {"tags": list(tags)} if tags else {},
                "outputs": [],
                "source": source,
            }
        )
    return {
        "cells": out,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("REDENGINE_NB_SERVE_DEADLINE", None)
    env.pop("REDENGINE_NB_RESTARTS", None)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "redengine_nb", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``python -m redengine_nb ARGS`` to the end; ``timeout`` is a guard, not a wait."""
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_command(*args),
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
