"""Reading a ``%%task`` cell: its option line and the task name it gets.

Pure functions shared by the cell magic (in a kernel) and ``redengine-nb serve`` (headless),
so that a cell registers the same task, under the same name, in both places.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
from dataclasses import dataclass

__all__ = [
    "EXECUTIONS",
    "TaskCellError",
    "TaskCellOptions",
    "default_task_name",
    "parse_task_line",
    "task_line_help",
]

EXECUTIONS = ("thread", "process", "main", "dask")


class TaskCellError(ValueError):
    """A ``%%task`` line that cannot be read; the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class TaskCellOptions:
    """What a ``%%task`` line says. ``condition`` is the text exactly as written."""

    condition: str
    name: str | None = None
    execution: str | None = None
    timeout: str | None = None
    priority: int = 0
    disabled: bool = False
    help: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise TaskCellError(f"%%task: {message}\n{USAGE}")


USAGE = (
    "usage: %%task CONDITION [--name NAME] [--execution thread|process|main|dask] "
    "[--timeout DURATION] [--priority N] [--disabled]"
)


def _option_parser() -> _Parser:
    parser = _Parser(prog="%%task", add_help=False, usage=USAGE)
    parser.add_argument("--name")
    parser.add_argument("--execution", choices=EXECUTIONS)
    parser.add_argument("--timeout")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--disabled", action="store_true")
    parser.add_argument("--help", "-h", action="store_true")
    return parser


def task_line_help() -> str:
    return f"""{USAGE}

Register the cell's body as a task that runs when CONDITION is true.

CONDITION is written in the condition language, verbatim (quotes kept): 'daily',
'every 10 minutes', "daily between 08:00 and 10:00", "after task 'fetch'", combined
with &, | and ~.

options:
  --name NAME          the task's name (default: from the cell's first comment line,
                       else from the cell's id)
  --execution KIND     thread (default in a notebook: runs in the notebook's namespace),
                       process (a fresh interpreter), main (inline in the scheduler)
                       or dask (a worker of the Dask cluster: config dask_address)
  --timeout DURATION   e.g. '30 minutes'; the run is terminated past it
  --priority N         higher runs first when several tasks are due (default 0)
  --disabled           register the task disabled
  --help               show this text
"""


def _options_start(line: str) -> int:
    """Index where ``--options`` begin (outside quotes, at a word start), or len(line)."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif (ch == "-" and line.startswith("--", i) and (i == 0 or line[i - 1].isspace())) or (
            ch == "-"
            and line.startswith("-h", i)
            and (i == 0 or line[i - 1].isspace())
            and (i + 2 == len(line) or line[i + 2].isspace())
        ):
            return i
    return len(line)


def parse_task_line(line: str) -> TaskCellOptions:
    """Split a ``%%task`` line into its condition text and options.

    Raises :class:`TaskCellError` for an empty condition, an unknown option or a bad value.
    """
    cut = _options_start(line)
    condition = line[:cut].strip()
    try:
        words = shlex.split(line[cut:])
    except ValueError as exc:
        raise TaskCellError(f"%%task: cannot read the options ({exc})\n{USAGE}") from None
    args = _option_parser().parse_args(words)
    if args.help:
        return TaskCellOptions(condition=condition, help=True)
    if not condition:
        raise TaskCellError(
            "%%task needs a condition, e.g. '%%task every 10 minutes' or "
            f"\"%%task after task 'fetch'\"\n{USAGE}"
        )
    if args.name is not None and not args.name.strip():
        raise TaskCellError(f"%%task: --name must not be empty\n{USAGE}")
    return TaskCellOptions(
        condition=condition,
        name=args.name,
        execution=args.execution,
        timeout=args.timeout,
        priority=args.priority,
        disabled=args.disabled,
    )


_SLUG = re.compile(r"[^0-9A-Za-z_]+")


def default_task_name(body: str, cell_id: str | None = None) -> str:
    """The name a ``%%task`` cell gets without ``--name``.

    The first comment line of the body, made into an identifier (``# fetch prices`` →
    ``fetch_prices``); else ``cell-`` and the first 8 characters of the cell's id; else of
    a hash of the body.
    """
    for raw in body.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            slug = _SLUG.sub("_", line.lstrip("#").strip()).strip("_").lower()
            if slug:
                return slug[:60]
        break
    if cell_id:
        return f"cell-{cell_id[:8]}"
    return "cell-" + hashlib.sha1(body.encode()).hexdigest()[:8]
