"""``redengine-nb serve``: deploy a notebook headless.

``redengine-nb serve NOTEBOOK.ipynb [--logs PATH] [--for DURATION] [--config KEY=VALUE ...]``
runs the notebook's ordinary cells once, in order, in one namespace, registers its
``%%task`` cells as the magic does in a kernel, then runs the scheduler in the foreground
until it is shut down (Ctrl-C, SIGTERM, ``--for``, ``shut_cond`` or a task's
``session.shut_down()``). One line per run is printed as the run ends.

Exit status: 0 after a clean stop; 1 when a setup cell raised or the scheduler stopped on
an error; 2 for bad input (a missing or malformed notebook, a bad ``%%task`` cell, a bad
``--config``, an unreadable run log). See ``docs/serve.md``.

Layer 2: nothing here imports IPython at import time; ``serve`` loads the notebook layer
(and, through it, IPython's input transformer) when it reads a notebook.
"""

from __future__ import annotations

import argparse
import errno
import linecache
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConditionParseError,
    ConfigError,
    RedEngineError,
    RunLogError,
    TaskSetupError,
)
from ..records import Action
from .common import (
    Output,
    ServeError,
    fmt_time,
    format_run_line,
    format_table,
    log_status_rows,
    logs_arg,
    parse_config_pairs,
    printable,
    reader_closed,
)

if TYPE_CHECKING:
    from ..app import RedEngine
    from ..notebook.nbfile import NotebookCell

__all__ = ["cmd_serve", "run_setup", "warning_lines"]

#: Environment variable carrying ``--for``'s deadline across a ``replace``/``relaunch`` restart.
DEADLINE_ENV = "REDENGINE_NB_SERVE_DEADLINE"

#: The ``task_execution`` / ``task_pre_exist`` a served notebook gets, as in a kernel.
SERVE_DEFAULTS: dict[str, Any] = {"task_execution": "thread", "task_pre_exist": "replace"}


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
    from ..notebook import set_app

    previous = set_app(app)

    def restore() -> None:
        set_app(previous)

    return restore


def run_setup(
    app: RedEngine, cells: Sequence[NotebookCell], notebook: Path, out: Output
) -> dict[str, Any]:
    """Run the ordinary cells and register the ``%%task`` cells, in order, in one namespace.

    Raises :class:`ServeError` naming the cell: exit status 2 for a bad ``%%task`` cell or
    a cell that does not compile, 1 for a cell that raised (with its traceback).
    """
    import builtins

    from ..notebook.cells import TaskCellError
    from ..notebook.nbfile import HeadlessShell, NotebookError, to_python
    from ..notebook.registration import register_cell_task

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
        if out.gone:  # the reader of serve's output has gone: stop, as `cat | head` does
            raise BrokenPipeError(errno.EPIPE, "the reader of standard output has gone")
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
            except (
                TaskCellError,
                ConditionParseError,
                ConfigError,
                TaskSetupError,
                ValueError,
            ) as exc:
                # TaskSetupError: a body that does not compile
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
        except BrokenPipeError as exc:
            if reader_closed(sys.stdout):  # the cell printed to a pipe nobody reads
                raise
            raise ServeError(f"{where} raised during setup:\n{_cell_traceback(exc)}", 1) from None
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
    orig = sys.orig_argv
    if old_tail >= 0 and len(orig) > old_tail:
        head = orig[: len(orig) - old_tail]
        if len(head) >= 2 and os.path.exists(head[-1]) and head[-2] != "-m":
            head[-1] = os.path.abspath(head[-1])
        orig[:] = [*head, *tail]
    argv0 = sys.argv[0] if sys.argv else "redengine-nb"
    if os.path.exists(argv0):
        argv0 = os.path.abspath(argv0)
    sys.argv[:] = [argv0, *tail]


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    from ..notebook.nbfile import NotebookError, read_notebook

    notebook = Path(args.notebook).expanduser().resolve()
    try:
        cells = read_notebook(notebook)
    except NotebookError as exc:
        raise ServeError(str(exc), 2) from None
    overrides = parse_config_pairs(args.config or [])
    # The notebook's own log by default: the one its kernel writes (notebook/kernel.py).
    logs = logs_arg(args.logs if args.logs is not None else str(notebook))
    if args.rewrite_argv:
        _canonical_argv(args, notebook, logs)
    deadline = _deadline(notebook, args.duration, carry=args.rewrite_argv)

    from ..app import RedEngine

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


#: The session's warnings serve reports, by name: (attribute, what it is).
WARNINGS = (
    ("clock_step", "clock step"),
    ("store_error", "run log write error (run outcomes are kept and retried)"),
)


def warning_lines(seen: dict[str, str | None], session: object) -> list[str]:
    """Lines for the warnings of ``session`` that appeared, changed or cleared since
    ``seen`` (updated in place): ``serve: warning: …`` / ``serve: cleared: …``."""
    lines = []
    for attr, what in WARNINGS:
        now = getattr(session, attr)
        if now == seen.get(attr):
            continue
        seen[attr] = now
        if now:
            lines.append(f"serve: warning: {what}: {printable(now)}")
        else:
            lines.append(f"serve: cleared: {what}")
    return lines


def _run_scheduler(
    app: RedEngine,
    notebook: Path,
    logs: str,
    deadline: float | None,
    started: float,
    out: Output,
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

    seen: dict[str, str | None] = {}

    def report_warnings() -> None:
        with lock:
            for line in warning_lines(seen, session):
                print(line, file=sys.stderr, flush=True)

    def on_warning(event: str, _task: str | None) -> None:
        if event == "warning_changed":
            report_warnings()

    unsubscribe = session.subscribe(on_event)
    unsubscribe_warnings = session.subscribe(on_warning)
    report_warnings()  # one seen at start (the run log's newest record is in the future)
    # `serve NB | head`: once the reader has gone, stop as on SIGTERM (the runs going on
    # end and are recorded); the lines nobody reads are dropped, the exit status is 141.
    # Not a second stop request when it is a stop line that met the broken pipe.
    out.on_gone(lambda: None if stops else request_stop("the reader of standard output has gone"))

    def on_signal(signum: int, _frame: object) -> None:
        request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    timer: threading.Timer | None = None
    if deadline is not None:
        timer = threading.Timer(max(0.0, deadline - time.time()), request_stop, ("--for",))
        timer.daemon = True
        timer.start()

    names = [t.name for t in session.tasks]
    until = f"until {fmt_time(deadline)}" if deadline is not None else "until stopped"
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
        unsubscribe_warnings()
    conditions = {t.name: str(t.start_cond) for t in session.tasks}
    print("\n" + format_table(log_status_rows(runlog, conditions)), file=out, flush=True)
    return code
