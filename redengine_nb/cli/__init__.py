"""``redengine-nb``: deploy a notebook headless and read its run log.

- ``redengine-nb serve NOTEBOOK.ipynb [--logs PATH] [--for DURATION] [--config KEY=VALUE ...]``
  (:mod:`.serve`) runs the notebook's cells and schedules its ``%%task`` cells until stopped.
- ``redengine-nb status [--logs PATH]`` and ``redengine-nb log TASK [--logs PATH] [-n N]``
  (:mod:`.logs`) read a run log.
- :mod:`.common`: what they share (the error, the run log, lines and tables).

Exit status: 0 after a clean stop; 1 when a setup cell raised or the scheduler stopped on
an error; 2 for bad input; 141 (128 + SIGPIPE, as a shell reports ``cat`` in
``cat big.txt | head``) when standard output was a pipe whose reader went away — quietly,
after ``serve`` has stopped its scheduler cleanly. See ``docs/serve.md``. ``main`` is the
console script's entry point (``redengine_nb.cli:main``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import RunLogError
from .common import (
    READER_GONE_EXIT,
    Output,
    ServeError,
    format_run_line,
    log_status_rows,
    parse_config_pairs,
    positive_duration,
    reader_closed,
)
from .logs import cmd_log, cmd_status, cmd_vacuum
from .serve import cmd_serve

__all__ = ["ServeError", "format_run_line", "log_status_rows", "main", "parse_config_pairs"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redengine-nb",
        description="Deploy a scheduling notebook headless, and read its run log.",
        epilog="See 'redengine-nb COMMAND --help' and docs/serve.md.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"redengine-nb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    logs_help = (
        "the run log: a SQLite file, NOTEBOOK.ipynb for that notebook's own log "
        "(NOTEBOOK.redengine_nb.db beside it), or ':memory:' (default: ./redengine_nb.db; "
        "serve: the served notebook's own log)"
    )
    serve = sub.add_parser(
        "serve",
        help="run a notebook's cells, register its %%task cells, schedule until stopped",
        description=(
            "Run the notebook's ordinary cells once, in order, in one namespace (cells "
            "tagged 'skip-serve' are left out), register its %%task cells as the magic "
            "does in a kernel, then run the scheduler in the foreground until Ctrl-C, "
            "SIGTERM, --for, shut_cond or session.shut_down(). One line per run is printed "
            "as it ends; the status table at the end. The cells run with the notebook's "
            "folder as working folder, like a kernel."
        ),
    )
    serve.add_argument("notebook", metavar="NOTEBOOK.ipynb", help="the notebook to serve")
    serve.add_argument("--logs", metavar="PATH", help=logs_help)
    serve.add_argument(
        "--for",
        dest="duration_text",
        metavar="DURATION",
        help="stop after this long, e.g. 20s, '10 minutes', 1h30m",
    )
    serve.add_argument(
        "--config",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help=(
            "a config option of the app (repeatable), e.g. instant_shutdown=true, "
            "max_process_count=2, 'timeout=30 minutes'; wins over the notebook's own settings"
        ),
    )
    serve.set_defaults(func=cmd_serve)

    status = sub.add_parser(
        "status",
        help="print the status table of a run log",
        description="Print one row per task of a run log (also while a server writes it).",
    )
    status.add_argument("--logs", metavar="PATH", help=logs_help)
    status.set_defaults(func=cmd_status)

    log = sub.add_parser(
        "log",
        help="print a task's recent runs with their output and tracebacks",
        description="Print TASK's most recent runs from a run log, oldest first.",
    )
    log.add_argument("task", metavar="TASK", help="the task's name")
    log.add_argument("--logs", metavar="PATH", help=logs_help)
    log.add_argument("-n", type=int, default=5, metavar="N", help="how many runs (default 5)")
    log.set_defaults(func=cmd_log)

    vacuum = sub.add_parser(
        "vacuum",
        help="delete old runs from a run log and shrink the file",
        description=(
            "Delete the ended runs --retention says (as the log_retention option: "
            "'30 days', '1000 runs' or '30 days, 1000 runs'; open runs are kept), then "
            "rebuild the file without the free space. Safe while a server writes the log "
            "(it waits for the write lock)."
        ),
    )
    vacuum.add_argument("--logs", metavar="PATH", help=logs_help)
    vacuum.add_argument("--retention", metavar="RETENTION", help="what to delete first")
    vacuum.set_defaults(func=cmd_vacuum)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``redengine-nb`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.duration = None
    args.rewrite_argv = argv is None  # only a real command line is restarted by the engine
    if getattr(args, "duration_text", None) is not None:
        try:
            args.duration = positive_duration(args.duration_text)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"--for: {exc}")
    if getattr(args, "n", 1) < 1:
        parser.error("-n must be at least 1")
    out = Output(sys.stdout)
    try:
        code: int = args.func(args, out)
    except BrokenPipeError:
        # A write that did not go through `out` (a setup cell's print): the reader may
        # have gone before serve's own next line noticed it.
        if not (out.gone or reader_closed(sys.stdout)):
            raise
        out.reader_gone()
        return READER_GONE_EXIT
    except ServeError as exc:
        print(f"redengine-nb {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except RunLogError as exc:
        print(f"redengine-nb {args.command}: {exc}", file=sys.stderr)
        return 2
    if out.gone and code == 0:
        return READER_GONE_EXIT
    return code
