"""``redengine-nb``: deploy a notebook headless and read its run log.

- ``redengine-nb serve NOTEBOOK.ipynb [--logs PATH] [--for DURATION] [--config KEY=VALUE ...]``
  runs the notebook's ordinary cells once, in order, in one namespace, registers its
  ``%%task`` cells as the magic does in a kernel, then runs the scheduler in the foreground
  until it is shut down (Ctrl-C, SIGTERM, ``--for``, ``shut_cond`` or a task's
  ``session.shut_down()``). One line per run is printed as the run ends.
- ``redengine-nb status [--logs PATH]``: the status table of a run log.
- ``redengine-nb log TASK [--logs PATH] [-n N]``: a task's recent runs, output and tracebacks.

Exit status: 0 after a clean stop; 1 when a setup cell raised or the scheduler stopped on
an error; 2 for bad input (a missing or malformed notebook, a bad ``%%task`` cell, a bad
``--config``, an unreadable run log). See ``docs/serve.md``.

Layer 2: nothing here imports IPython at import time; ``serve`` loads the notebook layer
(and, through it, IPython's input transformer) when it reads a notebook.
"""

from __future__ import annotations

import argparse
import difflib
import linecache
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ConditionParseError, ConfigError, RedEngineError, RunLogError
from .records import Action, RunRecord
from .timetext import parse_duration

if TYPE_CHECKING:
    from .app import RedEngine
    from .notebook.nbfile import NotebookCell
    from .runlog.base import RunLog

__all__ = ["ServeError", "format_run_line", "log_status_rows", "main", "parse_config_pairs"]

#: Environment variable carrying ``--for``'s deadline across a ``replace``/``relaunch`` restart.
DEADLINE_ENV = "REDENGINE_NB_SERVE_DEADLINE"

#: The ``task_execution`` / ``task_pre_exist`` a served notebook gets, as in a kernel.
SERVE_DEFAULTS: dict[str, Any] = {"task_execution": "thread", "task_pre_exist": "replace"}


class ServeError(RedEngineError):
    """``serve`` cannot go on; ``exit_code`` says how the process exits."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- small helpers ------------------------------------------------------------------------


def _fmt_time(ts: float | None, *, date: bool = True) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def _fmt_runtime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m{secs:04.1f}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h{int(minutes):02d}m{int(secs):02d}s"


def format_run_line(record: RunRecord) -> str:
    """One progress line: ``time  task  status  runtime`` (fixed columns, plain text)."""
    when = record.end if record.end is not None else record.time
    line = (
        f"{_fmt_time(when)}  {record.task_name:<24} {record.action.value:<9} "
        f"{_fmt_runtime(record.runtime):>9}"
    )
    if record.exc_text:
        last = [s for s in record.exc_text.strip().splitlines() if s.strip()]
        if last:
            line += f"  {last[-1].strip()[:120]}"
    return line


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    return text


def parse_config_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``['max_process_count=2', 'instant_shutdown=true', 'timeout=30 minutes']`` → a dict.

    Values: ``true``/``false`` (also yes/no, on/off), ``none``, integers, decimals, else
    text (durations and conditions stay text; the app validates them).
    """
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ServeError(f"--config {pair!r}: expected KEY=VALUE, e.g. instant_shutdown=true")
        config[key.strip()] = _parse_value(value)
    return config


def _positive_duration(text: str) -> float:
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be positive")
    return seconds


def _logs_arg(logs: str | None) -> str:
    from .runlog import DEFAULT_LOG_FILE

    text = logs if logs is not None else DEFAULT_LOG_FILE
    if text == ":memory:" or "://" in text:
        return text
    return str(Path(text).expanduser().resolve())


def _open_existing_log(logs: str | None) -> RunLog:
    from .runlog import open_runlog

    location = _logs_arg(logs)
    if location != ":memory:" and "://" not in location and not Path(location).exists():
        hint = "" if logs is not None else " (the default; pass --logs PATH for another)"
        raise ServeError(
            f"no run log at {location}{hint}: serve writes one when it runs a notebook", 1
        )
    return open_runlog(location)


# -- the status table from a run log ------------------------------------------------------


def log_status_rows(
    runlog: RunLog, conditions: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per task with records (and per task in ``conditions``), read from the log.

    Works from any process: it needs only the run log, not the session that wrote it.
    """
    runlog.refresh()
    # The session's tasks in their order, then any other task the log knows, by name.
    names = list(conditions or {})
    names += sorted(n for n in runlog.task_names() if n not in (conditions or {}))
    rows: list[dict[str, Any]] = []
    for name in names:
        newest = runlog.records(task=name, limit=1)
        last = newest[-1] if newest else None
        status = None if last is None else last.action.value
        if status == Action.RUN.value:
            status = "running"
        finished = [r for r in runlog.records(task=name, limit=5) if r.runtime is not None]
        row: dict[str, Any] = {"task": name}
        if conditions is not None:
            row["condition"] = conditions.get(name, "-")
        row.update(
            status=status or "-",
            last_run=_fmt_time(runlog.last(name, Action.RUN)),
            last_success=_fmt_time(runlog.last(name, Action.SUCCESS)),
            last_fail=_fmt_time(runlog.last(name, Action.FAIL)),
            runtime=_fmt_runtime(finished[-1].runtime if finished else None),
            runs=runlog.count(name),
            fails=runlog.count(name, Action.FAIL),
        )
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text columns (readable in a terminal and in a service log)."""
    if not rows:
        return "(no runs recorded)"
    headers = list(rows[0])
    cells = [[str(row.get(h, "")) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    return "\n".join(lines)


# -- status / log commands ----------------------------------------------------------------


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    runlog = _open_existing_log(args.logs)
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
            "state": "expired" if lease.expired else "alive",
            "started": _fmt_time(lease.started),
            "renewed": _fmt_time(lease.renewed),
            "expires": _fmt_time(lease.expires),
            "running": owned.get(lease.lease_id, 0),
            "info": lease.info or "-",
        }
        for lease in leases(now)
    ]


def _indent(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def cmd_log(args: argparse.Namespace, out: TextIO) -> int:
    runlog = _open_existing_log(args.logs)
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
                f"- run {rec.run_id}: {status}, started {_fmt_time(rec.start)}, "
                f"ended {_fmt_time(rec.end)}, runtime {_fmt_runtime(rec.runtime)}",
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


# -- serve --------------------------------------------------------------------------------


def _cell_traceback(exc: BaseException) -> str:
    """The traceback of an exception raised by a cell, without serve's own frame."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _install_app(app: RedEngine) -> Callable[[], None]:
    """Make ``redengine_nb.notebook.get_app()`` return the served app (cells may call it).

    Returns a function that undoes it (for in-process callers such as tests).
    """
    from .notebook import set_app

    previous = set_app(app)

    def restore() -> None:
        set_app(previous)

    return restore


def run_setup(
    app: RedEngine, cells: Sequence[NotebookCell], notebook: Path, out: TextIO
) -> dict[str, Any]:
    """Run the ordinary cells and register the ``%%task`` cells, in order, in one namespace.

    Raises :class:`ServeError` naming the cell: exit status 2 for a bad ``%%task`` cell or
    a cell that does not compile, 1 for a cell that raised (with its traceback).
    """
    import builtins

    from .notebook.cells import TaskCellError
    from .notebook.magics import register_cell_task
    from .notebook.nbfile import HeadlessShell, NotebookError, to_python

    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "__file__": str(notebook),
        "app": app,
    }
    current: list[NotebookCell] = []

    def on_skip(what: str) -> None:
        where = current[-1].label if current else "a cell"
        print(f"serve: {where}: skipped {what} (not run headless)", file=out)

    shell = HeadlessShell(app.session, on_skip=on_skip)
    shell.user_ns = namespace
    namespace["get_ipython"] = lambda: shell

    for cell in cells:
        if cell.skipped:
            continue
        current.append(cell)
        where = f"{notebook}, {cell.label}"
        task_cell = cell.task
        if task_cell is not None:
            line, body = task_cell
            try:
                task = register_cell_task(
                    app, line, body, cell_id=cell.cell_id, namespace=namespace
                )
            except (TaskCellError, ConditionParseError, ConfigError, ValueError) as exc:
                raise ServeError(f"{where}: %%task {line}\n{exc}", 2) from None
            print(
                f"serve: {cell.label}: task {task.name!r} ({task.start_cond})",
                file=out,
            )
            continue
        shell.current_cell = cell.source
        filename = f"<{notebook.name} {cell.label}>"
        try:
            code = to_python(cell.source)
            compiled = compile(code, filename, "exec")
        except SyntaxError as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc))
            raise ServeError(f"{where} does not compile:\n{detail}", 2) from None
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        out.flush()
        try:
            exec(compiled, namespace)
        except NotebookError as exc:
            raise ServeError(f"{where}: {exc}", 2) from None
        except (Exception, SystemExit) as exc:
            raise ServeError(f"{where} raised during setup:\n{_cell_traceback(exc)}", 1) from None
        finally:
            sys.stdout.flush()
    return namespace


def _deadline(notebook: Path, duration: float | None, *, carry: bool) -> float | None:
    """``--for``'s deadline, carried (``carry``) over a restart of this serve's process."""
    if duration is None:
        return None
    if not carry:
        return time.time() + duration
    saved = os.environ.get(DEADLINE_ENV, "")
    path, _, when = saved.rpartition("|")
    if path == str(notebook):
        try:
            return float(when)
        except ValueError:
            pass
    deadline = time.time() + duration
    os.environ[DEADLINE_ENV] = f"{notebook}|{deadline}"
    return deadline


def _canonical_argv(args: argparse.Namespace, notebook: Path, logs: str) -> None:
    """Rewrite the command line with absolute paths before moving to the notebook's folder.

    A ``replace``/``relaunch``/``fresh`` restart starts ``sys.orig_argv`` again, from the
    notebook's folder: relative paths in it would then point elsewhere. Only the tail that
    is ``sys.argv`` is rewritten (interpreter options such as ``-m`` stay as they were).
    """
    tail = ["serve", str(notebook), "--logs", logs]
    if args.duration is not None:
        tail += ["--for", args.duration_text]
    for pair in args.config or []:
        tail += ["--config", pair]
    old_tail = len(sys.argv) - 1
    orig = getattr(sys, "orig_argv", None)
    if isinstance(orig, list) and old_tail >= 0 and len(orig) > old_tail:
        head = orig[: len(orig) - old_tail]
        if len(head) >= 2 and os.path.exists(head[-1]) and head[-2] != "-m":
            head[-1] = os.path.abspath(head[-1])
        orig[:] = [*head, *tail]
    argv0 = sys.argv[0] if sys.argv else "redengine-nb"
    if os.path.exists(argv0):
        argv0 = os.path.abspath(argv0)
    sys.argv[:] = [argv0, *tail]


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from .notebook.nbfile import NotebookError, read_notebook

    notebook = Path(args.notebook).expanduser().resolve()
    try:
        cells = read_notebook(notebook)
    except NotebookError as exc:
        raise ServeError(str(exc), 2) from None
    overrides = parse_config_pairs(args.config or [])
    logs = _logs_arg(args.logs)
    if args.rewrite_argv:
        _canonical_argv(args, notebook, logs)
    deadline = _deadline(notebook, args.duration, carry=args.rewrite_argv)

    from .app import RedEngine

    try:
        app = RedEngine(config={**SERVE_DEFAULTS, **overrides}, logs=logs)
    except ConfigError as exc:
        raise ServeError(f"--config: {exc}", 2) from None
    except RunLogError as exc:
        raise ServeError(str(exc), 2) from None

    # Like a kernel: the notebook's folder is the working folder and is importable.
    old_cwd = os.getcwd()
    os.chdir(notebook.parent)
    sys.path.insert(0, str(notebook.parent))
    uninstall_app = _install_app(app)
    started = time.time()
    try:
        run_setup(app, cells, notebook, out)
        for key, value in overrides.items():  # the command line wins over the notebook
            setattr(app.config, key, value)
        if app.is_running:  # a cell called app.start(): serve runs it in the foreground
            print("serve: the notebook started the scheduler; serve takes it over", file=out)
            app.shut_down()
        return _run_scheduler(app, notebook, logs, deadline, started, out)
    finally:
        try:
            app.shut_down()
        except Exception:  # pragma: no cover - best effort at exit
            pass
        runlog = getattr(app, "runlog", None)
        if runlog is not None:
            runlog.close()
        uninstall_app()
        os.chdir(old_cwd)
        if str(notebook.parent) in sys.path:
            sys.path.remove(str(notebook.parent))


def _run_scheduler(
    app: RedEngine,
    notebook: Path,
    logs: str,
    deadline: float | None,
    started: float,
    out: TextIO,
) -> int:
    session = app.session
    runlog = app.runlog
    lock = threading.Lock()
    printed: set[str] = set()

    def report(task_name: str) -> None:
        with lock:
            for rec in runlog.records(task=task_name, limit=5):
                if rec.action is Action.RUN or rec.run_id in printed:
                    continue
                if rec.end is not None and rec.end < started:
                    continue
                printed.add(rec.run_id)
                print(format_run_line(rec), file=out, flush=True)

    stops = 0
    stop_wanted = False
    scheduler_up = False
    state_lock = threading.Lock()

    def request_stop(reason: str) -> None:
        nonlocal stops, stop_wanted
        stops += 1
        if stops == 1:
            print(f"serve: stopping ({reason})", file=out, flush=True)
        else:
            print(f"serve: stopping now ({reason}): terminating running tasks", file=out)
            try:
                app.config.instant_shutdown = True
            except Exception:  # pragma: no cover
                pass
            # The scheduler may already be waiting for the runs: end them.
            session.terminate_all(f"terminated: serve was asked to stop again ({reason})")
        with state_lock:
            stop_wanted = True
            up = scheduler_up
        if up:  # else the scheduler_started event passes the request on
            threading.Thread(target=app.shut_down, name="redengine-nb-stop", daemon=True).start()

    def report_crashes() -> None:
        # Runs a dead serve left open are marked crash when the scheduler starts.
        with lock:
            for rec in runlog.records(action=Action.CRASH, since=started - 1):
                if rec.run_id not in printed:
                    printed.add(rec.run_id)
                    note = "  (left open by a process that died)"
                    print(format_run_line(rec) + note, file=out, flush=True)

    def on_event(event: str, task_name: str | None) -> None:
        nonlocal scheduler_up
        if event == "scheduler_started":
            # A stop asked for before the loop began (a long setup, a signal) is kept.
            with state_lock:
                scheduler_up = True
                if stop_wanted:
                    session.shut_down()
            try:
                report_crashes()
            except Exception as exc:  # pragma: no cover
                print(f"serve: cannot read crashed runs: {exc}", file=out)
        if event == "scheduler_stopped":
            with state_lock:
                scheduler_up = False
            # The last runs before a stop (or a restart that replaces this process).
            for task in session.tasks:
                try:
                    report(task.name)
                except Exception:  # pragma: no cover
                    pass
        if event == "run_ended" and task_name is not None:
            try:
                report(task_name)
            except Exception as exc:  # never let the progress line stop the scheduler
                print(f"serve: cannot read the run of {task_name!r}: {exc}", file=out)

    unsubscribe = session.subscribe(on_event)

    def on_signal(signum: int, _frame: object) -> None:
        request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    timer: threading.Timer | None = None
    if deadline is not None:
        timer = threading.Timer(max(0.0, deadline - time.time()), request_stop, ("--for",))
        timer.daemon = True
        timer.start()

    names = [t.name for t in session.tasks]
    until = f"until {_fmt_time(deadline)}" if deadline is not None else "until stopped"
    print(
        f"serve: {notebook.name}: {len(names)} task(s): {', '.join(names) or '-'}\n"
        f"serve: run log {logs}; {until} (Ctrl-C or SIGTERM stops it)",
        file=out,
        flush=True,
    )
    code = 0
    try:
        app.run()
    except RedEngineError as exc:
        print(f"serve: the scheduler stopped on an error:\n{exc}", file=out, flush=True)
        code = 1
    finally:
        if timer is not None:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for task in session.tasks:
            try:
                report(task.name)
            except Exception:  # pragma: no cover
                pass
        unsubscribe()
    conditions = {t.name: str(t.start_cond) for t in session.tasks}
    print("\n" + format_table(log_status_rows(runlog, conditions)), file=out, flush=True)
    return code


# -- the command line ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redengine-nb",
        description="Deploy a scheduling notebook headless, and read its run log.",
        epilog="See 'redengine-nb COMMAND --help' and docs/serve.md.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"redengine-nb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    logs_help = "the run log: a SQLite file (default: ./redengine_nb.db) or ':memory:'"
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``redengine-nb`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.duration = None
    args.rewrite_argv = argv is None  # only a real command line is restarted by the engine
    if getattr(args, "duration_text", None) is not None:
        try:
            args.duration = _positive_duration(args.duration_text)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"--for: {exc}")
    if getattr(args, "n", 1) < 1:
        parser.error("-n must be at least 1")
    out = sys.stdout
    try:
        code: int = args.func(args, out)
    except ServeError as exc:
        print(f"redengine-nb {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except RunLogError as exc:
        print(f"redengine-nb {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
