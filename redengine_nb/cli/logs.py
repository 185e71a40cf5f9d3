"""``redengine-nb status`` and ``redengine-nb log``: read a run log from any process (a
file this user may not write is read read-only; task output is printed with its control
characters escaped). ``redengine-nb vacuum``: delete old runs and shrink the file."""

from __future__ import annotations

import argparse
import difflib
import os
import time
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..records import Action
from .common import (
    Output,
    ServeError,
    fmt_runtime,
    fmt_time,
    format_table,
    log_status_rows,
    open_existing_log,
    printable,
)

if TYPE_CHECKING:
    from ..runlog.base import RunLog

__all__ = ["cmd_log", "cmd_status", "cmd_vacuum", "fleet_rows"]


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    runlog = open_existing_log(args.logs)
    try:
        print(f"run log: {runlog.location}", file=out)
        print(format_table(log_status_rows(runlog)), file=out)
        fleet = fleet_rows(runlog)
        if fleet:  # the schedulers holding a lease on this log, if any
            print("\nschedulers (leases):", file=out)
            print(format_table(fleet), file=out)
    finally:
        runlog.close()
    return 0


def cmd_vacuum(args: argparse.Namespace, out: Output) -> int:
    """Delete old runs (``--retention``, as the ``log_retention`` option) and give the
    file's free space back to the file system."""
    from ..config import Config

    retention = None
    if args.retention is not None:
        try:
            retention = Config(log_retention=args.retention).log_retention
        except ConfigError as exc:
            raise ServeError(f"--retention: {exc}", 2) from None
    runlog = open_existing_log(args.logs, write=True)
    try:
        location = runlog.location
        before = os.path.getsize(location) if os.path.isfile(location) else None
        deleted = 0
        if retention is not None:
            age, keep = retention
            now = time.time()
            deleted = runlog.prune(before=None if age is None else now - age, keep=keep)
        runlog.vacuum()
        after = os.path.getsize(location) if os.path.isfile(location) else None
    finally:
        runlog.close()
    sizes = "" if before is None or after is None else f"; {before:,} -> {after:,} bytes"
    print(f"vacuum: {location}: deleted {deleted} old run(s){sizes}", file=out)
    return 0


def fleet_rows(runlog: RunLog) -> list[dict[str, Any]] | None:
    """One row per scheduler holding a lease on a shared log (``None``: the store keeps
    no leases), with how many open runs it owns."""
    now = time.time()
    leases = runlog.leases
    owned: dict[str | None, int] = {}
    for rec in runlog.open_runs():
        owned[rec.owner] = owned.get(rec.owner, 0) + 1
    return [
        {
            "scheduler": f"{lease.host}:{lease.pid}",
            "lease": lease.lease_id[:12],
            "state": "alive" if lease.alive(now) else "expired",
            "started": fmt_time(lease.started),
            "renewed": fmt_time(lease.renewed),
            "expires": fmt_time(lease.expires),
            "running": owned.get(lease.lease_id, 0),
            "info": lease.info or "-",
        }
        for lease in leases(now)
    ]


def _indent(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def cmd_log(args: argparse.Namespace, out: Output) -> int:
    runlog = open_existing_log(args.logs)
    try:
        names = runlog.task_names()
        if args.task not in names:
            close = difflib.get_close_matches(args.task, names, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = f" (tasks in this log: {', '.join(sorted(names))})" if names else ""
            raise ServeError(f"no runs of task {args.task!r} in {runlog.location}{hint}{known}", 1)
        records = runlog.records(task=args.task, limit=args.n)
        print(f"{printable(args.task)}: the last {len(records)} run(s), oldest first", file=out)
        for rec in records:
            status = "running" if rec.action is Action.RUN else rec.action.value
            print(
                f"- run {rec.run_id}: {status}, started {fmt_time(rec.start)}, "
                f"ended {fmt_time(rec.end)}, runtime {fmt_runtime(rec.runtime)}",
                file=out,
            )
            if rec.output:
                print("  output:", file=out)
                print(_indent(printable(rec.output)), file=out)
            if rec.exc_text:
                print("  traceback:", file=out)
                print(_indent(printable(rec.exc_text)), file=out)
    finally:
        runlog.close()
    return 0
