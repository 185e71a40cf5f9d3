"""``RedEngine``: the app object users make — config, run log, clock, session, runner.

::

    app = RedEngine(config={'task_execution': 'thread'}, logs=':memory:')

    @app.task('daily')
    def fetch(): ...

    app.run()      # a service: blocks until shut down
    app.start()    # a notebook or an application: a background thread
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Unpack

from ._engine.options import TaskOptions, check_options, check_target
from ._engine.runner import Runner
from ._engine.session import Session
from .clock import Clock, SystemClock
from .config import Config
from .runlog.base import RunLog

if TYPE_CHECKING:
    from .conditions.parser import Grammar

__all__ = ["RedEngine"]

log = logging.getLogger("redengine_nb.app")


def _open_log(logs: Any) -> RunLog:
    from .runlog import open_runlog

    return open_runlog(logs)


def _default_grammar() -> Grammar:
    from .conditions.parser import DEFAULT_GRAMMAR

    return DEFAULT_GRAMMAR.copy()


class RedEngine:
    """A scheduler app: ``RedEngine(config=None, *, logs=None, clock=None, **config)``.

    ``logs``: a file path (default ``redengine_nb.db`` in the working directory),
    ``':memory:'``, or a run-log object. ``clock``: a clock (``FakeClock`` in tests).
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        logs: Any = None,
        clock: Clock | None = None,
        **config_kwargs: Any,
    ) -> None:
        self.config = Config(config, **config_kwargs)
        self.clock: Clock = clock if clock is not None else SystemClock(self.config.timezone)
        self.runlog: RunLog = _open_log(logs)
        self.grammar: Grammar = _default_grammar()
        self.session = Session(self.config, self.clock, self.runlog, grammar=self.grammar, app=self)
        self.config.set_condition_checker(self.session.parse_condition)
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    # -- tasks -------------------------------------------------------------------------
    def task(self, start_cond: Any = None, **options: Unpack[TaskOptions]) -> Any:
        """Create a task; with no ``func``/``path``/``command``/``code``, a decorator that
        registers the function and returns it unchanged.

        ``start_cond``: condition text (``'daily'``, ``"after task 'fetch'"``) or object.
        The keywords are :class:`~redengine_nb._engine.options.TaskOptions`: ``name``,
        ``func``, ``path`` + ``func_name``, ``command``, ``code``, ``execution``,
        ``timeout``, ``end_cond``, ``priority``, ``disabled``, ``parameters``,
        ``namespace``.
        """
        if all(options.get(k) is None for k in ("func", "path", "command", "code")):
            check_options(options)
            check_target(options, decorating=True)
            # Parse now so that a bad condition fails at the decorator line.
            cond = None if start_cond is None else self.session.parse_condition(start_cond)

            def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
                made = options.copy()
                made["func"] = function
                self.session.create_task(cond, **made)
                return function

            return decorator
        return self.session.create_task(start_cond, **options)

    def cond(self, pattern: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a custom condition phrase (text or compiled regex) for this app."""

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            self.grammar.add_custom(pattern, func)
            return func

        return decorator

    def params(self, **kwargs: Any) -> None:
        """Set session parameters (read by ``Arg('key')`` and matching function arguments)."""
        self.session.parameters.update(kwargs)

    # -- running -----------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True while a scheduler thread started by :meth:`start` is alive."""
        runner = self._runner
        return runner is not None and runner.is_alive

    def run(self) -> None:
        """Run the scheduler in this thread until shut down (a service). Raises the
        :class:`~redengine_nb.errors.SchedulerError` that stopped it, if any."""
        with self._lock:
            if self.is_running:
                raise RuntimeError("the scheduler is already running on a background thread")
            runner = self._runner = Runner(self.session)
        runner.run()

    def start(self) -> None:
        """Run the scheduler on a background daemon thread; returns at once."""
        with self._lock:
            if self.is_running:
                return
            self._runner = Runner(self.session)
            self._runner.start()

    def shut_down(self, timeout: float | None = None) -> bool:
        """Stop the scheduler. From another thread it waits for the scheduler thread to
        end (``timeout`` seconds at most, ``None``: until running tasks finish); from inside
        a task it only asks. Returns whether the scheduler has stopped."""
        self.session.shut_down()
        runner = self._runner
        if runner is None or runner.thread is None:
            return True
        if self.session.in_task() or runner.thread is threading.current_thread():
            return False
        return runner.join(timeout)

    @property
    def error(self) -> BaseException | None:
        """What stopped the last scheduler run, if it was an error."""
        return None if self._runner is None else self._runner.error

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<RedEngine {state}, {len(self.session)} tasks, log={self.runlog.location!r}>"
