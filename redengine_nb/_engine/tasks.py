"""Tasks: what a run calls (:class:`FuncTask`, :class:`CommandTask`, :class:`CodeTask`).

A task object is a thin, live view: its attributes are its definition (condition,
execution, timeout, priority, ...) and its state (status, ``last_*``, ``is_running``) is
read from the session and the run log. Assigning an attribute goes through the session so
the scheduler sees the change at once.

How each kind runs is a *target builder*: given resolved keyword arguments it returns a
zero-argument callable. For ``process`` runs that callable is a ``functools.partial`` of
a module-level function, so it pickles with cloudpickle.
"""

from __future__ import annotations

import functools
import inspect
import os
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import TaskSetupError
from ..records import Action
from .options import check_execution, check_timeout
from .targets import call_from_path, resolve_path, run_code, top_level_names

if TYPE_CHECKING:
    from ..conditions.base import BaseCondition
    from ..executors.base import RunFlag
    from .session import Session

__all__ = ["BaseTask", "CodeTask", "CommandTask", "FuncTask"]


# Parameters per function, read once: inspect.signature() costs more than the rest of a
# launch. Keyed weakly by the function and checked against its defaults (which may be
# replaced); a callable that takes no weak reference is read each time. With them, what a
# launch needs of them: the names a call may pass, and the defaults (where markers hide).
_SIGNATURES: weakref.WeakKeyDictionary[Any, _Signature] = weakref.WeakKeyDictionary()


class _Signature:
    __slots__ = ("defaults", "kwdefaults", "names", "params", "values")

    def __init__(self, defaults: Any, kwdefaults: Any, params: list[inspect.Parameter] | None):
        self.defaults = defaults
        self.kwdefaults = kwdefaults
        self.params = params
        self.names: frozenset[str] | None = None  # None: any name (or no signature)
        self.values: Mapping[str, Any] = {}
        if params is not None:
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
                self.names = frozenset(
                    p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY
                )
            self.values = {
                p.name: p.default for p in params if p.default is not inspect.Parameter.empty
            }


def _signature_of(func: Any) -> _Signature:
    """``func``'s parameters, read once (``params`` is ``None`` if it has no signature)."""
    defaults = getattr(func, "__defaults__", None)
    kwdefaults = getattr(func, "__kwdefaults__", None)
    try:
        cached = _SIGNATURES.get(func)
    except TypeError:  # not weakly referenceable (or not hashable)
        cached = None
    if cached is not None and cached.defaults is defaults and cached.kwdefaults is kwdefaults:
        return cached
    params: list[inspect.Parameter] | None
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        params = None
    sig = _Signature(defaults, kwdefaults, params)
    try:
        _SIGNATURES[func] = sig
    except TypeError:
        pass
    return sig


class BaseTask:
    """What every task has. Create tasks with ``app.task(...)`` / ``session.create_task``."""

    kind: ClassVar[str] = ""

    def __init__(
        self,
        session: Session,
        name: str,
        *,
        start_cond: BaseCondition,
        end_cond: BaseCondition | None = None,
        execution: str | None = None,
        timeout: float | None = None,
        priority: int = 0,
        disabled: bool = False,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self._session = session
        self._name = name
        self._start_cond = start_cond
        self._end_cond = end_cond
        self._execution = execution
        self._timeout = timeout
        self._priority = int(priority)
        self._disabled = bool(disabled)
        self.parameters: dict[str, Any] = dict(parameters or {})

    # -- definition ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def session(self) -> Session:
        return self._session

    @property
    def start_cond(self) -> BaseCondition:
        return self._start_cond

    @start_cond.setter
    def start_cond(self, value: str | BaseCondition) -> None:
        cond = self._session.parse_condition(value)
        with self._session._changing(self):
            self._start_cond = cond

    @property
    def end_cond(self) -> BaseCondition | None:
        return self._end_cond

    @end_cond.setter
    def end_cond(self, value: str | BaseCondition | None) -> None:
        cond = None if value is None else self._session.parse_condition(value)
        with self._session._changing(self):
            self._end_cond = cond

    @property
    def execution(self) -> str:
        return self._execution or self._session.config.task_execution

    @execution.setter
    def execution(self, value: str | None) -> None:
        execution = check_execution(value)
        with self._session._changing(self):
            self._execution = execution

    @property
    def timeout(self) -> float | None:
        """Seconds a run may take (the config's ``timeout`` when the task sets none)."""
        if self._timeout is not None:
            return self._timeout
        value = self._session.config.timeout
        return None if value is None else float(value)

    @timeout.setter
    def timeout(self, value: Any) -> None:
        timeout = check_timeout(value)
        with self._session._changing(self):
            self._timeout = timeout

    @property
    def priority(self) -> int:
        return self._priority

    @priority.setter
    def priority(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"priority must be an integer; got {value!r}")
        with self._session._changing(self):
            self._priority = value

    @property
    def disabled(self) -> bool:
        return self._disabled

    @disabled.setter
    def disabled(self, value: bool) -> None:
        with self._session._changing(self):
            self._disabled = bool(value)

    # Red Engine's spelling: ``task.disable = True``.
    disable = disabled

    @property
    def force_run(self) -> bool:
        """True while a forced run is pending. Set ``True`` to run once at the next chance."""
        return self._session._has_forced(self)

    @force_run.setter
    def force_run(self, value: bool) -> None:
        if value:
            self._session._force(self, {})
        else:
            self._session._unforce(self)

    # -- state -----------------------------------------------------------------------
    @property
    def status(self) -> str | None:
        action = self._session._status_of(self)
        return None if action is None else action.value

    def _last(self, action: Action) -> datetime | None:
        return self._session._last_time(self._name, action)

    @property
    def last_run(self) -> datetime | None:
        return self._last(Action.RUN)

    @property
    def last_success(self) -> datetime | None:
        return self._last(Action.SUCCESS)

    @property
    def last_fail(self) -> datetime | None:
        return self._last(Action.FAIL)

    @property
    def last_terminate(self) -> datetime | None:
        return self._last(Action.TERMINATE)

    @property
    def last_inaction(self) -> datetime | None:
        return self._last(Action.INACTION)

    @property
    def last_crash(self) -> datetime | None:
        return self._last(Action.CRASH)

    @property
    def is_running(self) -> bool:
        return self._session.is_task_running(self._name)

    @property
    def running_since(self) -> datetime | None:
        return self._session._running_since(self._name)

    def is_due(self) -> bool:
        """True when the scheduler would start it now (a pending forced run, or enabled with
        its condition true)."""
        return self._session._is_due(self)

    def next_due(self) -> datetime | None:
        """Earliest instant its condition can next become true by the clock alone."""
        return self._session._next_due(self)

    # -- actions ---------------------------------------------------------------------
    def run(self, **params: Any) -> None:
        """Queue a forced run with these parameters (on top of the task's own)."""
        self._session._force(self, params)

    def terminate(self) -> None:
        """Ask the running run(s) of this task to stop."""
        self._session.ends.terminate_task(self._name, reason="terminated on request")

    def delete(self) -> None:
        self._session.delete_task(self._name)

    # -- running ---------------------------------------------------------------------
    @property
    def description(self) -> str:
        return self.kind

    def signature_names(self) -> frozenset[str] | None:
        """Parameter names the target accepts (``None``: any)."""
        return None

    def marker_defaults(self) -> Mapping[str, Any]:
        """Default values of the target's parameters (where markers hide); read-only."""
        return {}

    def check_prerun(self) -> None:
        """Raise :class:`TaskSetupError` when a run cannot start (missing file, ...)."""

    def build_target(
        self, kwargs: dict[str, Any], *, process: bool, flag: RunFlag | None
    ) -> Callable[[], Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._name!r}, start_cond='{self._start_cond}', "
            f"execution={self.execution!r}, description={self.description!r})"
        )


class FuncTask(BaseTask):
    """Calls a Python function; with ``path`` + ``func_name`` the file is imported per run."""

    kind = "func"

    def __init__(
        self,
        session: Session,
        name: str,
        *,
        func: Callable[..., Any] | None = None,
        path: str | os.PathLike[str] | None = None,
        func_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if func is None and (path is None or func_name is None):
            raise TaskSetupError("a FuncTask needs func=, or both path= and func_name=")
        if func is not None and not callable(func):
            raise TaskSetupError(f"func must be callable; got {func!r}")
        self.func = func
        self.path = None if path is None else str(path)
        self.func_name = func_name
        # Read now, not at the first launch: a burst of first runs would pay it all at once.
        self._sig: tuple[Any, _Signature] | None = None
        if func is not None:
            self._signature()
        super().__init__(session, name, **kwargs)

    def _signature(self) -> _Signature:
        """The signature of ``self.func``, kept on the task (read again if the function
        or its defaults were replaced)."""
        func = self.func
        kept = self._sig
        if (
            kept is not None
            and kept[0] is func
            and kept[1].defaults is getattr(func, "__defaults__", None)
            and kept[1].kwdefaults is getattr(func, "__kwdefaults__", None)
        ):
            return kept[1]
        sig = _signature_of(func)
        self._sig = (func, sig)
        return sig

    @property
    def description(self) -> str:
        if self.func is not None:
            module = getattr(self.func, "__module__", None) or "?"
            qual = getattr(self.func, "__qualname__", None) or repr(self.func)
            return f"{module}.{qual}()"
        return f"{self.path}:{self.func_name}()"

    def signature_names(self) -> frozenset[str] | None:
        if self.func is None:
            return None
        return self._signature().names

    def marker_defaults(self) -> Mapping[str, Any]:
        if self.func is None:
            return {}
        return self._signature().values

    def check_prerun(self) -> None:
        if self.func is not None:
            return
        assert self.path is not None and self.func_name is not None
        file = resolve_path(self.path)
        names = top_level_names(file)
        if self.func_name not in names:
            shown = ", ".join(sorted(n for n in names if not n.startswith("_"))) or "none"
            raise TaskSetupError(
                f"task {self.name!r}: {str(file)!r} has no function {self.func_name!r}; "
                f"top-level names there: {shown}"
            )

    def build_target(
        self, kwargs: dict[str, Any], *, process: bool, flag: RunFlag | None
    ) -> Callable[[], Any]:
        if self.func is not None:
            if not kwargs:
                return self.func  # nothing to bind: no partial (one object less per run)
            return functools.partial(self.func, **kwargs)
        assert self.path is not None and self.func_name is not None
        return functools.partial(call_from_path, self.path, self.func_name, kwargs)


class CommandTask(BaseTask):
    """Runs a command: a string through the shell, a list without one."""

    kind = "command"

    def __init__(
        self, session: Session, name: str, *, command: str | list[str], **kwargs: Any
    ) -> None:
        if isinstance(command, str):
            if not command.strip():
                raise TaskSetupError("command is empty")
        elif isinstance(command, list | tuple) and command:
            command = [str(c) for c in command]
        else:
            raise TaskSetupError(f"command must be a string or a non-empty list; got {command!r}")
        self.command: str | list[str] = command
        super().__init__(session, name, **kwargs)

    @property
    def description(self) -> str:
        if isinstance(self.command, str):
            return self.command
        import shlex

        return shlex.join(self.command)

    def check_prerun(self) -> None:
        import shutil

        if isinstance(self.command, list) and shutil.which(self.command[0]) is None:
            raise TaskSetupError(
                f"task {self.name!r}: command {self.command[0]!r} not found "
                "(not an executable path and not on PATH)"
            )

    def build_target(
        self, kwargs: dict[str, Any], *, process: bool, flag: RunFlag | None
    ) -> Callable[[], Any]:
        from .commands import run_command

        return functools.partial(run_command, self.command, kwargs, flag)


class CodeTask(BaseTask):
    """Executes Python source text (potentially dangerous: it runs whatever it is given).

    The namespace is fresh per run with the parameters as variables, unless ``namespace``
    is given (cell tasks run in the notebook's). The run's return value is the value of a
    final expression statement, as in a notebook cell.
    """

    kind = "code"

    def __init__(
        self,
        session: Session,
        name: str,
        *,
        code: str,
        namespace: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(code, str):
            raise TaskSetupError(f"code must be a string; got {type(code).__name__}")
        try:
            compile(code, f"<task {name}>", "exec")
        except SyntaxError as exc:
            raise TaskSetupError(f"task {name!r}: the code does not compile: {exc}") from None
        self.code = code
        self.namespace = namespace
        super().__init__(session, name, **kwargs)

    @property
    def description(self) -> str:
        first = next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")
        return first if len(first) <= 60 else first[:57] + "..."

    def build_target(
        self, kwargs: dict[str, Any], *, process: bool, flag: RunFlag | None
    ) -> Callable[[], Any]:
        if self.namespace is not None and not process:
            return functools.partial(run_code, self.code, self._name, kwargs, self.namespace)
        return functools.partial(run_code, self.code, self._name, kwargs, None)
