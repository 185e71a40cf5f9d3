"""The SQLite run log's watcher: notice, within about a second, that another connection
(another scheduler on the file) committed, and say so to the store.

SQLite pushes nothing to other processes, unlike PostgreSQL's ``NOTIFY``. What it has is
``PRAGMA data_version`` on a connection: a counter in the shared memory (no I/O) that moves
when *another* connection commits and never for the connection's own commits -- so this
scheduler's own writes do not wake it, without filtering.

When it runs. Only once the store knows the file is shared (another lease seen when
this scheduler took or renewed its own -- the heartbeat, a third of ``lease_ttl`` -- or
another connection's commit seen by a claim or a refresh): a scheduler alone on its file
pays no wake-up for its own commits. Started that way, its first look calls back at once,
as what the other scheduler wrote before is not known.

When it looks. On Linux the watcher blocks in ``poll`` on an inotify descriptor
watching the ``-wal`` file (``IN_MODIFY``: every commit in WAL mode writes there), so an
idle log costs no wake-up at all, shared or not. Each event is followed by one look at
``data_version`` (at most one look per ``_GAP`` seconds while this scheduler itself
writes a burst) and, if it did not move, one more look ``interval`` seconds later: a
committer writes the ``-wal`` frames before it publishes them in the shared memory, and
the first look can come in between. Where inotify is not available (not Linux, or the
descriptor cannot be had) it looks every ``interval`` seconds instead.

A look takes the store's lock without waiting (the store's own writer may hold it: then
it looks again ``_GAP`` seconds later). When the counter moved it empties the ``last()``
cache and the counts (what another scheduler wrote cannot be noted) and calls the
callbacks. It keeps its own copy of the counter: the one claims compare
(``_data_version``) is left for the claim, which must still see that another scheduler
wrote since the scheduler step read the history.
"""

from __future__ import annotations

import logging
import os
import select
import sqlite3
import sys
import threading
from collections.abc import Callable

__all__ = ["Watcher"]

log = logging.getLogger(__name__)

_IN_MODIFY = 0x00000002
_GAP = 0.05  # seconds between two looks while events keep coming (our own burst)


def _inotify(path: str) -> int | None:
    """An inotify descriptor (non-blocking) watching ``path`` for writes, or ``None``."""
    if not sys.platform.startswith("linux") or not os.path.exists(path):
        return None
    import ctypes  # here: only a scheduler sharing its file pays for the import

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    add.restype = ctypes.c_int
    fd = int(init(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        return None
    if int(add(fd, os.fsencode(path), _IN_MODIFY)) < 0:
        os.close(fd)
        return None
    return fd


class Watcher:
    """A daemon thread that calls ``look()`` when another connection may have committed to
    ``path`` (see the module's text). ``look()`` returns ``False`` when it could not look
    (the store was busy): it is called again shortly. :meth:`stop` ends the thread and
    waits for it."""

    def __init__(
        self, path: str, interval: float, look: Callable[[], bool], *, look_first: bool = False
    ) -> None:
        self.interval = interval
        self._look = look
        self._look_first = look_first  # look once at the start, before any event
        self._stop = threading.Event()
        # With inotify: ``poll`` (not ``select``: no limit on the descriptor's number) on
        # it and on a pipe that stop() writes to.
        self._fd = _inotify(path + "-wal") if hasattr(select, "poll") else None
        #: ``"inotify"`` or ``"poll"``: how the watcher learns of writes.
        self.mode = "poll" if self._fd is None else "inotify"
        self._pipe: tuple[int, int] | None = None
        self._closed = False  # the descriptors (closed by the thread as it ends)
        self._fd_lock = threading.Lock()
        if self._fd is not None:
            self._pipe = os.pipe()
            self._on_all = select.poll()
            self._on_pipe = select.poll()
            for poller in (self._on_all, self._on_pipe):
                poller.register(self._pipe[0], select.POLLIN)
            self._on_all.register(self._fd, select.POLLIN)
        self._thread = threading.Thread(
            target=self._loop, name="redengine_nb:sqlite-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """End the thread (within a look) and wait for it, unless called from it."""
        with self._fd_lock:
            self._stop.set()
            if self._pipe is not None and not self._closed:
                os.write(self._pipe[1], b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _sleep(self, seconds: float | None, *, events: bool = True) -> bool:
        """Wait up to ``seconds`` (``None``: for ever) for an inotify event (with
        ``events``; else only for the time to pass); ``True`` if one came. Returns at
        once when stopping."""
        if self._fd is None or self._pipe is None:
            self._stop.wait(seconds)
            return False
        poller = self._on_all if events else self._on_pipe
        ready = {fd for fd, _ in poller.poll(None if seconds is None else seconds * 1000)}
        if self._pipe[0] in ready:
            # Drained: a byte that did not come from our stop() (a forked child that
            # closed its copy of the store writes to the same pipe) costs one look, not
            # a spin.
            os.read(self._pipe[0], 64)
        if self._fd in ready:
            try:
                while os.read(self._fd, 4096):
                    pass
            except BlockingIOError:
                pass  # drained
            return True
        return False

    def _loop(self) -> None:
        stop = self._stop
        try:
            if self._look_first:
                while not stop.is_set() and not self._look():
                    self._sleep(_GAP, events=False)
            recheck = False  # one more look due ``interval`` after an event
            while not stop.is_set():
                if self._fd is None:
                    self._sleep(self.interval)
                elif not self._sleep(self.interval if recheck else None):
                    recheck = False  # the later look, after a quiet ``interval``
                else:
                    recheck = True
                while not stop.is_set() and not self._look():
                    self._sleep(_GAP, events=False)  # the store is busy: look again soon
                if recheck and not stop.is_set():
                    # A burst of events (our own writes) costs one look per _GAP: they
                    # wait in the descriptor meanwhile.
                    self._sleep(_GAP, events=False)
        except (OSError, sqlite3.Error, ValueError):
            if not stop.is_set():
                log.exception("the run log's watcher stopped")
        finally:
            with self._fd_lock:
                self._closed = True
                for fd in (self._fd, *(self._pipe or ())):
                    if fd is not None:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
