"""Fixtures for the engine tests: a fake clock and an app on an in-memory run log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redengine_nb import RedEngine
from redengine_nb.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock("2024-03-11 09:00", tz="Europe/Helsinki")


@pytest.fixture
def make_app(clock: FakeClock) -> Iterator[Callable[..., RedEngine]]:
    apps: list[RedEngine] = []

    def make(**config: Any) -> RedEngine:
        config.setdefault("task_execution", "thread")
        config.setdefault("max_process_count", 4)
        app = RedEngine(config, logs=":memory:", clock=clock)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.shut_down(timeout=5)
        app.session.terminate_all()
        app.session.wait_idle(5)
        app.session.close_executors(terminate=True)


@pytest.fixture
def app(make_app: Callable[..., RedEngine]) -> RedEngine:
    return make_app()
