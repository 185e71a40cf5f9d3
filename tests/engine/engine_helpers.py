"""Helpers shared by the engine tests."""

from __future__ import annotations

from typing import Any

from redengine_nb import RedEngine


def step(app: RedEngine, timeout: float = 30) -> list[str]:
    """One tick, then wait until the runs it started have ended."""
    started = app.session.tick()
    assert app.session.wait_idle(timeout), "runs did not finish"
    return started


def log_of(app: RedEngine, task: str | None = None) -> list[dict[str, Any]]:
    return app.session.get_task_log(task=task).to_dict("records")
