"""shut_cond is looked at after the due tasks are chosen, so that a run ending mid-step
cannot slip a restart of its task past a shut_cond it made true."""

from __future__ import annotations

import threading
from typing import Any

from engine_helpers import log_of

GUARD = 30.0


def test_shut_cond_made_true_by_a_run_ending_mid_step_stops_before_a_restart(make_app) -> None:
    app = make_app(shut_cond="task 'probe' has succeeded")
    release = threading.Event()
    app.task("true", func=lambda: release.wait(GUARD), name="probe")
    assert app.session.tick() == ["probe"]
    session = app.session
    check_runs = session.step.check_runs

    def run_ends_now(*args: Any) -> None:
        # the run ends inside the step, after its start had been looked at
        check_runs(*args)
        release.set()
        assert session.wait_idle(GUARD)

    session.step.check_runs = run_ends_now
    assert session.tick() == []
    assert session.stop_requested
    assert [r["action"] for r in log_of(app, "probe")] == ["success"]
