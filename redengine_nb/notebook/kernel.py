"""The kernel's scheduler session: one per kernel, reload-safe, stopped at shutdown.

``%load_ext redengine_nb`` calls :func:`activate`; ``%unload_ext`` calls :func:`deactivate`;
``%reload_ext`` calls both. The :class:`KernelSession` is kept on the shell object (not
only in this module), so that whatever reloads our modules, a kernel never holds two
sessions, and therefore never two scheduler threads:

- the first load creates the app (``in_kernel=True``: thread execution, ``replace`` on a
  name that exists, ``recall`` restarting) and starts its scheduler thread;
- unloading shuts the scheduler down (waiting for its thread) and keeps the app dormant
  on the shell, with its tasks;
- loading again wakes the same app (same tasks, same history) and starts it again;
- at interpreter exit (kernel shutdown) an ``atexit`` handler shuts it down, terminating
  running tasks, so no child process outlives the kernel.

The run log is ``$REDENGINE_NB_LOGS`` when set (a path or ``:memory:``), else the
engine's default.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import TYPE_CHECKING, Any

from .display import DisplayRouter

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ..app import RedEngine

__all__ = ["KERNEL_CONFIG", "KernelSession", "activate", "current", "deactivate", "get_app"]

#: Where a kernel session differs from a plain ``RedEngine()`` (SPEC §6).
KERNEL_CONFIG: dict[str, Any] = {
    "task_execution": "thread",
    "task_pre_exist": "replace",
    "restarting": "recall",
    "in_kernel": True,
}

_SHELL_ATTR = "_redengine_nb_session"
_LOGS_ENV = "REDENGINE_NB_LOGS"

_lock = threading.RLock()
_current: KernelSession | None = None
_atexit_registered = False


class KernelSession:
    """The app of one kernel, its display routing, and whether the extension is loaded."""

    def __init__(self, shell: Any, app: RedEngine) -> None:
        self.shell = shell
        self.app = app
        self.router = DisplayRouter()
        self.loaded = False
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

    def _run_wrapper(self, task: Any, run_id: str) -> AbstractContextManager[Any]:
        return self.router.capture(run_id)

    def load(self) -> None:
        self.router.install(self.shell)
        self.loaded = True
        if not self.app.is_running:
            self.app.start()

    def unload(self) -> None:
        self.loaded = False
        self.stop()
        self.router.uninstall()

    def stop(self) -> None:
        if self.app.is_running:
            self.app.shut_down()

    def __repr__(self) -> str:
        state = "running" if self.app.is_running else "stopped"
        return f"<KernelSession {state}, {len(self.app.session.tasks)} tasks>"


def _new_app() -> RedEngine:
    from ..app import RedEngine

    logs = os.environ.get(_LOGS_ENV) or None
    return RedEngine(config=dict(KERNEL_CONFIG), logs=logs)


def activate(shell: Any) -> KernelSession:
    """Load the extension into ``shell``: create or wake its session and start it."""
    global _current, _atexit_registered
    with _lock:
        ks: KernelSession | None = getattr(shell, _SHELL_ATTR, None)
        if ks is None:
            ks = KernelSession(shell, _new_app())
            setattr(shell, _SHELL_ATTR, ks)
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
    """Kernel shutdown: stop the scheduler and the runs it owns."""
    ks = _current
    if ks is None:
        return
    try:
        ks.app.config.instant_shutdown = True
    except Exception:  # pragma: no cover - shutting down whatever the config says
        pass
    try:
        ks.stop()
    except Exception:  # pragma: no cover - never fail interpreter exit
        pass
