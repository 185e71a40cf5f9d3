"""The kernel's scheduler session: one per kernel, reload-safe, stopped at shutdown.

``%load_ext redengine_nb`` calls :func:`activate`; ``%unload_ext`` calls :func:`deactivate`;
``%reload_ext`` calls both. The :class:`KernelSession` is kept on the shell object (not
only in this module), so that whatever reloads our modules, a kernel never holds two
sessions, and therefore never two scheduler threads:

- the first load creates the app (``in_kernel=True``: thread execution, ``replace`` on a
  name that exists, ``recall`` restarting) and starts its scheduler thread;
- unloading shuts the scheduler down (waiting for its thread) and keeps the app dormant
  on the shell, with its tasks;
- loading again wakes the same app (same tasks, same history) and starts it again.

The run log belongs to the notebook: ``<notebook stem>.redengine_nb.db`` beside it (see
:func:`~redengine_nb.notebook.nbfile.notebook_log_file`), the notebook's path being what
the Jupyter server tells the kernel (``JPY_SESSION_NAME``, also ipykernel's ``__session__``).
``$REDENGINE_NB_LOGS`` (a path or ``:memory:``) chooses another log, possibly shared with
other notebooks. When the kernel does not know its notebook (a console, an old server) the
log is the folder's ``./redengine_nb.db``, and ``%load_ext`` says so.

At kernel shutdown or restart (ipykernel's ``do_shutdown``, with ``atexit`` as a second
net) the scheduler is asked to stop, the runs alive are terminated and, if still open after
a short wait, recorded ``terminate`` ("kernel shutting down") with their output so far; the
open panels say ``disconnected``.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..executors.capture import TailBuffer, current_buffer
from ..records import Action
from .display import CapturedDisplay, DisplayRouter
from .nbfile import notebook_log_file

if TYPE_CHECKING:
    from ..app import RedEngine
    from .widget import Panel

__all__ = [
    "KERNEL_CONFIG",
    "KernelSession",
    "activate",
    "choose_log",
    "current",
    "deactivate",
    "get_app",
    "notebook_path",
]

#: Where a kernel session differs from a plain ``RedEngine()`` (SPEC §6).
KERNEL_CONFIG: dict[str, Any] = {
    "task_execution": "thread",
    "task_pre_exist": "replace",
    "restarting": "recall",
    "in_kernel": True,
}

_SHELL_ATTR = "_redengine_nb_session"
_LOGS_ENV = "REDENGINE_NB_LOGS"
_SESSION_ENV = "JPY_SESSION_NAME"
#: Seconds a kernel shutdown waits for runs to end before recording them ``terminate``.
SHUTDOWN_WAIT = 2.0
SHUTDOWN_REASON = "kernel shutting down"

_lock = threading.RLock()
_current: KernelSession | None = None
_atexit_registered = False


class KernelSession:
    """The app of one kernel, its display routing, and whether the extension is loaded."""

    def __init__(self, shell: Any, app: RedEngine, log_note: str = "") -> None:
        self.shell = shell
        self.app = app
        self.router = DisplayRouter()
        self.loaded = False
        #: Said by the panel under its table (e.g. the log is shared: this session only).
        self.log_note = log_note
        #: Open panels of this session (told when the kernel goes away).
        self.panels: set[Panel] = set()
        self._live: dict[str, TailBuffer] = {}
        self._hooked: Any = None
        self.shut = False
        app.session.add_run_wrapper(self._run_wrapper)
        app.session.subscribe(self._on_event)

    def _on_event(self, event: str, task: str | None) -> None:
        # Emitted from the scheduler thread as its loop begins: detach that thread from
        # the cells, so that nothing it writes lands in the cell executing at the time.
        if (
            event == "scheduler_started"
            and threading.current_thread() is not threading.main_thread()
        ):
            self.router.detach_current_thread()

    @contextmanager
    def _run_wrapper(self, task: Any, run_id: str) -> Iterator[list[CapturedDisplay]]:
        buffer = current_buffer()  # the engine's capture of this run's prints
        if buffer is not None:
            self._live[run_id] = buffer
        try:
            with self.router.capture(run_id) as sink:
                yield sink
        finally:
            self._live.pop(run_id, None)

    def live_output(self, run_id: str) -> str | None:
        """What a live run has printed so far (``None`` when it is not a live run of ours)."""
        buffer = self._live.get(run_id)
        return None if buffer is None else buffer.getvalue()

    def load(self) -> None:
        self.router.install(self.shell)
        self._hook_shutdown()
        self.loaded = True
        self.shut = False
        if not self.app.is_running:
            self.app.start()

    def unload(self) -> None:
        self.loaded = False
        self.stop()
        self.router.uninstall()

    def stop(self) -> None:
        if self.app.is_running:
            self.app.shut_down()

    # -- kernel shutdown ----------------------------------------------------------------
    def _hook_shutdown(self) -> None:
        """Run :meth:`shutdown` first when the front end shuts the kernel down or restarts
        it (ipykernel's ``do_shutdown``: it runs before the kernel answers and exits)."""
        kernel = getattr(self.shell, "kernel", None)
        if kernel is None or self._hooked is kernel:
            return
        original = kernel.do_shutdown

        def do_shutdown(restart: bool) -> Any:
            try:
                self.shutdown()
            except Exception:  # pragma: no cover - never block the kernel's shutdown
                pass
            return original(restart)

        kernel.do_shutdown = do_shutdown
        self._hooked = kernel

    def shutdown(self, reason: str = SHUTDOWN_REASON, wait: float = SHUTDOWN_WAIT) -> None:
        """The kernel goes away: panels say so, the scheduler stops, live runs end.

        Runs are asked to terminate; after ``wait`` seconds, a run of this session still
        open in the log is recorded ``terminate`` with ``reason`` and its output so far (a
        thread cannot be stopped, but the process is about to end). Idempotent."""
        if self.shut:
            return
        self.shut = True
        for panel in list(self.panels):
            try:
                panel.disconnect(f"the kernel shut down ({reason})")
            except Exception:  # pragma: no cover - a closed comm
                pass
        session = self.app.session
        session.shut_down()
        session.terminate_all(f"terminated: {reason}")
        self.app.shut_down(timeout=wait)
        log = self.app.runlog
        try:
            still_open = [r for r in log.open_runs() if session.owns(r.owner)]
        except Exception:  # pragma: no cover - a log that cannot be read at exit
            return
        for record in still_open:
            try:
                log.finish_run(
                    record.run_id,
                    Action.TERMINATE,
                    end=self.app.clock.time(),
                    exc_text=f"terminated: {reason}",
                    output=self.live_output(record.run_id),
                )
            except Exception:  # pragma: no cover - it ended meanwhile
                pass

    def __repr__(self) -> str:
        state = "running" if self.app.is_running else "stopped"
        return f"<KernelSession {state}, {len(self.app.session.tasks)} tasks>"


def notebook_path(shell: Any = None) -> Path | None:
    """The notebook this kernel runs, as the Jupyter server told it (``JPY_SESSION_NAME``,
    or ipykernel's ``__session__``); ``None`` when unknown or not a notebook."""
    name = os.environ.get(_SESSION_ENV)
    if not name and shell is not None:
        value = getattr(shell, "user_ns", {}).get("__session__")
        name = value if isinstance(value, str) else None
    if not name or not name.endswith(".ipynb"):
        return None
    path = Path(name)
    if not path.is_absolute():
        # A server that gives the path from its root: the kernel runs in the notebook's
        # folder.
        path = Path.cwd() / path.name
    return path


def choose_log(shell: Any = None) -> tuple[str | None, str, str]:
    """``(logs, note for the panel, note to print)`` for a new kernel session."""
    explicit = os.environ.get(_LOGS_ENV)
    if explicit:
        return (
            explicit,
            f"run log {explicit} (${_LOGS_ENV}), which other notebooks may share: "
            "this panel shows this session's tasks only",
            "",
        )
    notebook = notebook_path(shell)
    if notebook is not None:
        return str(notebook_log_file(notebook)), "", ""
    from ..runlog import DEFAULT_LOG_FILE

    return (
        None,
        f"run log ./{DEFAULT_LOG_FILE}, the folder's: this panel shows this session's tasks only",
        f"redengine_nb: this kernel does not know which notebook it runs, so the run log is "
        f"the folder's ./{DEFAULT_LOG_FILE} (shared with other notebooks that fall back to "
        f"it). Set ${_LOGS_ENV} to choose a file.",
    )


def _new_app(logs: str | None) -> RedEngine:
    from ..app import RedEngine

    return RedEngine(config=dict(KERNEL_CONFIG), logs=logs)


def history_note(app: RedEngine) -> str:
    """What ``%load_ext`` says when the log has tasks the session has not (yet) registered."""
    names = sorted(set(app.runlog.task_names()) - {t.name for t in app.session.tasks})
    if not names:
        return ""
    count = len(names)
    shown = ", ".join(names[:5]) + (", …" if count > 5 else "")
    verb = "have" if count != 1 else "has"
    return (
        f"redengine_nb: {count} task{'s' if count != 1 else ''} of this notebook {verb} "
        f"history ({shown}); run their cells to schedule them again "
        "(%task log NAME shows their runs)"
    )


def activate(shell: Any) -> KernelSession:
    """Load the extension into ``shell``: create or wake its session and start it."""
    global _current, _atexit_registered
    with _lock:
        ks: KernelSession | None = getattr(shell, _SHELL_ATTR, None)
        if ks is None:
            logs, panel_note, printed = choose_log(shell)
            ks = KernelSession(shell, _new_app(logs), panel_note)
            setattr(shell, _SHELL_ATTR, ks)
            for line in (printed, history_note(ks.app)):
                if line:
                    print(line)
        if _current is not None and _current is not ks:
            # Another shell's session in this process (tests): never two threads.
            _current.unload()
        ks.load()
        _current = ks
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True
        return ks


def deactivate(shell: Any, *, forget: bool = False) -> None:
    """Unload the extension from ``shell``: stop the scheduler thread, keep the tasks.

    With ``forget``, the session is dropped too (the next load starts an empty one).
    """
    global _current
    with _lock:
        ks: KernelSession | None = getattr(shell, _SHELL_ATTR, None)
        if ks is not None:
            ks.unload()
            if forget:
                delattr(shell, _SHELL_ATTR)
                ks.app.runlog.close()
        if _current is ks:
            _current = None


def current() -> KernelSession | None:
    """The loaded kernel session of this process, if any."""
    return _current


def get_app() -> RedEngine:
    """The app of this kernel's scheduler session (``%load_ext redengine_nb`` first)."""
    ks = _current
    if ks is None or not ks.loaded:
        raise RuntimeError(
            "the redengine_nb extension is not loaded in this kernel: run "
            "'%load_ext redengine_nb' first (or create your own app with "
            "'from redengine_nb import RedEngine; app = RedEngine()')"
        )
    return ks.app


def _at_exit() -> None:
    """Interpreter exit (when the kernel's shutdown hook did not run first): the same."""
    ks = _current
    if ks is None:
        return
    try:
        ks.app.config.instant_shutdown = True
    except Exception:  # pragma: no cover - shutting down whatever the config says
        pass
    try:
        ks.shutdown()
    except Exception:  # pragma: no cover - never fail interpreter exit
        pass
