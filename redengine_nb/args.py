"""Argument markers: values a task receives that are resolved when its run starts.

Put them as defaults of the task function's parameters (or as values in ``parameters``)::

    @app.task('daily', execution='thread')
    def report(session=Session(), me=Task(), key=Arg('api_key'), rows=Return('fetch')):
        ...

``Session()`` the session, ``Task()`` this task (``Task('x')`` another), ``Arg('key')`` a
session parameter (``app.params(key=...)``), ``Return('x')`` the last return value of task
``x``, ``TerminationFlag()`` a ``threading.Event`` set when the run should stop,
``Private(value)`` a value never shown in reprs, logs, status tables or panels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .executors.base import RunFlag

__all__ = [
    "Arg",
    "Argument",
    "Private",
    "ResolveContext",
    "Return",
    "Session",
    "Task",
    "TerminationFlag",
]

T = TypeVar("T")
_MISSING: Any = object()


@dataclass(slots=True)
class ResolveContext:
    """What markers are resolved against: the session, the task being run, its stop flag."""

    session: Any
    task: Any
    flag: RunFlag


class Argument:
    """Base of the markers. ``resolve`` is called by the session when a run starts."""

    #: Markers that only make sense in this process (refused for ``process`` runs).
    in_process_only = False

    def resolve(self, ctx: ResolveContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars_of(other) == vars_of(self)

    def __hash__(self) -> int:
        return hash(type(self))


def vars_of(obj: object) -> tuple[Any, ...]:
    return tuple(getattr(obj, s) for s in getattr(obj, "__slots__", ()))


class Session(Argument):
    """The running session (``thread`` and ``main`` runs only)."""

    __slots__ = ()
    in_process_only = True

    def resolve(self, ctx: ResolveContext) -> Any:
        return ctx.session

    def __repr__(self) -> str:
        return "Session()"


class Task(Argument):
    """This task, or the task named ``name`` (``thread`` and ``main`` runs only)."""

    __slots__ = ("name",)
    in_process_only = True

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def resolve(self, ctx: ResolveContext) -> Any:
        return ctx.session[self.name] if self.name is not None else ctx.task

    def __repr__(self) -> str:
        return "Task()" if self.name is None else f"Task({self.name!r})"


class Arg(Argument):
    """A session parameter by key (``app.params(key=value)``)."""

    __slots__ = ("default", "key")

    def __init__(self, key: str, default: Any = _MISSING) -> None:
        self.key = key
        self.default = default

    def resolve(self, ctx: ResolveContext) -> Any:
        params = ctx.session.parameters
        if self.key in params:
            return params[self.key]
        if self.default is not _MISSING:
            return self.default
        known = ", ".join(repr(k) for k in params) or "none"
        raise KeyError(
            f"Arg({self.key!r}): no session parameter {self.key!r} "
            f"(set it with app.params({self.key}=...)); known: {known}"
        )

    def __repr__(self) -> str:
        return f"Arg({self.key!r})"


class Return(Argument):
    """The last return value of task ``name`` (``default`` when it has none yet)."""

    __slots__ = ("default", "name")

    def __init__(self, name: str, default: Any = None) -> None:
        self.name = name
        self.default = default

    def resolve(self, ctx: ResolveContext) -> Any:
        return ctx.session.returns.get(self.name, self.default)

    def __repr__(self) -> str:
        return f"Return({self.name!r})"


class TerminationFlag(Argument):
    """A ``threading.Event`` set when the run should stop (timeout, end_cond, terminate())."""

    __slots__ = ()

    def resolve(self, ctx: ResolveContext) -> Any:
        return ctx.flag.event()

    def __repr__(self) -> str:
        return "TerminationFlag()"


class Private(Generic[T]):
    """A value that is never shown: ``repr`` is ``Private(***)``; the task gets the value."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def get_value(self) -> T:
        return self._value

    @property
    def value(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return "Private(***)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (Private, (self._value,))
