"""``redengine-nb status`` and ``redengine-nb log``: read a run log from any process."""

from __future__ import annotations

import argparse
import difflib
from typing import TextIO

from ..records import Action
from .common import (
    ServeError,
    fmt_runtime,
    fmt_time,
    format_table,
    log_status_rows,
    open_existing_log,
)

__all__ = ["cmd_log", "cmd_status"]


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    runlog = open_existing_log(args.logs)
    try:
        print(f"run log: {runlog.location}", file=out)
        print(format_table(log_status_rows(runlog)), file=out)
    finally:
        runlog.close()
    return 0


def _indent(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def cmd_log(args: argparse.Namespace, out: TextIO) -> int:
    runlog = open_existing_log(args.logs)
    try:
        names = runlog.task_names()
        if args.task not in names:
            close = difflib.get_close_matches(args.task, names, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = f" (tasks in this log: {', '.join(sorted(names))})" if names else ""
            raise ServeError(f"no runs of task {args.task!r} in {runlog.location}{hint}{known}", 1)
        records = runlog.records(task=args.task, limit=args.n)
        print(f"{args.task}: the last {len(records)} run(s), oldest first", file=out)
        for rec in records:
            status = "running" if rec.action is Action.RUN else rec.action.value
            print(
                f"- run {rec.run_id}: {status}, started {fmt_time(rec.start)}, "
                f"ended {fmt_time(rec.end)}, runtime {fmt_runtime(rec.runtime)}",
                file=out,
            )
            if rec.output:
                print("  output:", file=out)
                print(_indent(rec.output), file=out)
            if rec.exc_text:
                print("  traceback:", file=out)
                print(_indent(rec.exc_text), file=out)
    finally:
        runlog.close()
    return 0
