"""The PostgreSQL run log's listener: a thread with a connection of its own that
``LISTEN``\\ s on the store's channel and hands every notification to the store.

The triggers of ``runs`` (``pg_schema``) send one at each committed write. The listener
connects again, with backoff, whenever its connection breaks; each time it is listening
again it first hands over ``None``: what happened while it was not listening is unknown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Listener"]


class Listener:
    """``LISTEN`` on ``channel`` at ``dsn`` (a libpq connection string) and call
    ``on_note(payload)`` for each notification, ``on_note(None)`` at each (re)connection;
    both from the listener's thread. :meth:`start` once, :meth:`stop` to end it."""

    def __init__(
        self, dsn: str, channel: str, app_name: str, on_note: Callable[[str | None], None]
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._app_name = app_name
        self._on_note = on_note
        self._stop = threading.Event()
        #: Whether the connection is up and ``LISTEN`` active.
        self.listening = False
        self._thread = threading.Thread(
            target=self._loop, name="redengine_nb:pg-listen", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (within its 0.2 s poll); :meth:`join` waits for it."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end (not from the thread itself: a callback may close
        the store)."""
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        import psycopg

        delay = 0.1
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(
                    self._dsn,
                    autocommit=True,
                    application_name=self._app_name + ":listen",
                    connect_timeout=5,
                )
            except psycopg.Error:
                self.listening = False
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                conn.execute(f'LISTEN "{self._channel}"')
                delay = 0.1
                self._on_note(None)  # what happened while we were not listening
                self.listening = True
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.2):
                        self._on_note(note.payload)
            except psycopg.Error:
                pass  # connect again
            finally:
                self.listening = False
                try:
                    conn.close()
                except psycopg.Error:
                    pass
