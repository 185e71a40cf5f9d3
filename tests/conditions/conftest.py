"""A small harness: step a FakeClock, evaluate a condition, record a run when it is met."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from redengine_nb.conditions import BaseCondition, Context
from redengine_nb.records import Action
from redengine_nb.runlog.memory import MemoryRunLog
from redengine_nb.testing import FakeClock


@dataclass
class Sim:
    clock: FakeClock
    log: MemoryRunLog = field(default_factory=MemoryRunLog)
    task: str = "t"

    def ctx(self, task: str | None = None) -> Context:
        return Context(self.clock.now(), self.log, task or self.task)

    def run(self, task: str | None = None, action: Action = Action.SUCCESS) -> None:
        """Record a run that starts and ends now."""
        ts = self.clock.time()
        rec = self.log.start_run(task or self.task, created=ts, start=ts, owner="test")
        self.log.finish_run(rec.run_id, action, end=ts)

    def step(self, cond: BaseCondition, task: str | None = None) -> bool:
        if cond.is_met(self.ctx(task)):
            self.run(task)
            return True
        return False

    def simulate(
        self,
        cond: BaseCondition,
        minutes: int,
        every: str = "1 minute",
        on_step: Callable[[Sim], None] | None = None,
    ) -> list[datetime]:
        """Check once per step for ``minutes`` steps; return the instants it ran.

        (Datetimes of one zone compare by wall time in Python, so this compares timestamps.)

        Also checks that ``next_due`` is never late: the condition never becomes true
        before the instant ``next_due`` predicted.
        """
        runs: list[datetime] = []
        predicted: datetime | None = None
        for _ in range(minutes):
            if on_step is not None:
                on_step(self)
            ctx = self.ctx()
            met = cond.is_met(ctx)
            if met:
                assert predicted is None or predicted.timestamp() <= ctx.ts, (predicted, ctx.now)
                runs.append(ctx.now)
                self.run()
                predicted = cond.next_due(self.ctx())
            elif predicted is None or predicted.timestamp() <= ctx.ts:
                predicted = cond.next_due(ctx)
                assert predicted is None or predicted.timestamp() > ctx.ts
            self.clock.advance(every)
        return runs


@pytest.fixture
def make_sim() -> Callable[..., Sim]:
    def make(start: str = "2024-03-10 00:00", tz: str = "Europe/Helsinki") -> Sim:
        return Sim(FakeClock(start, tz=tz))

    return make
