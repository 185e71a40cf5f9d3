"""``redengine-nb status`` and ``redengine-nb log``: read a run log from any process."""

from __future__ import annotations

import argparse
import difflib
import time
from typing import TYPE_CHECKING, Any

from ..records import Action
from .common import (
    Output,
    ServeError,
    fmt_runtime,
    fmt_time,
    format_table,
    log_status_rows,
    open_existing_log,
)

if TYPE_CHECKING:
    from ..runlog.base import RunLog

__all__ = ["cmd_log", "cmd_status", "fleet_rows"]


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    runlog = open_existing_log(args.logs)
    try:
        print(f"run log: {runlog.location}", file=out)
        print(format_table(log_status_rows(runlog)), file=out)
        fleet = fleet_rows(runlog)
        if fleet is not None:
            print("\nschedulers (leases):", file=out)
            print(format_table(fleet) if fleet else "(none)", file=out)
    finally:
        runlog.close()
    return 0


def fleet_rows(runlog: RunLog) -> list[dict[str, Any]] | None:
    """One row per scheduler holding a lease on a shared log (``None``: the store keeps
    no leases), with how many open runs it owns."""
    leases = getattr(runlog, "leases", None)
    if leases is None:
        return None
    now = time.time()
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
