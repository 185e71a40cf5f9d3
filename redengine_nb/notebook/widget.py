"""The panel: a live anywidget view of a scheduler session, with controls.

A thin widget over :mod:`.reads` (typed reads of the session) and :mod:`.viewmodel` (the
shapes of :mod:`.protocol`). It subscribes to the session's events (which arrive on the
scheduler thread, or any thread) and pushes a fresh snapshot to the front end at most every
``throttle`` seconds, and only when the snapshot changed. While the selected task has a live
run, it looks again once a second, so the run's output so far streams in. Button clicks
arrive as custom messages (possibly on another kernel thread) and become session calls that
only *ask* (stop, restart, terminate): the kernel never blocks on a click, and the panel
shows ``stopping…`` / ``restarting…`` / ``terminating…`` until it has happened. One
re-entrant lock guards the widget's own state so pushes and clicks never interleave.

The front end is ``js/panel.js`` + ``js/panel.css``, shipped inside the package as
``redengine_nb/static/`` (no CDN: it works offline).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from .._engine.session import Session
from .._engine.tasks import CodeTask
from ..app import RedEngine
from ..errors import ConditionParseError
from .protocol import CONSTANTS, DisplayItem, SchedulerState
from .reads import SessionReads
from .viewmodel import (
    HORIZON,
    RUNS_LIMIT,
    TIMELINE_RUNS,
    Snapshot,
    build_snapshot,
    cluster_item,
    run_items,
    scheduler_items,
)

if TYPE_CHECKING:
    from .kernel import KernelSession

__all__ = ["Panel", "panel"]

#: Seconds between two pushes to the front end, at least.
DEFAULT_THROTTLE = 0.25
#: Seconds between two looks at a live run's output while it is shown.
LIVE_INTERVAL = 1.0
#: Seconds between two looks at the schedulers on a shared log and at the Dask cluster
#: while the panel shows them (nothing in the session says when another scheduler's
#: lease runs out, or when a worker joins); a look sends only what changed.
FLEET_INTERVAL = 10.0
#: Characters of one rich display sent to the front end at most.
DISPLAY_LIMIT = 200_000

#: Said when the panel changes the condition of a ``%%task`` cell's task.
CELL_CONDITION_NOTE = (
    "{name!r} now starts on '{after}' until the kernel restarts; its cell still says "
    "'{before}'. To keep the new condition, make the cell's first line:\n%%task {after}"
)

THREAD_TERMINATE_NOTE = (
    "{name!r} runs in a thread, which cannot be stopped mid-statement: the run is recorded "
    "'terminate', but its code goes on until it returns. Tasks that must stop at once: "
    "--execution process (its process ends within a second)."
)


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


def _resolve(source: RedEngine | Session) -> tuple[Session, RedEngine | None]:
    if isinstance(source, RedEngine):
        return source.session, source
    if isinstance(source, Session):
        app = source.app
        return source, app if isinstance(app, RedEngine) else None
    raise TypeError(
        f"panel() shows a RedEngine app or its session, not {type(source).__name__}; "
        "call panel() with no argument for this kernel's app"
    )


def display_item(data: dict[str, Any]) -> DisplayItem:
    """What the front end shows for one display's MIME bundle (bounded)."""
    html = data.get("text/html")
    if isinstance(html, str):
        return DisplayItem(kind="html", content=html[:DISPLAY_LIMIT])
    for mime in ("image/png", "image/jpeg", "image/gif"):
        image = data.get(mime)
        if isinstance(image, bytes):
            image = base64.b64encode(image).decode("ascii")
        if isinstance(image, str) and len(image) <= DISPLAY_LIMIT:
            return DisplayItem(kind="image", content=f"data:{mime};base64,{image.strip()}")
    plain = data.get("text/plain")
    return DisplayItem(kind="text", content=str(plain or "")[:DISPLAY_LIMIT])


class Panel(anywidget.AnyWidget):
    """A live view of a session: status table, timeline, controls, recent runs."""

    _esm = traitlets.Unicode(_static("panel.js")).tag(sync=True)
    _css = traitlets.Unicode(_static("panel.css")).tag(sync=True)

    #: The snapshot the front end renders (a ``protocol.PanelData``).
    data = traitlets.Dict().tag(sync=True)
    #: The protocol's constants (colours, time units, zooms): read by the front end.
    protocol = traitlets.Dict(CONSTANTS).tag(sync=True)
    #: The task whose recent runs are shown (set by clicking a row).
    selected = traitlets.Unicode("").tag(sync=True)
    #: Condition errors by task name, shown beside the condition field.
    errors = traitlets.Dict().tag(sync=True)
    #: The last control's outcome when it needs saying (a failure, or a note).
    message = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        source: RedEngine | Session,
        *,
        throttle: float = DEFAULT_THROTTLE,
        horizon: float = HORIZON,
        kernel_session: KernelSession | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._session, self._app = _resolve(source)
        self._reads = SessionReads(self._session, self._app)
        self._kernel = kernel_session
        self._throttle = max(0.0, float(throttle))
        self._horizon = float(horizon)
        self._lock = threading.RLock()
        self._timer_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._timer_due = 0.0
        self._last: Snapshot | None = None
        self._last_push = 0.0
        self._closed = False
        self._disconnected = False
        self._terminating: set[str] = set()
        self.on_msg(self._on_custom_msg)
        self.observe(self._on_selected, names="selected")
        self._unsubscribe: Callable[[], None] | None = self._session.subscribe(self._on_event)
        if kernel_session is not None:
            kernel_session.panels.add(self)
        self.refresh()

    # --- reading the session -------------------------------------------------------------

    @property
    def session(self) -> Session:
        return self._session

    def _note(self) -> str:
        return "" if self._kernel is None else self._kernel.log_note

    def _displays(self, run_id: str) -> list[DisplayItem]:
        if self._kernel is None:
            return []
        return [display_item(d.data) for d in self._kernel.router.displays(run_id)]

    def _live_output(self, run_id: str) -> str | None:
        return None if self._kernel is None else self._kernel.live_output(run_id)

    def snapshot(self) -> Snapshot:
        """The panel's data as of now (reads the session; sends nothing)."""
        reads = self._reads
        now, tz = reads.now(), reads.tz
        selected = self.selected
        tasks = reads.tasks()
        log = reads.runs(since=now - self._horizon, limit=TIMELINE_RUNS)
        fleet = reads.schedulers()
        recent = reads.runs(selected, limit=RUNS_LIMIT) if selected else []
        runs = run_items(
            recent,
            tz,
            now,
            live_output=self._live_output,
            displays=self._displays,
            schedulers=reads.scheduler_names(r.owner for r in recent),
        )
        running = {t.name for t in tasks if t.is_running}
        with self._lock:
            self._terminating &= running
            terminating = sorted(self._terminating)
        scheduler = (
            SchedulerState(
                state="disconnected", detail="the kernel shut down", warning="", dismissible=False
            )
            if self._disconnected
            else reads.scheduler()
        )
        return build_snapshot(
            tasks,
            log,
            now=now,
            tz=tz,
            scheduler=scheduler,
            selected=selected,
            runs=runs,
            terminating=terminating,
            horizon=self._horizon,
            note=self._note(),
            schedulers=scheduler_items(fleet, shared=reads.shared(), tz=tz, now=now),
            cluster=cluster_item(reads.cluster()),
        )

    # --- pushing -------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Send a fresh snapshot now if it differs from the last one sent; True if sent."""
        with self._lock:
            if self._closed:
                return False
            snap = self.snapshot()
            self._watch_live(snap)
            if not force and snap.same_as(self._last):
                return False
            self._last = snap
            self._last_push = time.monotonic()
            self.data = dict(snap.data)
            return True

    def _watch_live(self, snap: Snapshot) -> None:
        """While a shown run (or a stop) is in progress, look again in a second; while
        other schedulers or a Dask cluster are shown, in :data:`FLEET_INTERVAL`."""
        data = snap.data
        busy = any(run["live"] for run in data["runs"]) or data["scheduler"]["state"] in (
            "stopping",
            "restarting",
        )
        if self._disconnected:
            return
        if busy:
            self._schedule(LIVE_INTERVAL)
        elif data["schedulers"] or data["cluster"] is not None:
            self._schedule(FLEET_INTERVAL)

    def _on_event(self, event: str, task_name: str | None = None) -> None:
        """Session callback (any thread): schedule one throttled refresh."""
        if self._closed:
            return
        if self._throttle == 0:
            self._safe_refresh()
            return
        self._schedule(max(0.0, self._last_push + self._throttle - time.monotonic()))

    def _schedule(self, delay: float) -> None:
        due = time.monotonic() + delay
        with self._timer_lock:
            if self._closed:
                return
            if self._timer is not None:
                if self._timer_due <= due:
                    return  # a push is already on its way; it will read the newest state
                self._timer.cancel()  # a slower look (the fleet's) gives way to this one
            timer = threading.Timer(delay, self._timer_fired, args=(due,))
            timer.daemon = True
            self._timer = timer
            self._timer_due = due
        timer.start()

    def _timer_fired(self, due: float) -> None:
        with self._timer_lock:
            if self._timer is None or self._timer_due != due:
                return  # cancelled too late: a sooner timer took its place
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

    def disconnect(self, reason: str = "the kernel shut down") -> None:
        """The kernel is going away: show ``disconnected`` and stop pushing."""
        with self._lock:
            if self._closed:
                return
            self._disconnected = True
            data = dict(self.data)
            data["scheduler"] = SchedulerState(
                state="disconnected", detail=reason, warning="", dismissible=False
            )
            self.data = data
        self._stop_listening()

    # --- controls ------------------------------------------------------------------------

    def _on_custom_msg(self, widget: Any, content: Any, buffers: Any = None) -> None:
        if not isinstance(content, dict):
            return
        self.act(
            str(content.get("action", "")),
            content.get("task"),
            content.get("text"),
            choice=content.get("choice"),
        )

    def act(self, action: str, task: Any = None, text: Any = None, *, choice: Any = None) -> None:
        """Carry out one control (what a button click sends); errors go to ``message``."""
        name = "" if task is None else str(task)
        if self._disconnected:
            return
        try:
            note = self._do(action, name, text, None if choice is None else str(choice))
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
                self.message = note
            ok = True
        self._safe_refresh()
        if action == "condition":  # the front end keeps a rejected condition's text
            self.send({"reply": action, "task": name, "ok": ok})

    def _do(self, action: str, name: str, text: Any, choice: str | None) -> str:
        """Carry out ``action``; returns a note for the panel ("" when there is none)."""
        session, app = self._session, self._app
        running = app.is_running if app is not None else session.runner is not None
        if action == "start":
            if running and not session.stop_requested:
                return "the scheduler is already running"
            if app is None:
                raise RuntimeError("this session has no app to start a scheduler thread with")
            app.start()
            return ""
        if action == "stop":
            if not running:
                return "the scheduler is already stopped"
            session.shut_down()  # asks; the panel shows "stopping…" until it has stopped
            return ""
        if action == "restart":
            if not running:
                return "the scheduler is stopped: start it instead"
            session.restart()
            return ""
        if action == "select":
            with self._lock:
                self.selected = name
            return ""
        if action == "dismiss_warning":
            if not session.dismiss_clock_step():
                return "there is no clock-step warning to dismiss"
            return ""
        if action not in ("run", "enable", "disable", "terminate", "delete", "condition"):
            raise ValueError(f"unknown panel action {action!r}")
        task = session[name]
        if action == "run":
            task.run()
        elif action in ("enable", "disable"):
            task.disabled = action == "disable"
        elif action == "terminate":
            if not task.is_running:
                return f"{name!r} is not running"
            with self._lock:
                self._terminating.add(name)
            task.terminate()
            if task.execution == "thread" and task.is_running:
                return THREAD_TERMINATE_NOTE.format(name=name)
        elif action == "delete":
            return self._delete(name, choice)
        else:
            before = str(task.start_cond)
            task.start_cond = "" if text is None else str(text)
            with self._lock:
                self.errors = {k: v for k, v in self.errors.items() if k != name}
            after = str(task.start_cond)
            if isinstance(task, CodeTask) and task.namespace is not None and after != before:
                return CELL_CONDITION_NOTE.format(name=name, before=before, after=after)
        return ""

    def _delete(self, name: str, choice: str | None) -> str:
        task = self._session[name]
        note = ""
        if task.is_running:
            if choice == "terminate":
                task.terminate()
                note = f"deleted {name!r}; its run was asked to terminate"
            elif choice == "finish":
                note = f"deleted {name!r}; its run goes on to its end and is recorded"
            else:
                raise ValueError(
                    f"{name!r} is running: say what happens to its run "
                    "(choice 'terminate' or 'finish')"
                )
        task.delete()
        with self._lock:
            if self.selected == name:
                self.selected = ""
        return note

    # --- lifetime ------------------------------------------------------------------------

    def _stop_listening(self) -> None:
        with self._timer_lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        if self._kernel is not None:
            self._kernel.panels.discard(self)

    def close(self) -> None:
        """Stop listening to the session, then close the widget."""
        with self._lock:
            self._closed = True
        self._stop_listening()
        super().close()


def panel(source: RedEngine | Session | None = None, **kwargs: Any) -> Panel:
    """A :class:`Panel` over ``source`` (an app or a session); ``None`` is the kernel's app.

    In a notebook, the returned widget displays itself as a cell's last value.
    """
    from . import kernel

    ks = kernel.current()
    if source is None:
        from . import get_app  # raises, naming %load_ext, when no kernel session exists

        source = get_app()
    if ks is not None and (source is ks.app or source is ks.app.session):
        kwargs.setdefault("kernel_session", ks)
    return Panel(source, **kwargs)
