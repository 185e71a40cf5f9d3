"""Per-run capture of ``display()`` and rich output inside a kernel.

The engine's :mod:`redengine_nb.executors.capture` routes a task thread's ``print`` to its run's
buffer. Rich output takes another road: ``display(obj)`` calls the shell's display
publisher, which in ipykernel sends a ``display_data`` message with the parent header of
the thread (ipykernel 7: a per-thread context variable that falls back to the header of
the cell executing *now*). Left alone, a task's ``display()`` would appear in whichever
cell is running.

:class:`DisplayRouter` wraps the publisher's ``publish`` and ``clear_output`` once. While a
thread runs a task (inside :meth:`DisplayRouter.capture`), its displays are kept in a
bounded per-run store (:meth:`displays`) and their ``text/plain`` form is written to
``sys.stdout`` — which the engine's capture sends to the run's ``output``. Every other
thread publishes as before.

As a second guard, a capturing thread's parent header on the kernel's streams and
publisher is set to an empty header: anything that escapes the routing (a stream object
kept from before) is sent with no parent, which no front end puts in a cell.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CapturedDisplay", "DisplayRouter"]

_DEFAULT_REPR = re.compile(r"^<[\w.]+ (object|at 0x[0-9a-fA-F]+)[^>]*>$")

#: How many runs' displays are kept (oldest dropped first) and how many per run.
MAX_RUNS = 200
MAX_PER_RUN = 50


@dataclass(frozen=True, slots=True)
class CapturedDisplay:
    """One ``display()`` call made by a run: its MIME bundle and metadata."""

    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """A text form for the run's output: the plain text; with richer kinds, a tag
        naming them (``[display: text/html]``), followed by the plain text only when it
        says something (a table's text, not ``<IPython.core.display.HTML object>``)."""
        plain = self.data.get("text/plain")
        rich = sorted(k for k in self.data if k != "text/plain")
        if isinstance(plain, str) and not rich:
            return plain
        tag = f"[display: {', '.join(rich) or 'empty'}]"
        if not isinstance(plain, str) or _DEFAULT_REPR.match(plain.strip()):
            return tag
        return f"{tag}\n{plain}"


def _thread_parent_targets(shell: Any) -> list[Any]:
    """Objects whose per-thread parent header can be set (ipykernel >= 6.29 / 7)."""
    seen: list[Any] = []
    candidates = [sys.stdout, sys.stderr, getattr(shell, "display_pub", None)]
    for stream in list(candidates[:2]):
        # Look under wrappers (the engine's RoutingStream keeps ``original``).
        inner = getattr(stream, "original", None)
        while inner is not None:
            candidates.append(inner)
            inner = getattr(inner, "original", None)
    for obj in candidates:
        if obj is not None and hasattr(obj, "set_thread_parent") and obj not in seen:
            seen.append(obj)
    return seen


class DisplayRouter:
    """Routes ``display()`` calls of task threads to per-run stores."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, list[CapturedDisplay]] = {}
        self._runs: OrderedDict[str, list[CapturedDisplay]] = OrderedDict()
        self._publisher: Any = None
        self._targets: list[Any] = []

    # -- installation -------------------------------------------------------------
    @property
    def installed(self) -> bool:
        return self._publisher is not None

    def install(self, shell: Any) -> None:
        """Wrap ``shell.display_pub`` (idempotent) and note the kernel's streams."""
        publisher = getattr(shell, "display_pub", None)
        if publisher is None or self._publisher is publisher:
            return
        self.uninstall()
        original_publish: Callable[..., Any] = publisher.publish
        original_clear: Callable[..., Any] | None = getattr(publisher, "clear_output", None)

        def publish(
            data: dict[str, Any], metadata: dict[str, Any] | None = None, *args: Any, **kwargs: Any
        ) -> Any:
            sink = self._active.get(threading.get_ident())
            if sink is None:
                return original_publish(data, metadata, *args, **kwargs)
            self._record(sink, data, metadata)
            return None

        def clear_output(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() in self._active:
                return None  # a task clearing "its" output must not clear a cell
            assert original_clear is not None
            return original_clear(*args, **kwargs)

        publish.__wrapped__ = original_publish  # type: ignore[attr-defined]
        publisher.publish = publish
        if original_clear is not None:
            clear_output.__wrapped__ = original_clear  # type: ignore[attr-defined]
            publisher.clear_output = clear_output
        self._publisher = publisher
        self._targets = _thread_parent_targets(shell)

    def uninstall(self) -> None:
        """Give the publisher its own methods back."""
        publisher = self._publisher
        if publisher is None:
            return
        for attr in ("publish", "clear_output"):
            if attr in vars(publisher):
                try:
                    delattr(publisher, attr)
                except AttributeError:  # pragma: no cover - defensive
                    pass
        self._publisher = None
        self._targets = []

    # -- capture ------------------------------------------------------------------
    def _record(
        self, sink: list[CapturedDisplay], data: dict[str, Any], metadata: dict[str, Any] | None
    ) -> None:
        item = CapturedDisplay(dict(data), dict(metadata or {}))
        if len(sink) < MAX_PER_RUN:
            sink.append(item)
        # The text form goes into the run's printed output (captured by the engine).
        text = item.text
        sys.stdout.write(text if text.endswith("\n") else text + "\n")

    def detach_current_thread(self) -> None:
        """Send whatever this thread writes to the kernel's streams with no parent header.

        For the scheduler's own thread: a log line it writes to stderr must not appear in
        the cell that happens to be running. Lasts for the thread's life.
        """
        for target in self._targets:
            try:
                target.set_thread_parent({})
            except Exception:  # pragma: no cover - an older or odd stream
                pass

    @contextmanager
    def capture(self, run_id: str) -> Iterator[list[CapturedDisplay]]:
        """Keep the current thread's displays for the block, under ``run_id``."""
        ident = threading.get_ident()
        sink: list[CapturedDisplay] = []
        tokens: list[tuple[Any, Any]] = []
        for target in self._targets:
            try:
                tokens.append((target, target.set_thread_parent({})))
            except Exception:  # pragma: no cover - an older or odd stream
                pass
        previous = self._active.get(ident)
        self._active[ident] = sink
        try:
            yield sink
        finally:
            if previous is None:
                self._active.pop(ident, None)
            else:
                self._active[ident] = previous
            for target, token in reversed(tokens):
                try:
                    target.reset_thread_parent(token)
                except Exception:  # pragma: no cover - defensive
                    pass
            if sink:
                with self._lock:
                    self._runs[run_id] = sink
                    while len(self._runs) > MAX_RUNS:
                        self._runs.popitem(last=False)

    def displays(self, run_id: str) -> list[CapturedDisplay]:
        """The displays a run made (kept for the latest runs only)."""
        with self._lock:
            return list(self._runs.get(run_id, ()))
