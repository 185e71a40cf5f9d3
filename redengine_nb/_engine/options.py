"""The keywords a task is made with, written once, and their checks.

``app.task`` and ``session.create_task`` both take ``**options: Unpack[TaskOptions]``; an
assigned attribute (``task.timeout = ...``) goes through the same checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from ..errors import TaskSetupError

__all__ = ["TaskOptions", "check_execution", "check_options", "check_target", "check_timeout"]


class TaskOptions(TypedDict, total=False):
    """The keywords of ``app.task`` and ``session.create_task``, written once.

    What to call (exactly one): ``func``; ``path`` + ``func_name`` (a file imported per
    run); ``command`` (a string through the shell, a list without); ``code`` (source text,
    run in ``namespace`` or a fresh one). How: ``name`` (default: from the function, the
    path or the command), ``execution`` (``'process'``, ``'thread'``, ``'main'``; default
    the config's ``task_execution``), ``timeout`` (seconds or a duration text),
    ``end_cond`` (terminate a run when it becomes true), ``priority`` (higher starts
    first), ``disabled``, ``parameters`` (passed to the function by name).
    """

    name: str | None
    func: Callable[..., Any] | None
    func_name: str | None
    path: str | os.PathLike[str] | None
    command: str | list[str] | None
    code: str | None
    execution: str | None
    timeout: Any
    end_cond: Any
    priority: int
    disabled: bool
    parameters: dict[str, Any] | None
    namespace: dict[str, Any] | None


_OPTION_NAMES = frozenset(TaskOptions.__annotations__)


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming a keyword that is not one of :class:`TaskOptions`."""
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(_OPTION_NAMES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"task() got unexpected keyword(s) {', '.join(map(repr, unknown))}{hint} "
            f"(it takes start_cond and {', '.join(sorted(_OPTION_NAMES))})"
        )


def check_target(options: Mapping[str, Any], *, decorating: bool = False) -> None:
    """Raise :class:`TaskSetupError` unless the options name exactly one thing to call
    (``decorating``: the function comes later, from the decorator)."""
    given = [k for k in ("func", "path", "command", "code") if options.get(k) is not None]
    kinds = ["func", *given] if decorating else given
    if options.get("func_name") is not None and "path" not in kinds:
        raise TaskSetupError("func_name= goes with path= (the file that defines it)")
    if len(kinds) != 1:
        raise TaskSetupError(
            "a task needs exactly one of func=, path= + func_name=, command= or code=; "
            + (f"got {', '.join(kinds)}" if kinds else "got none")
        )
    path = options.get("path")
    if path is not None and options.get("func_name") is None:
        raise TaskSetupError(f"path={str(path)!r} needs func_name= (the function to call)")


def check_execution(value: str | None) -> str | None:
    if value is None or value in ("process", "thread", "main", "dask"):
        return value
    raise ValueError(f"unknown execution {value!r}; expected 'process', 'thread', 'main' or 'dask'")


def check_timeout(value: Any) -> float | None:
    if value is None:
        return None
    from ..timetext import to_timedelta

    seconds = to_timedelta(value).total_seconds()
    if seconds <= 0:
        raise ValueError(f"a timeout must be positive; got {value!r}")
    return seconds
