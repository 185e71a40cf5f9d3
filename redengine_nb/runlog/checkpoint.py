"""WAL checkpoints on a thread of their own, so that no commit of the scheduler pays one.

With SQLite's default, the commit that takes the write-ahead log past 1,000 pages also
copies the log back into the database file (a checkpoint, with its fsyncs): measured,
one such commit took 117 ms on the scheduler thread, and the commits over 10 ms made the
start-lag p99. :class:`Checkpointer` turns that off on the log's connection
(``wal_autocheckpoint = 0``) and runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection
of its own, on a daemon thread started when the log has grown and gone after 60 idle
seconds (as the session's end writer). A passive checkpoint never blocks a writer; it
copies what no reader still needs, and SQLite starts the log over at a later commit.

The log's writers call :meth:`Checkpointer.committed` after each commit: every 32nd
looks at the size of the ``-wal`` file (kept to the limit when SQLite starts it over:
``journal_size_limit``), and past :data:`WAL_PAGES` pages wakes the thread. Under a
sustained stream of commits the thread's checkpoints may never catch up with the end
of the log (SQLite starts it over only after a complete one); past :data:`BACKSTOP`
times the limit the committing writer checkpoints inline, as SQLite would have, so the
log never grows without bound.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

__all__ = ["WAL_PAGES", "Checkpointer"]

log = logging.getLogger("redengine_nb.runlog")

#: Pages in the write-ahead log past which it is checkpointed (SQLite's default).
WAL_PAGES = 1000
#: Times the limit at which a writer checkpoints inline (the thread has not caught up).
BACKSTOP = 8
_LOOK_EVERY = 32  # commits between two looks at the log's size
_IDLE = 60.0  # seconds the thread waits for more work before it ends


class Checkpointer:
    """Checkpoints one SQLite file's WAL off the writers' thread."""

    def __init__(self, path: str, busy_timeout: float, page_size: int) -> None:
        self._path = path
        self._wal = path + "-wal"
        self._busy_timeout = busy_timeout
        self._limit = WAL_PAGES * max(512, page_size)
        self._commits = 0
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Set after each checkpoint the thread made (tests wait on it).
        self.done = threading.Event()

    @property
    def limit(self) -> int:
        """The log's size, in bytes, past which it is checkpointed."""
        return self._limit

    def committed(self, conn: sqlite3.Connection) -> None:
        """A writer committed on ``conn`` (cheap: a counter, and a ``stat`` every 32nd
        call); it holds the connection."""
        self._commits += 1
        if self._commits % _LOOK_EVERY:
            return
        try:
            size = os.stat(self._wal).st_size
        except OSError:
            return
        if size >= BACKSTOP * self._limit:
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:
                log.warning("checkpointing %s failed: %s", self._path, exc)
        elif size >= self._limit:
            self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._wanted.set()
            if self._thread is not None and self._thread.is_alive():
                return
            thread = threading.Thread(
                target=self._main, name="redengine_nb checkpointer", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:  # no thread to be had (interpreter shutting down)
                self._checkpoint_here()
                return
            self._thread = thread

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while self._wanted.wait(_IDLE):
                self._wanted.clear()
                with self._lock:
                    if self._closed:
                        return
                if conn is None:
                    conn = sqlite3.connect(
                        self._path,
                        timeout=self._busy_timeout,
                        check_same_thread=False,
                        isolation_level=None,
                    )
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("checkpointing %s failed (tried again later): %s", self._path, exc)
                self.done.set()
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
            if conn is not None:
                conn.close()
            if self._wanted.is_set() and not self._closed:
                self._wake()  # asked for while this thread was ending

    def _checkpoint_here(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            log.warning("checkpointing %s failed: %s", self._path, exc)

    def close(self) -> None:
        """Stop the thread (the file's last connection to close checkpoints it)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wanted.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(10.0)
