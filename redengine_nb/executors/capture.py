"""Per-run capture of stdout/stderr for ``main`` and ``thread`` runs.

A :class:`RoutingStream` is installed over ``sys.stdout`` and ``sys.stderr``. A write from
a thread that is running a task goes to that run's :class:`TailBuffer` (bounded: the tail
is kept); every other write goes to the stream that was there before, untouched. So a
task's prints never land in whichever notebook cell happens to be running, and other
threads' output is unaffected. :func:`ensure_installed` is cheap and re-wraps the streams
if something (a Jupyter kernel) replaced them after us.
"""

from __future__ import annotations

import io
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = [
    "RoutingStream",
    "TailBuffer",
    "begin_capture",
    "capture_output",
    "current_buffer",
    "end_capture",
    "ensure_installed",
]

TRUNCATED = "[... earlier output truncated ...]\n"

_routes: dict[int, TailBuffer] = {}
_install_lock = threading.Lock()


class TailBuffer:
    """Text written to it, of which at most the last ``limit`` characters are kept."""

    __slots__ = ("_chunks", "_lock", "_size", "limit", "truncated")

    def __init__(self, limit: int = 64_000) -> None:
        self.limit = max(1, limit)
        self._chunks: deque[str] | None = None  # made at the first write: most runs print nothing
        self._size = 0
        self._lock = threading.Lock()
        self.truncated = False

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            chunks = self._chunks
            if chunks is None:
                chunks = self._chunks = deque()
            chunks.append(text)
            self._size += len(text)
            while chunks and self._size - len(chunks[0]) >= self.limit:
                self._size -= len(chunks.popleft())
                self.truncated = True
        return len(text)

    def getvalue(self) -> str:
        if self._chunks is None:
            return ""
        with self._lock:
            text = "".join(self._chunks)
        if len(text) > self.limit:
            text = text[-self.limit :]
            self.truncated = True
        return (TRUNCATED + text) if self.truncated else text

    def __len__(self) -> int:
        return self._size


class RoutingStream(io.TextIOBase):
    """Sends a task thread's writes to its run's buffer, everything else to ``original``."""

    def __init__(self, original: TextIO) -> None:
        super().__init__()
        self.original = original

    def write(self, text: str) -> int:
        buffer = _routes.get(threading.get_ident())
        if buffer is not None:
            return buffer.write(text)
        return self.original.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if threading.get_ident() not in _routes:
            self.original.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(getattr(self.original, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8") or "utf-8"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def ensure_installed() -> None:
    """Put routing streams over ``sys.stdout``/``sys.stderr`` unless they are already ours."""
    if isinstance(sys.stdout, RoutingStream) and isinstance(sys.stderr, RoutingStream):
        return
    with _install_lock:
        if not isinstance(sys.stdout, RoutingStream) and sys.stdout is not None:
            sys.stdout = RoutingStream(sys.stdout)
        if not isinstance(sys.stderr, RoutingStream) and sys.stderr is not None:
            sys.stderr = RoutingStream(sys.stderr)


def begin_capture(limit: int = 64_000) -> tuple[TailBuffer, int, TailBuffer | None]:
    """Route what the current thread prints to a new bounded buffer; returns it, and what
    :func:`end_capture` needs to put the previous route back (a run's hot path: no
    generator, unlike :func:`capture_output`)."""
    if not (isinstance(sys.stdout, RoutingStream) and isinstance(sys.stderr, RoutingStream)):
        ensure_installed()
    ident = threading.get_ident()
    buffer = TailBuffer(limit)
    previous = _routes.get(ident)
    _routes[ident] = buffer
    return buffer, ident, previous


def current_buffer() -> TailBuffer | None:
    """The buffer the current thread's prints go to, if it is capturing (a run's output so
    far, for the notebook panel to show while the run lives)."""
    return _routes.get(threading.get_ident())


def buffer_of(ident: int) -> TailBuffer | None:
    """The buffer thread ``ident`` is capturing into, if any (a run's output so far)."""
    return _routes.get(ident)


def end_capture(ident: int, previous: TailBuffer | None) -> None:
    if previous is None:
        _routes.pop(ident, None)
    else:
        _routes[ident] = previous


@contextmanager
def capture_output(limit: int = 64_000) -> Iterator[TailBuffer]:
    """Capture what the current thread prints, into a bounded buffer, for the block."""
    buffer, ident, previous = begin_capture(limit)
    try:
        yield buffer
    finally:
        end_capture(ident, previous)
