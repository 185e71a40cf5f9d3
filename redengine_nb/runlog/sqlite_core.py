"""The SQLite run log's connection and what every other part of the store stands on:
opening the file, the errors, the file's identity, the ``last()`` cache's reads, and
seeing other processes' writes (:meth:`SQLiteCore.refresh`).

The store is built in layers, each a module: this one, then the writer
(``sqlite_writer``: group commit and every write), the leases and claims
(``sqlite_leases``), and the reads with the public class (``sqlite``:
:class:`~redengine_nb.runlog.sqlite.SQLiteRunLog`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RunLogError
from ..records import Action
from .base import RunLogLost
from .checkpoint import Checkpointer
from .lastcache import LastCacheBase
from .sqlite_schema import (
    PAIRS,
    TIME,
    check_file,
    check_readable,
    connect_readonly,
    create_private,
    prepare,
    prepare_readonly,
)
from .sqlite_watch import Watcher

if TYPE_CHECKING:
    from .sqlite_writer import _Queued

__all__ = ["SQLiteCore"]

log = logging.getLogger(__name__)


class _Guard:
    """``with log._guard(doing):`` turns an ``sqlite3.Error`` into a :class:`RunLogError`
    (a class, not a generator: it is on every lookup)."""

    __slots__ = ("doing", "log")

    def __init__(self, log: SQLiteCore, doing: str) -> None:
        self.log = log
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise self.log._error(self.doing, exc) from exc


class SQLiteCore(LastCacheBase):
    """The connection to one SQLite file (or ``':memory:'``) and its plumbing; see
    :class:`~redengine_nb.runlog.sqlite.SQLiteRunLog` for the arguments. One connection,
    guarded by ``_lock``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        cache_size: int = 1024,
        readonly: bool = False,
        watch_interval: float = 0.5,
    ) -> None:
        super().__init__(cache_size=cache_size)
        if not watch_interval > 0:
            raise ValueError(
                f"watch_interval must be a number of seconds above 0, not {watch_interval!r}"
            )
        #: Seconds between two looks of the watcher where inotify is not available (and
        #: the delay of its second look after an event); see ``sqlite_watch``.
        self.watch_interval = float(watch_interval)
        self._callbacks: list[Callable[[], None]] = []
        self._watcher: Watcher | None = None
        self._watch_version: Any = None
        self._memory = os.fspath(path) == ":memory:"
        self.readonly = readonly and not self._memory
        self._identity: tuple[int, int] | None = None
        self._lost: str | None = None
        # Leases taken through this handle and not deleted through it since: with no
        # other writer since we last looked (data_version), these are surely still there.
        self._held: set[str] = set()
        self._shared = False  # another writer seen (see the ``shared`` property)
        # reap_expired looks at the open runs only when a lease may have gone without its
        # runs being reaped: at its first call, after it deleted expired leases, or after
        # another scheduler's lease was released through this handle.
        self._reap_all = True
        self.location: str = ":memory:" if self._memory else os.fspath(path)
        self.busy_timeout = float(busy_timeout)
        self._queue: list[_Queued] = []  # writes waiting for a group commit (the writer's)
        self._queue_lock = threading.Lock()
        self._leading = False  # a writer is committing the queue (under _queue_lock)
        # Per task, its count of runs (records with a start) and of fails, each None until
        # counted once, then kept by our own writes (status() asks for both for every task:
        # two COUNT(*) per task were 160 ms at 1M records and 1,000 tasks). Emptied with
        # the last() cache: when others write, or a write of ours fails.
        self._counts: dict[str, list[int | None]] = {}
        self._closed = False
        if self.readonly:
            check_readable(Path(path))
        elif not self._memory:
            check_file(Path(path))
            create_private(self.location)
        try:
            if self.readonly:
                self._conn = connect_readonly(self.location, self.busy_timeout)
            else:
                self._conn = sqlite3.connect(
                    self.location,
                    timeout=self.busy_timeout,
                    check_same_thread=False,
                    isolation_level=None,
                )
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            with self._guard("open"):
                if self.readonly:
                    prepare_readonly(self._conn, self.location, self.busy_timeout)
                else:
                    prepare(self._conn, self.location, self.busy_timeout)
        except BaseException:
            self._conn.close()
            raise
        self._data_version = self._scalar("PRAGMA data_version")
        if not self._memory:
            st = os.stat(self.location)
            self._identity = (st.st_dev, st.st_ino)
        # WAL checkpoints on a thread of their own, not in one of our commits.
        self._checkpointer: Checkpointer | None = None
        if not self._memory and not self.readonly:
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            page_size = int(self._scalar("PRAGMA page_size"))
            self._checkpointer = Checkpointer(self.location, self.busy_timeout, page_size)
            # Started over after a checkpoint, the -wal file is cut back to the limit
            # (its size then says how much is waiting).
            self._conn.execute(f"PRAGMA journal_size_limit = {self._checkpointer.limit}")

    def _check_identity(self) -> None:
        """Raise :class:`RunLogLost` if the file we write is no longer the file at our
        path (deleted, or replaced by another). Called after each commit: one ``stat``."""
        if self._lost is None and self._identity is not None:
            try:
                st = os.stat(self.location)
                same = (st.st_dev, st.st_ino) == self._identity
            except OSError:
                same = False
            if not same:
                self._lost = (
                    f"run log {self.location!r}: the file was deleted or replaced while "
                    "this scheduler was writing to it; the records written since are lost "
                    "(they went to the old, unlinked file). Stop, restore the file or "
                    "start with a new log, and check what ran meanwhile."
                )
        if self._lost is not None:
            raise RunLogLost(self._lost)

    # -- plumbing --------------------------------------------------------------------
    def _error(self, doing: str, exc: sqlite3.Error) -> RunLogError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            hint = (
                f"another process held a lock on it for longer than the busy timeout "
                f"({self.busy_timeout:g} s). Stop that process, or pass another "
                "logs= path."
            )
        elif "not a database" in text or "malformed" in text or "corrupt" in text:
            hint = (
                "the file is corrupt; it was left as it is. Move it aside (keep it for "
                "recovery with the sqlite3 '.recover' command) and start a new log."
            )
        elif "readonly" in text or "read-only" in text or "unable to open" in text:
            hint = "check the permissions of the file and its folder, or pass another path."
        elif "closed" in text:
            hint = "the run log was closed; open it again."
        else:
            hint = "check the disk (space, permissions) or pass another logs= path."
        return RunLogError(f"run log {self.location!r}: {doing} failed: {text}; {hint}")

    def _guard(self, doing: str) -> _Guard:
        return _Guard(self, doing)

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _in_tx(self) -> bool:
        try:
            return self._conn.in_transaction
        except sqlite3.Error:  # closed
            return False

    # -- the last() cache ------------------------------------------------------------
    def _read_pairs(self) -> Iterable[tuple[str, str]]:
        # Every (task, action) pair the file holds: one skip scan (see PAIRS).
        with self._guard("reading"):
            return self._conn.execute(PAIRS).fetchall()

    def _read_last(self, task: str, action: Action) -> float | None:
        with self._guard("reading"):
            if action is Action.RUN:
                value = self._scalar(
                    "SELECT start FROM runs WHERE task_name = ? AND start IS NOT NULL "
                    "ORDER BY start DESC LIMIT 1",
                    (task,),
                )
            else:
                value = self._scalar(
                    f"SELECT {TIME} FROM runs WHERE task_name = ? AND action = ? "
                    f"ORDER BY {TIME} DESC LIMIT 1",
                    (task, action.value),
                )
        return None if value is None else float(value)

    def _cache_note(self, task: str, action: Action, when: float | None) -> None:
        """Our own write made a record of ``action`` at ``when``: keep the cached answer
        and counts true. (A ``RUN`` note with a time is a new record with a start; a
        ``FAIL`` note, a record that is now a fail.)"""
        counts = self._counts.get(task)
        if counts is not None:
            slot = 0 if action is Action.RUN and when is not None else 1
            n = counts[slot]
            if n is not None and (slot == 0 or action is Action.FAIL):
                counts[slot] = n + 1
        self._note(task, action, when)

    @property
    def shared(self) -> bool:
        return self._shared

    # -- other processes' writes, closing ---------------------------------------------
    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from the watcher's thread) soon after another connection
        commits to the file -- another scheduler, not this store's own writes; returns a
        function that removes it. The watcher (``sqlite_watch``) runs only once the log is
        known to be shared (:meth:`_mark_shared`: another lease, or another connection's
        commit, seen): a scheduler alone on its file pays no wake-up for its own writes.
        A ``':memory:'`` log has no other writer and no watcher."""
        with self._lock:
            self._callbacks.append(callback)
            if self._shared:
                self._start_watching(announce=False)

        def remove() -> None:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                pass

        return remove

    @property
    def watching(self) -> str | None:
        """How the watcher learns of other writers (``'inotify'`` or ``'poll'``), or
        ``None`` when there is no watcher."""
        watcher = self._watcher
        return None if watcher is None else watcher.mode

    def _mark_shared(self) -> None:
        """Another scheduler was seen on the file: from now on, watch for its writes.
        (Called with the store's lock held.)"""
        if not self._shared:
            self._shared = True
            self._start_watching(announce=True)

    def _start_watching(self, *, announce: bool) -> None:
        """Start the watcher if a callback wants it (the lock held). ``announce``: the
        log has just been found shared -- what the other scheduler wrote before we
        watched is not known, so the callbacks are called once (from the watcher's
        thread, as every call: never under the caller's lock)."""
        if self._watcher is not None or self._memory or self._closed or not self._callbacks:
            return
        with self._guard("reading"):
            version = self._scalar("PRAGMA data_version")
        # Announcing: a version that cannot match makes the watcher's first look call back.
        self._watch_version = -1 if announce else version
        self._watcher = Watcher(
            self.location, self.watch_interval, self._watch_look, look_first=announce
        )

    def _watch_look(self) -> bool:
        """The watcher's look: if another connection committed since its last look, empty
        the cache and call the callbacks. ``False`` if the store was busy (look again)."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._closed:
                return True
            version = self._scalar("PRAGMA data_version")
            moved = version != self._watch_version
            if moved:
                # Not ``_data_version``: a claim compares that one (see sqlite_watch).
                self._watch_version = version
                self._shared = True
                self._clear_cache()
                self._counts.clear()
        finally:
            self._lock.release()
        if moved:
            for callback in list(self._callbacks):
                try:
                    callback()
                except Exception:
                    log.exception("run log change callback %r failed", callback)
        return True

    def refresh(self) -> None:
        """Drop the ``last()`` cache if another connection has written since we looked."""
        with self._lock, self._guard("reading"):
            version = self._scalar("PRAGMA data_version")
            if version != self._data_version:
                self._mark_shared()
                self._data_version = version
                self._clear_cache()
                self._counts.clear()

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed(self._conn)

    def close(self) -> None:
        watcher = self._watcher
        if watcher is not None:
            watcher.stop()  # before the lock: a callback in flight never waits for it
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.close()
            try:
                self._conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass  # only a planner hint; closing matters more
            self._conn.close()
            self._cache.clear()
