"""The SQLite run log's part of the shared-log protocol (docs/reliability.md): leases
say which schedulers are alive, claims make each start exactly-once.

One file can be written by several schedulers (processes) at once. A claim
(:meth:`SQLiteLeases.claim_starts`) takes the write lock first, then asks SQLite whether
another connection committed since this one last looked (``PRAGMA data_version``, no
I/O): with one scheduler on the file a claim costs what a plain start does.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..records import Action, RunRecord
from .base import LeaseInfo, LeaseLost, Recheck, is_lease_id, new_lease_id, start_times
from .sqlite_writer import SQLiteWriter

__all__ = ["SQLiteLeases"]


class SQLiteLeases(SQLiteWriter):
    """The leases and claims of :class:`~redengine_nb.runlog.sqlite.SQLiteRunLog`."""

    # -- claims ----------------------------------------------------------------------
    def claim_starts(
        self,
        tasks: Sequence[str],
        *,
        created: float,
        start: float | Sequence[float],
        owner: str,
        recheck: Recheck,
    ) -> list[RunRecord]:
        """:meth:`start_runs` as a claim (see :meth:`RunLogBase.claim_starts`).

        ``BEGIN IMMEDIATE`` takes the write lock; then ``PRAGMA data_version`` (no I/O: a
        counter in the shared memory) says whether another connection committed since we
        last refreshed (:meth:`refresh`, which the scheduler step calls before it reads).
        If none did -- one scheduler on the file -- nothing we read can be stale and our
        lease cannot have been reaped: the starts are written as by :meth:`start_runs`.
        Otherwise the cache is dropped, the lease looked up, and ``recheck`` decides, all
        before anyone else can write."""
        if not tasks:
            return []
        starts = start_times(start, tasks)
        doing = f"claiming the start of {len(tasks)} run(s) ({tasks[0]!r}, ...)"
        with self._write(doing) as conn:
            pairs = list(zip(tasks, starts, strict=True))
            version = self._scalar("PRAGMA data_version")
            foreign = version != self._data_version
            if foreign:
                # What was cached may be stale: drop it (the recheck reads the stored
                # history). ``_data_version`` is *not* moved here, only by :meth:`refresh`
                # at the start of a scheduler step: the step may claim in several batches,
                # and the tasks of a later batch were found due on what it read before
                # this claim -- their claim must recheck too.
                self._mark_shared()
                self._clear_cache()
                self._counts.clear()
            if foreign or owner not in self._held:
                found = conn.execute("SELECT 1 FROM leases WHERE lease_id = ?", (owner,))
                if found.fetchone() is None:
                    raise LeaseLost(
                        f"run log {self.location!r}: this scheduler's lease {owner!r} is gone "
                        "(it expired and another scheduler marked its runs crash); it must "
                        "stop starting runs"
                    )
            if foreign:
                keep = set(recheck(tasks))
                pairs = [(t, at) for t, at in pairs if t in keep]
                if not pairs:
                    return []
            return self._insert_starts(conn, pairs, created, owner)

    # -- leases ----------------------------------------------------------------------
    def acquire_lease(self, *, now: float, ttl: float, host: str, pid: int, info: str = "") -> str:
        lease_id = new_lease_id()
        with self._write("taking a lease") as conn:
            conn.execute(
                "INSERT INTO leases (lease_id, host, pid, started, renewed, expires, info) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (lease_id, host, pid, now, now, now + ttl, info),
            )
            others = conn.execute("SELECT 1 FROM leases WHERE expires >= ? LIMIT 2", (now,))
            if len(others.fetchall()) > 1:
                self._mark_shared()
        self._held.add(lease_id)
        return lease_id

    def renew_lease(self, lease_id: str, *, now: float, ttl: float) -> bool:
        with self._write("renewing the lease") as conn:
            cur = conn.execute(
                "UPDATE leases SET renewed = ?, expires = ? WHERE lease_id = ?",
                (now, now + ttl, lease_id),
            )
            if cur.rowcount != 1:
                self._held.discard(lease_id)
                return False
            if not self._shared:
                # A scheduler that came after us is seen here, at our heartbeat (its own
                # writes may not have reached a claim or a refresh of ours yet).
                other = conn.execute(
                    "SELECT 1 FROM leases WHERE lease_id <> ? AND expires >= ? LIMIT 1",
                    (lease_id, now),
                ).fetchone()
                if other is not None:
                    self._mark_shared()
            return True

    def release_lease(self, lease_id: str) -> None:
        with self._write("releasing the lease") as conn:
            conn.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))
        if lease_id not in self._held:
            self._reap_all = True
        self._held.discard(lease_id)

    def leases(self, now: float) -> list[LeaseInfo]:
        with self._lock, self._guard("reading"):
            if self.readonly and self._scalar("PRAGMA user_version") < 3:
                return []  # an older file, read as it is: it has no leases table
            rows = self._conn.execute(
                "SELECT lease_id, host, pid, started, renewed, expires, info FROM leases "
                "ORDER BY started, lease_id"
            ).fetchall()
        return [LeaseInfo(*row) for row in rows]

    def reap_expired(self, *, now: float) -> list[str]:
        with self._write("marking the runs of expired leases crash") as conn:
            expired = conn.execute("DELETE FROM leases WHERE expires < ?", (now,)).rowcount
            if not expired and not self._reap_all:
                return []  # no lease went: no run to reap (one statement per heartbeat)
            self._reap_all = False
            alive = {row[0] for row in conn.execute("SELECT lease_id FROM leases")}
            self._held &= alive
            dead: list[tuple[int, str]] = []
            for name in self.task_names():
                for run_id, owner in conn.execute(
                    "SELECT run_id, owner FROM runs WHERE task_name = ? AND action = 'run'",
                    (name,),
                ):
                    if is_lease_id(owner) and owner not in alive:
                        dead.append((run_id, name))
            conn.executemany(
                "UPDATE runs SET action = 'crash', \"end\" = ? WHERE run_id = ? AND action = 'run'",
                [(now, run_id) for run_id, _ in dead],
            )
            for name in {name for _, name in dead}:
                self._cache_note(name, Action.CRASH, now)
        return [str(run_id) for run_id, _ in dead]
