"""A small stand-in for the scheduler session, with the methods the panel uses.

It follows the session interface the panel codes against (``status()``, ``get_task_log()``,
``session[name]`` tasks with ``run()``/``disabled``/``terminate()``/``delete()``/
``start_cond``, ``subscribe()``, ``restart()``, and an app with ``start()``/``shut_down()``/
``is_running``/``clock``), and records every call so tests can check what a click did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd

from redengine_nb import ConditionParseError
from redengine_nb.testing import FakeClock

Callback = Callable[[str, Any], None]


class FakeTask:
    def __init__(self, session: FakeSession, name: str, condition: str) -> None:
        self._session = session
        self.name = name
        self._cond = condition
        self._disabled = False
        self.is_running = False
        self.running_since: float | None = None
        self.runs = 0
        self.fails = 0
        self.status: str | None = None
        self.last_run: float | None = None
        self.runtime: float | None = None
        self.created = session.clock.time()

    @property
    def start_cond(self) -> str:
        return self._cond

    @start_cond.setter
    def start_cond(self, text: str) -> None:
        self._session.calls.append(("start_cond", self.name, text))
        if not text.strip() or "&&" in text:
            raise ConditionParseError("unexpected '&'", text=text, position=text.find("&"))
        self._cond = text
        self._session.emit("task_changed", self.name)

    @property
    def disabled(self) -> bool:
        return self._disabled

    @disabled.setter
    def disabled(self, value: bool) -> None:
        self._session.calls.append(("disabled", self.name, value))
        self._disabled = bool(value)
        self._session.emit("task_changed", self.name)

    def run(self, output: str = "hello\n", action: str = "success") -> None:
        """A forced run, done at once: one record, counters up, events sent."""
        self._session.calls.append(("run", self.name))
        self._session.finish_run(self, action=action, output=output)

    def start_running(self) -> None:
        self.is_running = True
        self.running_since = self._session.clock.time()
        self._session.log.append(
            {
                "task_name": self.name,
                "run_id": f"{self.name}-live",
                "action": "run",
                "created": self.running_since,
                "start": self.running_since,
                "end": None,
                "runtime": None,
                "exc_text": None,
                "output": None,
            }
        )
        self._session.emit("run_started", self.name)

    def terminate(self) -> None:
        self._session.calls.append(("terminate", self.name))
        if self.is_running:
            self._session.finish_run(self, action="terminate", output="")

    def delete(self) -> None:
        self._session.calls.append(("delete", self.name))
        del self._session.tasks_by_name[self.name]
        self._session.emit("task_deleted", self.name)


class FakeSession:
    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock("2024-03-10 09:00", tz="Europe/Helsinki")
        self.tasks_by_name: dict[str, FakeTask] = {}
        self.log: list[dict[str, Any]] = []
        self.calls: list[tuple[Any, ...]] = []
        self._subscribers: list[Callback] = []
        self._lock = threading.Lock()
        self.app: FakeApp | None = None

    # the registry
    @property
    def tasks(self) -> list[FakeTask]:
        return list(self.tasks_by_name.values())

    def __getitem__(self, name: str) -> FakeTask:
        return self.tasks_by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tasks_by_name

    def add(self, name: str, condition: str = "every 10 minutes") -> FakeTask:
        task = FakeTask(self, name, condition)
        self.tasks_by_name[name] = task
        self.emit("task_added", name)
        return task

    def restart(self) -> None:
        self.calls.append(("restart",))
        self.emit("scheduler_started", None)

    # events
    def subscribe(self, callback: Callback) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def emit(self, event: str, name: str | None) -> None:
        with self._lock:
            callbacks = list(self._subscribers)
        for callback in callbacks:
            callback(event, name)

    # runs
    def finish_run(self, task: FakeTask, *, action: str, output: str, exc: str = "") -> None:
        now = self.clock.time()
        start = task.running_since if task.is_running else now
        self.log = [r for r in self.log if r["run_id"] != f"{task.name}-live"]
        self.log.append(
            {
                "task_name": task.name,
                "run_id": f"{task.name}-{len(self.log)}",
                "action": action,
                "created": start,
                "start": start,
                "end": now,
                "runtime": now - start,
                "exc_text": exc or None,
                "output": output,
            }
        )
        task.is_running = False
        task.running_since = None
        task.runs += 1
        task.fails += action == "fail"
        task.status = action
        task.last_run = start
        task.runtime = now - start
        self.emit("run_ended", task.name)

    # reading
    def _dt(self, ts: float | None) -> Any:
        return pd.NaT if ts is None else datetime.fromtimestamp(ts, self.clock.tz)

    def status(self) -> pd.DataFrame:
        rows = [
            {
                "name": t.name,
                "condition": t.start_cond,
                "status": t.status,
                "last_run": self._dt(t.last_run),
                "last_success": pd.NaT,
                "last_fail": pd.NaT,
                "next_due": self._dt((t.last_run or t.created) + 600),
                "is_running": t.is_running,
                "disabled": t.disabled,
                "execution": "thread",
                "runs": t.runs,
                "fails": t.fails,
                "runtime": t.runtime,
                "priority": 0,
                "running_since": self._dt(t.running_since),
            }
            for t in self.tasks
        ]
        return pd.DataFrame(rows)

    def get_task_log(
        self,
        task: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        rows = [dict(r) for r in self.log]
        if task is not None:
            rows = [r for r in rows if r["task_name"] == task]
        if since is not None:
            cut = since.timestamp()
            rows = [r for r in rows if (r["end"] or self.clock.time()) >= cut]
        if limit is not None:
            rows = rows[-limit:]
        for r in rows:
            for key in ("created", "start", "end"):
                r[key] = self._dt(r[key])
        return pd.DataFrame(
            rows,
            columns=[
                "task_name",
                "run_id",
                "action",
                "created",
                "start",
                "end",
                "runtime",
                "exc_text",
                "output",
            ],
        )


class FakeApp:
    def __init__(self, session: FakeSession | None = None) -> None:
        self.session = session or FakeSession()
        self.session.app = self
        self.clock = self.session.clock
        self.is_running = False
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")
        self.is_running = True
        self.session.emit("scheduler_started", None)

    def shut_down(self) -> None:
        self.calls.append("shut_down")
        self.is_running = False
        self.session.emit("scheduler_stopped", None)
