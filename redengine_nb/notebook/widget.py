"""The panel: a live anywidget view of a scheduler session, with controls.

A thin widget over :mod:`redengine_nb.notebook.viewmodel`. It subscribes to the session's
events (which arrive on the scheduler thread, or any thread), and pushes a fresh snapshot to
the front end at most every ``throttle`` seconds, and only when the snapshot changed. Button
clicks arrive as custom messages (possibly on another kernel thread) and become session
calls. One re-entrant lock guards the widget's own state (the last snapshot sent, the
selected task, the condition errors) so pushes and clicks never interleave half-way.

The front end is ``js/panel.js`` + ``js/panel.css``, shipped inside the package as
``redengine_nb/static/`` (no CDN: it works offline).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..errors import ConditionParseError
from .viewmodel import RUNS_LIMIT, TIMELINE_WINDOW, Snapshot, build_snapshot

__all__ = ["Panel", "panel"]

#: Seconds between two pushes to the front end, at least.
DEFAULT_THROTTLE = 0.25


def _static(name: str) -> str:
    """A front-end file: from the installed package, else from the repository's ``js/``."""
    packaged = resources.files("redengine_nb").joinpath("static", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    repo = Path(__file__).resolve().parents[2] / "js" / name
    if repo.is_file():
        return repo.read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"the panel's front-end file {name!r} is missing from the package "
        "(redengine_nb/static/) and from the repository's js/ folder; reinstall redengine_nb"
    )


def _resolve(source: Any) -> tuple[Any, Any]:
    """(session, app) from an app (``.session``) or a session (``.app``)."""
    session = getattr(source, "session", None)
    if session is not None:
        return session, source
    return source, getattr(source, "app", None)


class Panel(anywidget.AnyWidget):
    """A live view of a session: status table, timeline, controls, recent runs."""

    _esm = traitlets.Unicode(_static("panel.js")).tag(sync=True)
    _css = traitlets.Unicode(_static("panel.css")).tag(sync=True)

    #: The snapshot the front end renders (``viewmodel.Snapshot.data``).
    data = traitlets.Dict().tag(sync=True)
    #: The task whose recent runs are shown (set by clicking a row).
    selected = traitlets.Unicode("").tag(sync=True)
    #: Condition errors by task name, shown beside the condition field.
    errors = traitlets.Dict().tag(sync=True)
    #: The last control's failure, if any (empty when it went well).
    message = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        source: Any,
        *,
        throttle: float = DEFAULT_THROTTLE,
        window: float = TIMELINE_WINDOW,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._session, self._app = _resolve(source)
        self._throttle = max(0.0, float(throttle))
        self._window = float(window)
        self._lock = threading.RLock()
        self._timer_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._last: Snapshot | None = None
        self._last_push = 0.0
        self._closed = False
        self.on_msg(self._on_custom_msg)
        self.observe(self._on_selected, names="selected")
        subscribe = getattr(self._session, "subscribe", None)
        self._unsubscribe: Callable[[], Any] | None = (
            subscribe(self._on_event) if callable(subscribe) else None
        )
        self.refresh()

    # --- reading the session -------------------------------------------------------------

    @property
    def session(self) -> Any:
        return self._session

    def _now(self) -> datetime:
        for owner in (self._app, self._session):
            clock = getattr(owner, "clock", None)
            if clock is not None:
                now = clock.now()
                assert isinstance(now, datetime)
                return now
        return datetime.now(UTC)

    def _scheduler_running(self) -> bool:
        for owner in (self._app, self._session):
            value = getattr(owner, "is_running", None)
            if value is not None:
                return bool(value() if callable(value) else value)
        return False

    def _log(self, **query: Any) -> Any:
        getter = self._session.get_task_log
        try:
            return getter(**query)
        except TypeError:
            query.pop("limit", None)
            return getter(**query)

    def snapshot(self) -> Snapshot:
        """The panel's data as of now (reads the session; sends nothing)."""
        now = self._now()
        selected = self.selected
        log = self._log(since=now - timedelta(seconds=self._window))
        runs = self._log(task=selected, limit=RUNS_LIMIT) if selected else None
        return build_snapshot(
            self._session.status(),
            log,
            now=now,
            scheduler_running=self._scheduler_running(),
            selected=selected,
            runs=runs,
            window=self._window,
            cluster=self._cluster(),
        )

    def _cluster(self) -> Any:
        info = getattr(self._session, "dask_cluster", None)  # a session without Dask runs
        return info() if callable(info) else None

    # --- pushing -------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Send a fresh snapshot now if it differs from the last one sent; True if sent."""
        with self._lock:
            if self._closed:
                return False
            snap = self.snapshot()
            if not force and snap.same_as(self._last):
                return False
            self._last = snap
            self._last_push = time.monotonic()
            self.data = snap.data
            return True

    def _on_event(self, event: str, task_name: Any = None) -> None:
        """Session callback (any thread): schedule one throttled refresh."""
        if self._closed:
            return
        if self._throttle == 0:
            self._safe_refresh()
            return
        with self._timer_lock:
            if self._timer is not None:
                return  # a push is already on its way; it will read the newest state
            delay = max(0.0, self._last_push + self._throttle - time.monotonic())
            timer = threading.Timer(delay, self._timer_fired)
            timer.daemon = True
            self._timer = timer
        timer.start()

    def _timer_fired(self) -> None:
        with self._timer_lock:
            self._timer = None
        self._safe_refresh()

    def _safe_refresh(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # a broken read must not kill the scheduler thread
            with self._lock:
                self.message = f"panel refresh failed: {type(exc).__name__}: {exc}"

    def _on_selected(self, change: dict[str, Any]) -> None:
        self._safe_refresh()

    # --- controls ------------------------------------------------------------------------

    def _on_custom_msg(self, widget: Any, content: Any, buffers: Any = None) -> None:
        if not isinstance(content, dict):
            return
        self.act(str(content.get("action", "")), content.get("task"), content.get("text"))

    def act(self, action: str, task: Any = None, text: Any = None) -> None:
        """Carry out one control (what a button click sends); errors go to ``message``."""
        name = "" if task is None else str(task)
        try:
            self._do(action, name, text)
        except ConditionParseError as exc:
            with self._lock:
                self.errors = {**self.errors, name: str(exc)}
            ok = False
        except Exception as exc:
            ok = False
            with self._lock:
                target = f" {name!r}" if name else ""
                self.message = f"{action}{target} failed: {type(exc).__name__}: {exc}"
        else:
            with self._lock:
                self.message = ""
            ok = True
        self._safe_refresh()
        self._reply(action, name, ok=ok)

    def _reply(self, action: str, name: str, *, ok: bool) -> None:
        """Tell the front end how a control went (it keeps a rejected condition's text)."""
        if action == "condition":
            self.send({"reply": action, "task": name, "ok": ok})

    def _do(self, action: str, name: str, text: Any) -> None:
        session, app = self._session, self._app
        if action == "start":
            (app or session).start()
        elif action == "stop":
            (app or session).shut_down()
        elif action == "restart":
            session.restart()
        elif action == "select":
            with self._lock:
                self.selected = name
        elif action in ("run", "enable", "disable", "terminate", "delete", "condition"):
            task = session[name]
            if action == "run":
                task.run()
            elif action in ("enable", "disable"):
                task.disabled = action == "disable"
            elif action == "terminate":
                task.terminate()
            elif action == "delete":
                task.delete()
                with self._lock:
                    if self.selected == name:
                        self.selected = ""
            else:
                task.start_cond = "" if text is None else str(text)
                with self._lock:
                    self.errors = {k: v for k, v in self.errors.items() if k != name}
        else:
            raise ValueError(f"unknown panel action {action!r}")

    # --- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening to the session, then close the widget."""
        with self._lock:
            self._closed = True
        with self._timer_lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        super().close()


def panel(source: Any = None, **kwargs: Any) -> Panel:
    """A :class:`Panel` over ``source`` (an app or a session); ``None`` is the kernel's app.

    In a notebook, the returned widget displays itself as a cell's last value.
    """
    if source is None:
        from . import get_app  # raises, naming %load_ext, when no kernel session exists

        source = get_app()
    return Panel(source, **kwargs)
