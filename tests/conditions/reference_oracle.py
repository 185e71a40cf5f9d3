"""The reference oracle: evaluates condition texts with the real Red Engine 2.0.1 and
Rocketry 2.5.1, answering one JSON line per request line (stdin → stdout).

It runs in the side virtual environment that ``scripts/reference_env.sh`` builds (those
packages pin pydantic 1 and pandas 1, which the project's own environment must not), with
``TZ`` set to the zone the test uses: both libraries read local naive time, so that makes
their wall clock ours. It imports nothing from redengine_nb.

Request (one JSON object a line)::

    {"cond": "daily between 22:00 and 23:00",
     "times": [1704234600.0, ...],            # epoch seconds to evaluate at
     "records": [["the task", "success", 1704233400.0], ...],
     "params": {"env": "prod"}, "cycles": 3, "started": 1704230000.0,
     "libs": ["redengine", "rocketry"]}

Instead of ``cond``, ``"py": "IsPeriod(period=TimeOfYear('Mar', 'May'))"`` asks Rocketry
(``"libs": ["rocketry"]``) about a condition built in Python, for what it has no text for
(``TimeOfYear``, ``Retry``); the expression is evaluated with ``rocketry.conds`` and those
classes in scope.

Answer: ``{"redengine": {"values": [true, ...]} | {"error": "..."}, "rocketry": ...}``.
The condition belongs to a task named ``the task``; tasks ``a`` and ``b`` exist too.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
import warnings

warnings.simplefilter("ignore")
logging.disable(logging.WARNING)

TASKS = ("the task", "a", "b")
_NOW = [0.0]


def _frozen_time() -> float:
    return _NOW[0]


class _FrozenDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
        return cls.fromtimestamp(_NOW[0], tz)


def _record(logger_name: str, task: str, action: str, created: float) -> logging.LogRecord:
    rec = logging.LogRecord(logger_name, logging.INFO, __file__, 1, "oracle", (), None)
    rec.created = created
    rec.action = action
    rec.task_name = task
    return rec


def _evaluate(lib: str, req: dict) -> dict:
    if lib == "redengine":
        from redengine import Session
        from redengine.tasks import FuncTask
    else:
        from rocketry import Session
        from rocketry.tasks import FuncTask
    # Each session puts a fresh in-memory log on the (global) task logger when it has no
    # readable handler: drop the last request's, or its records would leak into this one.
    logging.getLogger(f"{lib}.task").handlers.clear()
    session = Session(config={"force_status_from_logs": True, "silence_task_prerun": True})
    session.set_as_default()
    try:
        tasks = {}
        for name in TASKS:
            cond = _condition(req) if name == "the task" else "false"
            tasks[name] = FuncTask(
                _noop, name=name, execution="main", start_cond=cond, session=session
            )
    except Exception as exc:  # the text does not parse (or cannot be built)
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    logger_name = f"{lib}.task"
    for task, action, created in req.get("records", ()):
        tasks[task].logger.handle(_record(logger_name, task, action, created))
    for key, value in req.get("params", {}).items():
        session.parameters[key] = value
    if req.get("cycles") is not None:
        session.scheduler.n_cycles = req["cycles"]
    if req.get("started") is not None:
        session.scheduler.startup_time = datetime.datetime.fromtimestamp(req["started"])
    task = tasks["the task"]
    values = []
    try:
        for ts in req["times"]:
            _NOW[0] = ts
            if lib == "redengine":
                values.append(bool(task.start_cond))
            else:
                values.append(bool(task.start_cond.observe(task=task, session=session)))
    except Exception as exc:
        return {"error": f"{type(exc).__name__} when evaluated: {exc}"[:300]}
    return {"values": values}


def _noop() -> None:
    return None


def _condition(req: dict):  # type: ignore[no-untyped-def]
    """The request's condition: its text, or the Rocketry object its ``py`` builds."""
    if "py" not in req:
        return req["cond"]
    import rocketry.conds
    from rocketry.conditions import IsPeriod, Retry, TaskExecutable
    from rocketry.time import TimeOfYear

    scope = {
        **vars(rocketry.conds),
        "IsPeriod": IsPeriod,
        "Retry": Retry,
        "TaskExecutable": TaskExecutable,
        "TimeOfYear": TimeOfYear,
    }
    return eval(req["py"], scope)  # the test's own expressions, not input


def _mend_rocketry() -> None:
    """Rocketry 2.5.1's ParamExists answers through ``__bool__`` with the class-level
    session, and its ``observe`` (what Rocketry's scheduler calls) does not reach that: give
    it the ``get_state`` its docstring describes, reading the session it is given."""
    from rocketry.args import Session as SessionArg
    from rocketry.conditions.parameter import ParamExists

    def get_state(self, session=SessionArg()):  # type: ignore[no-untyped-def]
        params = session.parameters
        if any(key not in params for key in self.param_keys):
            return False
        return all(key in params and params[key] == v for key, v in self.param_values.items())

    ParamExists.get_state = get_state
    ParamExists.__abstractmethods__ = frozenset()


def main() -> None:
    import redengine  # noqa: F401  (both imported before time is frozen)
    import rocketry  # noqa: F401

    _mend_rocketry()

    time.time = _frozen_time
    datetime.datetime = _FrozenDatetime  # type: ignore[misc]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        out = {lib: _evaluate(lib, req) for lib in req.get("libs", ("redengine", "rocketry"))}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
