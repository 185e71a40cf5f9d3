"""The ``last()`` cache of the stores with a database behind them (SQLite, PostgreSQL):
:class:`LastCacheBase`, the base both subclass.

A store asks its database for ``last(task, action)`` once and answers again from memory.
The cache holds, per task, the answer for each action; it is bounded (``cache_size``
answers, i.e. that many tasks' worth divided by the number of actions, least recently used
task dropped; the session grows it with :meth:`~LastCacheBase.fit_cache` to hold every
task, so that a scheduler step does not evict what it reads) and kept true by the writes
the store notes in it (:meth:`~LastCacheBase._note`: answers only move forward). The store
empties it (:meth:`~LastCacheBase._clear_cache`) when others may have written what it
cannot note.

Beside it, which actions each task has records of (a bit mask per task, loaded with one
query at the first miss, grown by the notes), so that a task's first look at an action it
has never logged costs no query. A superset is safe: a bit set wrongly costs one query.

One entry per task is a list of answers by action (``_UNKNOWN`` where not looked up yet):
one tracked object rather than a dozen tuples, so ten thousand tasks' caches are a small
part of what each full garbage collection walks.
"""

from __future__ import annotations

import abc
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from ..records import Action
from .base import RunLogBase

__all__ = ["LastCacheBase"]

_UNKNOWN: Any = object()  # a cache slot not looked up yet
_N_ACTIONS = len(Action)
_ALL = range(_N_ACTIONS)
_INDEX = {action: i for i, action in enumerate(Action)}
_INDEX_OF_VALUE = {action.value: i for i, action in enumerate(Action)}
_BIT_RUN = 1 << _INDEX[Action.RUN]
_ALL_BITS = (1 << _N_ACTIONS) - 1


class LastCacheBase(RunLogBase):
    """A store whose :meth:`last` and :meth:`last_of` are answered from the cache.

    A subclass reads its database in :meth:`_read_last` and :meth:`_read_pairs` (called
    under :attr:`_lock`, which guards the cache and which the subclass takes around its
    own use of the connection), notes its writes with :meth:`_note` and clears the cache
    when it cannot know what others wrote.
    """

    def __init__(self, *, cache_size: int) -> None:
        #: Most ``last()`` answers kept (``0``: no cache).
        self.cache_size = int(cache_size)
        self._lock = threading.RLock()
        self._cache: OrderedDict[str, list[Any]] = OrderedDict()
        # Every (task, action) the database may hold a record of, as a bit mask of
        # actions per task: a superset, loaded at the first cache miss and grown by the
        # notes. A miss for a pair not in it is answered None without a query. Only
        # kept with the cache on.
        self._present: dict[str, int] | None = None

    # -- what the subclass reads ------------------------------------------------------
    @abc.abstractmethod
    def _read_last(self, task: str, action: Action) -> float | None:
        """``last(task, action)`` as the database answers it (under the lock)."""

    @abc.abstractmethod
    def _read_pairs(self) -> Iterable[tuple[str, str]]:
        """Every ``(task, action value)`` the database holds a record of (under the lock;
        one query bounded by the pairs, not the rows)."""

    # -- History ---------------------------------------------------------------------
    def last(self, task: str, action: Action) -> float | None:
        if action.__class__ is not Action:
            action = Action.parse(action)
        with self._lock:
            cache = self._cache
            entry = cache.get(task)
            if entry is not None:  # the common case, once per condition look: kept lean
                cache.move_to_end(task)
                value = entry[_INDEX[action]]
                if value is not _UNKNOWN:
                    return value  # type: ignore[no-any-return]
            else:
                entry = self._entry(task)
            return self._lookup(task, action, entry)

    def last_of(self, task: str, actions: Iterable[Action]) -> float | None:
        """The newest of ``last(task, a)`` over ``actions`` (one lock for all of them)."""
        best: float | None = None
        with self._lock:
            entry = self._entry(task)
            for action in actions:
                t = _UNKNOWN if entry is None else entry[_INDEX[action]]
                if t is _UNKNOWN:
                    t = self._lookup(task, action, entry)
                if t is not None and (best is None or t > best):
                    best = t
        return best

    def refresh_if_free(self) -> bool:
        """:meth:`refresh` unless another thread is using the store (this process's own
        writer holds the lock: a scheduler step then does not wait behind a commit; the
        step that follows that writer's acknowledgements refreshes). True if it did."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self.refresh()
        finally:
            self._lock.release()
        return True

    # -- keeping it --------------------------------------------------------------------
    def fit_cache(self, tasks: int) -> None:
        """Grow the ``last()`` cache (never shrink it, never turn it on) to hold every
        action of ``tasks`` tasks: a cache smaller than what one scheduler step reads is
        emptied by that step itself, and every lookup becomes a query."""
        if self.cache_size > 0:
            self.cache_size = max(self.cache_size, _N_ACTIONS * tasks)

    def _clear_cache(self) -> None:
        """Forget every answer and which pairs exist (others wrote what we cannot note)."""
        self._cache.clear()
        self._present = None

    def _forget(self, task: str) -> None:
        """Drop what is cached about ``task`` (its next lookups query the database)."""
        self._cache.pop(task, None)
        if self._present is not None:
            self._present[task] = _ALL_BITS

    def _note(self, task: str, action: Action, when: float | None) -> None:
        """A write made a record of ``action`` at ``when``: keep a cached answer true
        (under the lock). A ``RUN`` note with a time is a new record with a start."""
        index = _INDEX[action]
        present = self._present
        if present is not None:
            present[task] = present.get(task, 0) | _BIT_RUN | (1 << index)
        entry = self._cache.get(task)
        if when is None or entry is None:
            return
        old = entry[index]
        if old is not _UNKNOWN and (old is None or when > old):
            entry[index] = when

    # -- misses ------------------------------------------------------------------------
    def _known_pairs(self) -> dict[str, int]:
        """``_present``, loaded if it is not (under the lock)."""
        if self._present is None:
            present: dict[str, int] = {}
            for task, action in self._read_pairs():
                index = _INDEX_OF_VALUE.get(action)
                if index is None:
                    continue  # not an action of ours: last() never asks for it
                # It may have a start, too (a superset is safe).
                present[task] = present.get(task, 0) | _BIT_RUN | (1 << index)
            self._present = present
        return self._present

    def _entry(self, task: str) -> list[Any] | None:
        """``task``'s cache entry, made (and the oldest dropped) if it has none; ``None``
        with the cache off (under the lock)."""
        cache = self._cache
        entry = cache.get(task)
        if entry is not None:
            cache.move_to_end(task)
            return entry
        if self.cache_size <= 0:
            return None
        # What the database holds no record of is known now: None, not a lookup to make.
        mask = self._known_pairs().get(task, 0)
        entry = cache[task] = (
            [None] * _N_ACTIONS if not mask else [_UNKNOWN if mask >> i & 1 else None for i in _ALL]
        )
        limit = max(1, self.cache_size // _N_ACTIONS)
        while len(cache) > limit:
            cache.popitem(last=False)
        return entry

    def _lookup(self, task: str, action: Action, entry: list[Any] | None) -> float | None:
        """A cache miss: answer ``last(task, action)`` from the database (under the lock)."""
        index = _INDEX[action]
        if entry is not None and not self._known_pairs().get(task, 0) & (1 << index):
            entry[index] = None
            return None
        result = self._read_last(task, action)
        if entry is not None:
            entry[index] = result
        return result
